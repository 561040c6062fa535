"""case notes, and the indexes support's search and "needs attention" list read

Revision ID: 0016_case_notes
Revises: 0015_patient_preferences
Create Date: 2026-11-27 01:00:00

* ``case_notes``: support's notes on a prescription (author, body, when). Append-only, like
  the status history and the admin audit: a trigger refuses UPDATE and DELETE. The body is
  free text and may carry PHI: it is never logged.
* patients: a stored, lower-cased ``name_search`` ("first last") with a trigram index, so
  a search by part of a name reads the index (the pattern the pharmacy search uses), and
  ``date_of_birth`` (search by date of birth).
* prescriptions: ``(pharmacy_id, status, created_at DESC, id)`` serves the search by
  pharmacy, with or without a status (a pharmacy's few thousand rows are sorted; with a
  status they come in order), ``(status, created_at DESC, id)`` the search by status
  newest first; a partial index on
  ``first_queued_at`` over prescriptions at a pharmacy (issued, signed, printed, emailed)
  serves the "expiring soon" list.

A search by a prefix of rxroute's id reads the primary key as a range; by the platform's
id, the unique index on ``deliveries.provider_ref``: no index for either. Building these
locks writes to patients (the generated column rewrites it) and prescriptions for a few
seconds at 100,000 prescriptions.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_case_notes"
down_revision: str | None = "0015_patient_preferences"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "case_notes"
#: The statuses of a prescription that sits at a pharmacy, as the model's index has them.
AT_PHARMACY_WHERE = "status IN ('issued', 'signed', 'printed', 'emailed')"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("prescription_id", sa.Uuid(), nullable=False),
        sa.Column("author_user_id", sa.Uuid(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
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
            name=op.f("fk_case_notes_prescription_id_prescriptions"),
        ),
        sa.ForeignKeyConstraint(
            ["author_user_id"], ["users.id"], name=op.f("fk_case_notes_author_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_notes")),
        sa.UniqueConstraint("seq", name=op.f("uq_case_notes_seq")),
    )
    op.create_index("ix_case_notes_prescription_seq", TABLE, ["prescription_id", "seq"])
    # Notes are append-only: refuse UPDATE and DELETE at the database itself.
    op.execute(
        """
        CREATE FUNCTION rxroute_refuse_case_note_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'case_notes is append-only (% refused)', TG_OP
                USING ERRCODE = 'restrict_violation';
        END;
        $$
        """
    )
    op.execute(
        f"""
        CREATE TRIGGER case_notes_append_only
        BEFORE UPDATE OR DELETE ON {TABLE}
        FOR EACH ROW EXECUTE FUNCTION rxroute_refuse_case_note_change()
        """
    )

    op.add_column(
        "patients",
        sa.Column(
            "name_search",
            sa.Text(),
            sa.Computed("lower(first_name || ' ' || last_name)", persisted=True),
            nullable=False,
        ),
    )
    op.create_index(
        "ix_patients_name_search_trgm",
        "patients",
        ["name_search"],
        postgresql_using="gin",
        postgresql_ops={"name_search": "gin_trgm_ops"},
    )
    op.create_index("ix_patients_date_of_birth", "patients", ["date_of_birth"])
    op.create_index(
        "ix_prescriptions_pharmacy_status_created",
        "prescriptions",
        ["pharmacy_id", "status", sa.text("created_at DESC"), "id"],
    )
    op.create_index(
        "ix_prescriptions_status_created",
        "prescriptions",
        ["status", sa.text("created_at DESC"), "id"],
    )
    op.create_index(
        "ix_prescriptions_at_pharmacy_queued",
        "prescriptions",
        ["first_queued_at"],
        postgresql_where=sa.text(AT_PHARMACY_WHERE),
    )


def downgrade() -> None:
    op.drop_index("ix_prescriptions_at_pharmacy_queued", table_name="prescriptions")
    op.drop_index("ix_prescriptions_status_created", table_name="prescriptions")
    op.drop_index("ix_prescriptions_pharmacy_status_created", table_name="prescriptions")
    op.drop_index("ix_patients_date_of_birth", table_name="patients")
    op.drop_index("ix_patients_name_search_trgm", table_name="patients")
    op.drop_column("patients", "name_search")
    op.execute(f"DROP TRIGGER IF EXISTS case_notes_append_only ON {TABLE}")
    op.execute("DROP FUNCTION IF EXISTS rxroute_refuse_case_note_change()")
    op.drop_index("ix_case_notes_prescription_seq", table_name=TABLE)
    op.drop_table(TABLE)
