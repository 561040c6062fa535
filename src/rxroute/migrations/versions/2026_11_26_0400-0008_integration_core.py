"""integration core: API clients, external ids of patients and prescribers, prescriber users

Revision ID: 0008_integration_core
Revises: 0007_events_outbox
Create Date: 2026-11-26 04:00:00

``api_clients`` holds the integrating platform's service accounts (a SHA-256 of each key,
never the key). ``patients.external_id`` and ``prescribers.external_id`` are the platform's
own IDs, unique when set. ``users.prescriber_id`` links a ``role=prescriber`` account to the
prescriber it writes as. New table and nullable columns: no backfill.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008_integration_core"
down_revision: str | None = "0007_events_outbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_clients",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("key_prefix", sa.String(length=20), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.String(length=40)), nullable=False),
        sa.Column("created_by_id", sa.Uuid(), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
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
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
            name=op.f("fk_api_clients_created_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_clients")),
        sa.UniqueConstraint("name", name=op.f("uq_api_clients_name")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_clients_key_hash")),
    )
    for table in ("patients", "prescribers"):
        op.add_column(table, sa.Column("external_id", sa.String(length=200), nullable=True))
        op.create_index(
            f"uq_{table}_external_id",
            table,
            ["external_id"],
            unique=True,
            postgresql_where=sa.text("external_id IS NOT NULL"),
        )
    op.add_column("users", sa.Column("prescriber_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("fk_users_prescriber_id_prescribers"),
        "users",
        "prescribers",
        ["prescriber_id"],
        ["id"],
    )


def downgrade() -> None:
    op.drop_constraint(op.f("fk_users_prescriber_id_prescribers"), "users", type_="foreignkey")
    op.drop_column("users", "prescriber_id")
    for table in ("prescribers", "patients"):
        op.drop_index(f"uq_{table}_external_id", table_name=table)
        op.drop_column(table, "external_id")
    op.drop_table("api_clients")
