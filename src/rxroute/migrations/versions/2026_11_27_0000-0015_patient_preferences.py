"""patient preferences: a pharmacy's phone and opening hours, shown to patients when known

Revision ID: 0015_patient_preferences
Revises: 0014_reconcile_schedule
Create Date: 2026-11-27 09:00:00

Patients choose a pharmacy from the curated list; a name and address alone do not tell them
whether it is open or how to ask about their medicine. ``pharmacies.phone`` and
``pharmacies.opening_hours`` (free text, e.g. "Mon-Fri 9:00-18:00, Sat 9:00-13:00") are shown
on the send form and its confirm step when known. The patient's last pharmacy needs no
column: it is derived from the prescriptions already sent.

Two nullable columns: no table rewrite, no backfill.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_patient_preferences"
down_revision: str | None = "0014_reconcile_schedule"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("pharmacies", sa.Column("phone", sa.String(length=40), nullable=True))
    op.add_column("pharmacies", sa.Column("opening_hours", sa.String(length=300), nullable=True))


def downgrade() -> None:
    op.drop_column("pharmacies", "opening_hours")
    op.drop_column("pharmacies", "phone")
