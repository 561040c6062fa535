"""job lock index: procrastinate's fetch finds a job's lock holders by lock, not by scan

Revision ID: 0020_job_lock_index
Revises: 0019_prescription_patient_name
Create Date: 2026-11-27 10:00:00

``procrastinate_fetch_job_v2`` takes a waiting job only if no running job, and no earlier
waiting one, holds its ``lock`` (every send job has one: ``prescription:<id>``). procrastinate
looks those up through ``procrastinate_jobs_id_lock_idx_v1``, an index on ``(id, lock)``: with
``lock`` second, each fetch reads the whole index, one entry per waiting or running job
(44 buffers a fetch with 4,000 sends queued, measured with EXPLAIN ANALYZE). This index on
``lock`` alone, over the same rows, turns that into a look-up of the few jobs with that
lock: 0.63 to 0.51 ms of the database's time per fetch over a 4,000-job backlog (issue 13).
procrastinate's own tracker knows the problem (procrastinate-org/procrastinate#1242).

The fetch function and its rules are unchanged; this is an index beside procrastinate's, on
its table, named as ours. ``tests/db/test_job_fetch_plan.py`` checks it is there and used.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020_job_lock_index"
down_revision: str | None = "0019_prescription_patient_name"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "rxroute_procrastinate_jobs_waiting_lock"


def upgrade() -> None:
    op.execute(
        f"CREATE INDEX {INDEX} ON procrastinate_jobs (lock) WHERE status IN ('todo', 'doing')"
    )


def downgrade() -> None:
    op.execute(f"DROP INDEX {INDEX}")
