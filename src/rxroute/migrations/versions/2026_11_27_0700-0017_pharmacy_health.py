"""pharmacy health: the last live check of each pharmacy and prescriber, and a stable key

Revision ID: 0017_pharmacy_health
Revises: 0016_case_notes
Create Date: 2026-11-27 07:00:00

An admin could store a Region B pharmacy whose contact ID the platform does not know, or a
prescriber whose platform account cannot sign, and nothing said so until a patient's send
failed. Each pharmacy and prescriber now keeps the result of its last check
(``health_status`` ok/warn/fail, ``health_checked_at``, ``health_detail``: ids and
pharmacy names only, never PHI). ``pharmacies.withheld_at`` is set when the platform
rejects the pharmacy's contact (at a check or a real send): the patients' search leaves the
pharmacy out until an admin clears it.

``pharmacies.code`` is the pharmacy's own code (the NHS ODS code, e.g. ``FA123``): the
stable key a re-uploaded CSV list is matched by, so an updated list updates rows instead of
rejecting them as duplicates. Unique where set.

New nullable columns (no table rewrite) and a partial unique index over the few rows with a
code.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_pharmacy_health"
down_revision: str | None = "0016_case_notes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HEALTH_TABLES = ("pharmacies", "prescribers")


def upgrade() -> None:
    for table in HEALTH_TABLES:
        op.add_column(table, sa.Column("health_status", sa.String(length=10), nullable=True))
        op.add_column(
            table, sa.Column("health_checked_at", sa.DateTime(timezone=True), nullable=True)
        )
        op.add_column(table, sa.Column("health_detail", sa.String(length=500), nullable=True))
    op.add_column("pharmacies", sa.Column("withheld_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("pharmacies", sa.Column("code", sa.String(length=20), nullable=True))
    op.create_index(
        "uq_pharmacies_code",
        "pharmacies",
        ["code"],
        unique=True,
        postgresql_where=sa.text("code IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_pharmacies_code", table_name="pharmacies")
    op.drop_column("pharmacies", "code")
    op.drop_column("pharmacies", "withheld_at")
    for table in HEALTH_TABLES:
        op.drop_column(table, "health_detail")
        op.drop_column(table, "health_checked_at")
        op.drop_column(table, "health_status")
