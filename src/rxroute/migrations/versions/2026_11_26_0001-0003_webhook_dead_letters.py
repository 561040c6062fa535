"""webhook dead letters: why an event failed, and support's reprocess requests

Revision ID: 0003_webhook_dead_letters
Revises: 0002
Create Date: 2026-11-26 00:01:00

An event whose processing fails its last attempt is marked ``failed`` with the error's type,
the attempt count and when; support's reprocess requests are counted with who asked last
and when. All columns are nullable or defaulted, so existing rows need no backfill.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_webhook_dead_letters"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "inbound_webhook_events"
FK_REQUESTED_BY = "fk_inbound_webhook_events_reprocess_requested_by_users"


def upgrade() -> None:
    op.add_column(TABLE, sa.Column("error_type", sa.String(length=100), nullable=True))
    op.add_column(TABLE, sa.Column("attempts", sa.Integer(), nullable=True))
    op.add_column(TABLE, sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        TABLE,
        sa.Column("reprocess_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(TABLE, sa.Column("reprocess_requested_by", sa.Uuid(), nullable=True))
    op.add_column(
        TABLE, sa.Column("reprocess_requested_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_foreign_key(FK_REQUESTED_BY, TABLE, "users", ["reprocess_requested_by"], ["id"])


def downgrade() -> None:
    # Rows keep their state: ``failed`` was already a state the older code knew (and lists
    # for support as a flagged event).
    op.drop_constraint(FK_REQUESTED_BY, TABLE, type_="foreignkey")
    for column in (
        "reprocess_requested_at",
        "reprocess_requested_by",
        "reprocess_count",
        "failed_at",
        "attempts",
        "error_type",
    ):
        op.drop_column(TABLE, column)
