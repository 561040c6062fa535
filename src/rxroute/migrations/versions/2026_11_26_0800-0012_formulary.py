"""formulary: the medicine lines prescribers pick from

Revision ID: 0012_formulary
Revises: 0011_idempotency_keys
Create Date: 2026-11-26 08:00:00

``formulary_items`` holds each line's description, optional dm+d codes (VPID, APID) and the
default quantity and directions a prescriber's form starts with. The description is unique
(case-insensitive) among active lines. A new table: no backfill; ``rxroute seed`` loads the
sample lines.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_formulary"
down_revision: str | None = "0011_idempotency_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "formulary_items",
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("dmd_vpid", sa.String(length=18), nullable=True),
        sa.Column("dmd_apid", sa.String(length=18), nullable=True),
        sa.Column("default_quantity", sa.String(length=100), nullable=False),
        sa.Column("default_directions", sa.String(length=1000), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_formulary_items")),
    )
    op.create_index(
        "uq_formulary_items_active_description",
        "formulary_items",
        [sa.text("lower(description)")],
        unique=True,
        postgresql_where=sa.text("active"),
    )


def downgrade() -> None:
    op.drop_index("uq_formulary_items_active_description", table_name="formulary_items")
    op.drop_table("formulary_items")
