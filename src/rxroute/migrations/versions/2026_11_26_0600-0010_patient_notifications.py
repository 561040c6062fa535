"""patient notifications: status emails to patients, and their opt-out

Revision ID: 0010_patient_notifications
Revises: 0009_invitations
Create Date: 2026-11-26 06:00:00

``patient_notifications`` holds one row per email announcing a change of a prescription's
status to its patient, written in the transaction that moved the status; the unique index
(NULLs not distinct) keeps it to one per prescription, delivery and kind. Adds
``patients.notifications_opt_out`` (false for everyone already there) and when it was set.
No backfill: emails start with the next change.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_patient_notifications"
# Re-chained on merge: 0008 and 0009 are being written in parallel.
down_revision: str | None = "0009_invitations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "patients",
        sa.Column("notifications_opt_out", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.add_column(
        "patients",
        sa.Column("notifications_opt_out_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "patient_notifications",
        sa.Column("prescription_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("delivery_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("status_event_seq", sa.BigInteger(), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("skip_reason", sa.String(length=40), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message_id", sa.String(length=300), nullable=True),
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
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_patient_notifications_delivery_id_deliveries"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_patient_notifications_patient_id_patients"),
        ),
        sa.ForeignKeyConstraint(
            ["prescription_id"],
            ["prescriptions.id"],
            name=op.f("fk_patient_notifications_prescription_id_prescriptions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient_notifications")),
    )
    op.create_index(
        "uq_patient_notifications_once",
        "patient_notifications",
        ["prescription_id", "delivery_id", "kind"],
        unique=True,
        postgresql_nulls_not_distinct=True,
    )
    op.create_index("ix_patient_notifications_patient_id", "patient_notifications", ["patient_id"])
    op.create_index(
        "ix_patient_notifications_pending",
        "patient_notifications",
        ["prescription_id", "status_event_seq"],
        postgresql_where=sa.text("state = 'pending'"),
    )


def downgrade() -> None:
    # Emails not sent yet are lost with the table; their jobs then find nothing to send.
    op.drop_table("patient_notifications")
    op.drop_column("patients", "notifications_opt_out_at")
    op.drop_column("patients", "notifications_opt_out")
