"""reconcile schedule: a failed poll backs off instead of being asked again every pass

Revision ID: 0014_reconcile_schedule
Revises: 0013_list_indexes
Create Date: 2026-11-26 10:00:00

``prescriptions.reconcile_failures`` counts failed polls in a row and
``prescriptions.reconcile_next_at`` says when a failing one is due again (exponential,
capped). Without them the same failing prescriptions sat at the head of the longest-silent
order and were re-polled every pass, starving the rest. ``ix_prescriptions_reconcile`` gains
``reconcile_next_at`` as a second column so the backoff is checked from the index entry.

New nullable column and a defaulted integer (no table rewrite on PostgreSQL 11+); the index
is rebuilt, which locks writes to prescriptions for a few seconds at 100,000 rows.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_reconcile_schedule"
down_revision: str | None = "0013_list_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RECONCILE_WHERE = (
    "provider_prescription_id IS NOT NULL AND status IN ('issued', 'signed', 'printed')"
)
LAST_HEARD = "coalesce(last_provider_update_at, updated_at)"


def upgrade() -> None:
    op.add_column(
        "prescriptions",
        sa.Column("reconcile_failures", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column(
        "prescriptions",
        sa.Column("reconcile_next_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.drop_index("ix_prescriptions_reconcile", table_name="prescriptions")
    op.create_index(
        "ix_prescriptions_reconcile",
        "prescriptions",
        [sa.text(LAST_HEARD), "reconcile_next_at"],
        postgresql_where=sa.text(RECONCILE_WHERE),
    )


def downgrade() -> None:
    op.drop_index("ix_prescriptions_reconcile", table_name="prescriptions")
    op.create_index(
        "ix_prescriptions_reconcile",
        "prescriptions",
        [sa.text(LAST_HEARD)],
        postgresql_where=sa.text(RECONCILE_WHERE),
    )
    op.drop_column("prescriptions", "reconcile_next_at")
    op.drop_column("prescriptions", "reconcile_failures")
