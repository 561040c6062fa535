"""prescription patient name: support's search by a common name walks prescriptions only

Revision ID: 0019_prescription_patient_name
Revises: 0018_job_fetch_plan
Create Date: 2026-11-27 09:00:00

Support's search by part of a name wants the newest 50 prescriptions of the patients whose
name contains the words typed. For a rare name, reading the few matching patients by the
trigram index and then their prescriptions costs well under a millisecond. For a common
surname or a fragment ("smith": 1.3% of patients, "har": 7.9%) every match costs a heap
visit and a recheck (about 0.6 microseconds each, 2 to 3 ms for a few thousand), and the
other plan, walking prescriptions newest first, looked up each one's patient (about 2.7
microseconds a row). Either way over issue 13's 2 ms at 100,000 prescriptions.

So ``prescriptions.patient_name_search`` carries a copy of the patient's ``name_search``,
and a common name walks ``ix_prescriptions_created`` checking that column on the row it
already reads (about 0.2 microseconds a row, stopping at the 51st match). The copy is the
database's to keep, so no code path can forget it:

* a BEFORE INSERT OR UPDATE OF patient_id, patient_name_search trigger on prescriptions sets
  it from the patient's row (whatever a statement wrote there);
* an AFTER UPDATE OF first_name, last_name trigger on patients copies a changed name to the
  patient's prescriptions.

The first reads the patient's row FOR SHARE, so a rename and a new prescription of the same
patient that overlap are serialised: whichever commits second sees the other's row.

It is PHI like the patient's row: the model maps it deferred, so the ORM never loads it.
Filling it takes one UPDATE of every prescription (a few seconds at 100,000).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019_prescription_patient_name"
down_revision: str | None = "0018_job_fetch_plan"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE prescriptions ADD COLUMN patient_name_search text")
    op.execute(
        """
        CREATE FUNCTION rxroute_prescription_patient_name() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            -- FOR SHARE: a rename of this patient that has not committed yet is waited for
            -- (and then read), and one that starts later waits for this row to commit, so
            -- its copy to the patient's prescriptions includes this one.
            -- No such patient: the foreign key refuses the row, with its own message.
            NEW.patient_name_search := coalesce(
                (SELECT name_search FROM patients WHERE id = NEW.patient_id FOR SHARE), ''
            );
            RETURN NEW;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER prescriptions_patient_name
        BEFORE INSERT OR UPDATE OF patient_id, patient_name_search ON prescriptions
        FOR EACH ROW EXECUTE FUNCTION rxroute_prescription_patient_name()
        """
    )
    op.execute(
        """
        CREATE FUNCTION rxroute_patient_name_to_prescriptions() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE prescriptions SET patient_name_search = NEW.name_search
            WHERE patient_id = NEW.id
              AND patient_name_search IS DISTINCT FROM NEW.name_search;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER patients_name_to_prescriptions
        AFTER UPDATE OF first_name, last_name ON patients
        FOR EACH ROW WHEN (OLD.name_search IS DISTINCT FROM NEW.name_search)
        EXECUTE FUNCTION rxroute_patient_name_to_prescriptions()
        """
    )
    # Fill it through the trigger: one rule for what the copy holds.
    op.execute("UPDATE prescriptions SET patient_name_search = NULL")
    op.execute("ALTER TABLE prescriptions ALTER COLUMN patient_name_search SET NOT NULL")


def downgrade() -> None:
    op.execute("DROP TRIGGER patients_name_to_prescriptions ON patients")
    op.execute("DROP FUNCTION rxroute_patient_name_to_prescriptions()")
    op.execute("DROP TRIGGER prescriptions_patient_name ON prescriptions")
    op.execute("DROP FUNCTION rxroute_prescription_patient_name()")
    op.execute("ALTER TABLE prescriptions DROP COLUMN patient_name_search")
