"""admin audit trail: who changed which pharmacy, prescriber or user, before and after

Revision ID: 0006_admin_audit
Revises: 0005_auth_sessions
Create Date: 2026-11-26 02:00:00

A new append-only table; nothing existing changes. Changes made before this migration
have no events (only their ``updated_at``).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006_admin_audit"
down_revision: str | None = "0005_auth_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "admin_audit_events"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("actor_user_id", sa.Uuid(), nullable=False),
        sa.Column("entity_type", sa.String(length=20), nullable=False),
        sa.Column("entity_id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("changes", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "occurred_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_user_id"],
            ["users.id"],
            name=op.f("fk_admin_audit_events_actor_user_id_users"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_audit_events")),
        sa.UniqueConstraint("seq", name=op.f("uq_admin_audit_events_seq")),
    )
    op.create_index(
        op.f("ix_admin_audit_events_actor_user_id"), TABLE, ["actor_user_id"], unique=False
    )
    op.create_index(
        "ix_admin_audit_events_entity", TABLE, ["entity_type", "entity_id", "seq"], unique=False
    )
    # The audit trail is append-only: refuse UPDATE and DELETE at the database itself.
    op.execute(
        """
        CREATE FUNCTION rxroute_refuse_audit_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'admin_audit_events is append-only (% refused)', TG_OP
                USING ERRCODE = 'restrict_violation';
        END;
        $$
        """
    )
    op.execute(
        f"""
        CREATE TRIGGER admin_audit_events_append_only
        BEFORE UPDATE OR DELETE ON {TABLE}
        FOR EACH ROW EXECUTE FUNCTION rxroute_refuse_audit_change()
        """
    )


def downgrade() -> None:
    op.execute(f"DROP TRIGGER IF EXISTS admin_audit_events_append_only ON {TABLE}")
    op.execute("DROP FUNCTION IF EXISTS rxroute_refuse_audit_change()")
    op.drop_index("ix_admin_audit_events_entity", table_name=TABLE)
    op.drop_index(op.f("ix_admin_audit_events_actor_user_id"), table_name=TABLE)
    op.drop_table(TABLE)
