"""delivery ledger: one row per attempt to get a prescription to a pharmacy

Revision ID: 0004_delivery_ledger
Revises: 0003_webhook_dead_letters
Create Date: 2026-11-26 00:02:00

Existing prescriptions that were ever sent get delivery 1 (their pharmacy, channel and
platform ID), and their history and attempts are attached to it. Region A confirmation
links emailed before this migration are not bound to a delivery and stop working.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_delivery_ledger"
down_revision: str | None = "0003_webhook_dead_letters"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PROVIDER = "'dispensed', 'expired', 'issued', 'printed', 'signed', 'voided'"
_FAR_SIDE = "'dispensed', 'emailed', 'expired', 'issued', 'printed', 'signed', 'voided'"


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("prescription_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("pharmacy_id", sa.Uuid(), nullable=False),
        sa.Column("region", sa.String(length=8), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("provider_ref", sa.String(length=200), nullable=True),
        sa.Column("provider_token", sa.String(length=200), nullable=True),
        sa.Column("link_nonce", sa.String(length=64), nullable=True),
        sa.Column("series", sa.Integer(), nullable=False),
        sa.Column("attempts_in_series", sa.Integer(), nullable=False),
        sa.Column("reached_out", sa.Boolean(), nullable=False),
        sa.Column("needs_withdrawal", sa.Boolean(), nullable=False),
        sa.Column("claim", sa.Uuid(), nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("closed_reason", sa.Text(), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_heard_at", sa.DateTime(timezone=True), nullable=True),
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
            ["pharmacy_id"], ["pharmacies.id"], name=op.f("fk_deliveries_pharmacy_id_pharmacies")
        ),
        sa.ForeignKeyConstraint(
            ["prescription_id"],
            ["prescriptions.id"],
            name=op.f("fk_deliveries_prescription_id_prescriptions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint(
            "prescription_id", "number", name=op.f("uq_deliveries_prescription_id_number")
        ),
        sa.UniqueConstraint("provider_ref", name=op.f("uq_deliveries_provider_ref")),
    )
    op.create_index(
        "uq_deliveries_one_open_per_prescription",
        "deliveries",
        ["prescription_id"],
        unique=True,
        postgresql_where=sa.text("state IN ('pending', 'live')"),
    )
    op.create_index(
        "ix_deliveries_needs_withdrawal",
        "deliveries",
        ["prescription_id"],
        unique=False,
        postgresql_where=sa.text("needs_withdrawal"),
    )
    op.add_column(
        "prescriptions", sa.Column("first_queued_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("prescriptions", sa.Column("current_delivery_id", sa.Uuid(), nullable=True))
    op.add_column("delivery_attempts", sa.Column("delivery_id", sa.Uuid(), nullable=True))
    op.add_column(
        "delivery_attempts",
        sa.Column("series", sa.Integer(), nullable=False, server_default=sa.text("1")),
    )
    op.alter_column("delivery_attempts", "series", server_default=None)
    op.create_index(
        op.f("ix_delivery_attempts_delivery_id"), "delivery_attempts", ["delivery_id"], unique=False
    )
    op.create_foreign_key(
        op.f("fk_delivery_attempts_delivery_id_deliveries"),
        "delivery_attempts",
        "deliveries",
        ["delivery_id"],
        ["id"],
    )
    op.add_column("prescription_status_events", sa.Column("delivery_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("fk_prescription_status_events_delivery_id_deliveries"),
        "prescription_status_events",
        "deliveries",
        ["delivery_id"],
        ["id"],
    )

    # Backfill: delivery 1 for every prescription that was ever sent.
    op.execute(
        """
        INSERT INTO deliveries (id, prescription_id, number, pharmacy_id, region, channel, state,
            provider_ref, provider_token, series, attempts_in_series, reached_out,
            needs_withdrawal, delivered_at)
        SELECT gen_random_uuid(), p.id, 1, p.pharmacy_id, p.region, p.channel,
            CASE
                WHEN p.status IN ('issued', 'emailed', 'signed', 'printed', 'dispensed',
                                  'expired') THEN 'live'
                WHEN p.status = 'voided' THEN 'withdrawn'
                WHEN p.status = 'failed' THEN 'failed'
                ELSE 'pending'
            END,
            p.provider_prescription_id, p.provider_token, 1, 0,
            EXISTS (SELECT 1 FROM delivery_attempts a WHERE a.prescription_id = p.id),
            false,
            CASE WHEN p.provider_prescription_id IS NOT NULL THEN p.updated_at END
        FROM prescriptions p
        WHERE p.channel IS NOT NULL AND p.pharmacy_id IS NOT NULL AND p.region IS NOT NULL
        """
    )
    op.execute(
        """
        UPDATE prescriptions p SET first_queued_at = (
            SELECT min(e.recorded_at) FROM prescription_status_events e
            WHERE e.prescription_id = p.id AND e.status = 'queued')
        """
    )
    op.execute(
        "UPDATE prescriptions p SET current_delivery_id = d.id "
        "FROM deliveries d WHERE d.prescription_id = p.id"
    )
    op.execute(
        """
        UPDATE delivery_attempts a SET delivery_id = d.id
        FROM deliveries d WHERE d.prescription_id = a.prescription_id
        """
    )
    # Support's resend notes repeated "emailed"; they stay notes (no delivery), so the
    # once-per-delivery index holds. The history is append-only; attaching old rows to their delivery is the one exception.
    op.execute(
        "ALTER TABLE prescription_status_events "
        "DISABLE TRIGGER prescription_status_events_append_only"
    )
    op.execute(
        """
        UPDATE prescription_status_events e SET delivery_id = d.id
        FROM deliveries d WHERE d.prescription_id = e.prescription_id
        AND NOT (e.status = 'emailed' AND e.source = 'support')
        """
    )
    op.execute(
        "ALTER TABLE prescription_status_events "
        "ENABLE TRIGGER prescription_status_events_append_only"
    )
    op.drop_index(
        "uq_prescription_status_events_provider_status_once",
        table_name="prescription_status_events",
        postgresql_where=sa.text(f"status IN ({_PROVIDER})"),
    )
    op.create_index(
        "uq_prescription_status_events_provider_status_once",
        "prescription_status_events",
        ["delivery_id", "status"],
        unique=True,
        postgresql_where=sa.text(f"delivery_id IS NOT NULL AND status IN ({_FAR_SIDE})"),
    )


def downgrade() -> None:
    op.drop_index(
        "uq_prescription_status_events_provider_status_once",
        table_name="prescription_status_events",
    )
    op.create_index(
        "uq_prescription_status_events_provider_status_once",
        "prescription_status_events",
        ["prescription_id", "status"],
        unique=True,
        postgresql_where=sa.text(f"status IN ({_PROVIDER})"),
    )
    op.drop_constraint(
        op.f("fk_prescription_status_events_delivery_id_deliveries"),
        "prescription_status_events",
        type_="foreignkey",
    )
    op.drop_column("prescription_status_events", "delivery_id")
    op.drop_constraint(
        op.f("fk_delivery_attempts_delivery_id_deliveries"), "delivery_attempts", type_="foreignkey"
    )
    op.drop_index(op.f("ix_delivery_attempts_delivery_id"), table_name="delivery_attempts")
    op.drop_column("delivery_attempts", "series")
    op.drop_column("delivery_attempts", "delivery_id")
    op.drop_column("prescriptions", "current_delivery_id")
    op.drop_column("prescriptions", "first_queued_at")
    op.drop_index("ix_deliveries_needs_withdrawal", table_name="deliveries")
    op.drop_index("uq_deliveries_one_open_per_prescription", table_name="deliveries")
    op.drop_table("deliveries")
