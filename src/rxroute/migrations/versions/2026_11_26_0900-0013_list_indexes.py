"""list indexes: every list and search reads a page from an index, not the whole table

Revision ID: 0013_list_indexes
Revises: 0012_formulary
Create Date: 2026-11-26 09:00:00

At 100,000 prescriptions, 1,000,000 history rows and 200,000 pharmacies the lists and
searches scanned whole tables (7-22 ms of SQL each, 45-370 ms for some pharmacy searches).

* prescriptions: ``(patient_id, created_at DESC, id)``, ``(prescriber_id, created_at DESC,
  id)`` and ``(created_at DESC, id)`` serve the patient's, the prescriber's and everyone's
  newest-first list (the first replaces ``ix_prescriptions_patient_id``);
  ``(status, updated_at)`` replaces ``ix_prescriptions_status`` for the support console's
  failed and stuck lists and the orphaned-send sweep; a partial index on
  ``coalesce(last_provider_update_at, updated_at)`` over prescriptions in flight on the
  platform serves reconciliation.
* patients: ``lower(email)`` replaces the plain ``email`` index (every lookup is
  case-insensitive).
* pharmacies: ``name_key``, ``town_key`` and ``postcode_key`` (stored, lower-cased, "C"
  collation) with a btree each, so the type-ahead's short and empty queries read a page in
  order; they replace ``ix_pharmacies_region_active``.

Indexes only, and three generated columns PostgreSQL fills itself: no backfill. Building
them locks writes to these tables for a few seconds at the sizes above.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_list_indexes"
down_revision: str | None = "0012_formulary"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: As rxroute.prescriptions.lifecycle.POLLABLE_STATUSES was when this index was made.
RECONCILE_WHERE = (
    "provider_prescription_id IS NOT NULL AND status IN ('issued', 'signed', 'printed')"
)


def upgrade() -> None:
    op.create_index(
        "ix_prescriptions_patient_created",
        "prescriptions",
        ["patient_id", sa.text("created_at DESC"), "id"],
    )
    op.drop_index("ix_prescriptions_patient_id", table_name="prescriptions")
    op.create_index(
        "ix_prescriptions_prescriber_created",
        "prescriptions",
        ["prescriber_id", sa.text("created_at DESC"), "id"],
    )
    op.create_index("ix_prescriptions_created", "prescriptions", [sa.text("created_at DESC"), "id"])
    op.create_index("ix_prescriptions_status_updated", "prescriptions", ["status", "updated_at"])
    op.drop_index("ix_prescriptions_status", table_name="prescriptions")
    op.create_index(
        "ix_prescriptions_reconcile",
        "prescriptions",
        [sa.text("coalesce(last_provider_update_at, updated_at)")],
        postgresql_where=sa.text(RECONCILE_WHERE),
    )

    op.create_index("ix_patients_lower_email", "patients", [sa.text("lower(email)")])
    op.drop_index("ix_patients_email", table_name="patients")

    op.add_column(
        "pharmacies",
        sa.Column(
            "name_key",
            sa.String(length=200, collation="C"),
            sa.Computed("lower(name)", persisted=True),
            nullable=False,
        ),
    )
    op.add_column(
        "pharmacies",
        sa.Column(
            "town_key",
            sa.String(length=100, collation="C"),
            sa.Computed("lower(town)", persisted=True),
            nullable=False,
        ),
    )
    op.add_column(
        "pharmacies",
        sa.Column(
            "postcode_key",
            sa.String(length=16, collation="C"),
            sa.Computed("lower(replace(postcode, ' ', ''))", persisted=True),
            nullable=False,
        ),
    )
    op.create_index(
        "ix_pharmacies_region_active_name_key", "pharmacies", ["region", "active", "name_key"]
    )
    op.create_index(
        "ix_pharmacies_region_active_town_key",
        "pharmacies",
        ["region", "active", "town_key", "name_key"],
    )
    op.create_index(
        "ix_pharmacies_region_active_postcode_key",
        "pharmacies",
        ["region", "active", "postcode_key"],
    )
    op.drop_index("ix_pharmacies_region_active", table_name="pharmacies")


def downgrade() -> None:
    op.create_index("ix_pharmacies_region_active", "pharmacies", ["region", "active"])
    op.drop_index("ix_pharmacies_region_active_postcode_key", table_name="pharmacies")
    op.drop_index("ix_pharmacies_region_active_town_key", table_name="pharmacies")
    op.drop_index("ix_pharmacies_region_active_name_key", table_name="pharmacies")
    op.drop_column("pharmacies", "postcode_key")
    op.drop_column("pharmacies", "town_key")
    op.drop_column("pharmacies", "name_key")

    op.create_index("ix_patients_email", "patients", ["email"])
    op.drop_index("ix_patients_lower_email", table_name="patients")

    op.drop_index("ix_prescriptions_reconcile", table_name="prescriptions")
    op.create_index("ix_prescriptions_status", "prescriptions", ["status"])
    op.drop_index("ix_prescriptions_status_updated", table_name="prescriptions")
    op.drop_index("ix_prescriptions_created", table_name="prescriptions")
    op.drop_index("ix_prescriptions_prescriber_created", table_name="prescriptions")
    op.create_index("ix_prescriptions_patient_id", "prescriptions", ["patient_id"])
    op.drop_index("ix_prescriptions_patient_created", table_name="prescriptions")
