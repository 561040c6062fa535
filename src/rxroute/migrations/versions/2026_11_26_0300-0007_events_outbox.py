"""events outbox: status events for the platform, their endpoints and deliveries

Revision ID: 0007_events_outbox
Revises: 0006_admin_audit
Create Date: 2026-11-26 03:00:00

``outbox_events`` holds one row per change of a prescription's current status, written in
the same transaction; ``event_endpoints`` where they go (the default one takes its URL and
secret from settings); ``event_deliveries`` one row per event and endpoint. Also adds
``prescriptions.external_id`` (the integrating platform's own ID, echoed in events), unique
when set. New tables and a nullable column: no backfill; events start with the next change.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007_events_outbox"
# Re-chain on merge: 0005 and 0006 are being written in parallel.
down_revision: str | None = "0006_admin_audit"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamps() -> list[sa.Column[sa.DateTime]]:
    return [
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
    ]


def upgrade() -> None:
    op.add_column("prescriptions", sa.Column("external_id", sa.String(length=200), nullable=True))
    op.create_index(
        "uq_prescriptions_external_id",
        "prescriptions",
        ["external_id"],
        unique=True,
        postgresql_where=sa.text("external_id IS NOT NULL"),
    )
    op.create_table(
        "event_endpoints",
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=True),
        sa.Column("secret_encrypted", sa.Text(), nullable=True),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("event_types", postgresql.ARRAY(sa.String(length=40)), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_endpoints")),
    )
    op.create_index(
        "uq_event_endpoints_one_default",
        "event_endpoints",
        ["is_default"],
        unique=True,
        postgresql_where=sa.text("is_default"),
    )
    op.create_table(
        "outbox_events",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("prescription_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("previous_status", sa.String(length=20), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["prescription_id"],
            ["prescriptions.id"],
            name=op.f("fk_outbox_events_prescription_id_prescriptions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_events")),
        sa.UniqueConstraint("seq", name=op.f("uq_outbox_events_seq")),
    )
    op.create_index(
        "ix_outbox_events_prescription_seq", "outbox_events", ["prescription_id", "seq"]
    )
    op.create_table(
        "event_deliveries",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("prescription_id", sa.Uuid(), nullable=False),
        sa.Column("event_seq", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resend_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("resend_requested_by", sa.Uuid(), nullable=True),
        sa.Column("resend_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["event_endpoints.id"],
            name=op.f("fk_event_deliveries_endpoint_id_event_endpoints"),
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["outbox_events.id"],
            name=op.f("fk_event_deliveries_event_id_outbox_events"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["prescription_id"],
            ["prescriptions.id"],
            name=op.f("fk_event_deliveries_prescription_id_prescriptions"),
        ),
        sa.ForeignKeyConstraint(
            ["resend_requested_by"],
            ["users.id"],
            name=op.f("fk_event_deliveries_resend_requested_by_users"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_deliveries")),
        sa.UniqueConstraint(
            "event_id", "endpoint_id", name=op.f("uq_event_deliveries_event_id_endpoint_id")
        ),
    )
    op.create_index(
        "ix_event_deliveries_endpoint_created", "event_deliveries", ["endpoint_id", "created_at"]
    )
    op.create_index(
        "ix_event_deliveries_undelivered_stream",
        "event_deliveries",
        ["endpoint_id", "prescription_id", "event_seq"],
        postgresql_where=sa.text("state <> 'delivered'"),
    )


def downgrade() -> None:
    # Events not delivered yet are lost with the tables: the platform can still poll.
    op.drop_table("event_deliveries")
    op.drop_table("outbox_events")
    op.drop_table("event_endpoints")
    op.drop_index("uq_prescriptions_external_id", table_name="prescriptions")
    op.drop_column("prescriptions", "external_id")
