"""job fetch plan: procrastinate's fetch never sorts the whole backlog

Revision ID: 0018_job_fetch_plan
Revises: 0017_pharmacy_health
Create Date: 2026-11-27 08:00:00

Every worker takes its next job with ``procrastinate_fetch_job_v2``: the oldest ``todo`` job
(by priority, then id) whose ``lock`` no running or earlier job holds. Its planner estimate
for ``status = 'todo'`` comes from the last ANALYZE of ``procrastinate_jobs``, which on a
queue table almost always ran when nothing was waiting: the estimate is one row. When a
burst then arrives (a platform sending 2,000 prescriptions at once), the planner, believing
one row, may read every waiting job, check each one's lock and sort them all, instead of
walking the priority index and stopping at the first it can take. Measured in
``bench/bench_send.py`` (auto_explain on the bench's database): one fetch took 80 to 114 ms
with 2,000 jobs waiting, against well under 1 ms on the ordered plan, and since a worker
fetches one job at a time, the worker ran at 75 to 90 sends/s instead of 145 to 210 in one
run out of two or three (issue 13).

Sorting is switched off for that one function (``ALTER FUNCTION ... SET``): the only plan
left that returns the rows in order walks ``procrastinate_jobs_priority_idx_v1`` and stops
at the first job it may take, whatever the statistics say. Nothing else changes: the same
function, the same rules, the same result. A procrastinate upgrade that replaces the
function with a new version must carry the setting over (``tests/db/test_job_fetch_plan.py``
fails when the function the worker calls lacks it).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018_job_fetch_plan"
down_revision: str | None = "0017_pharmacy_health"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FETCH_FUNCTION = "procrastinate_fetch_job_v2(character varying[], bigint)"


def upgrade() -> None:
    op.execute(f"ALTER FUNCTION {FETCH_FUNCTION} SET enable_sort = off")


def downgrade() -> None:
    op.execute(f"ALTER FUNCTION {FETCH_FUNCTION} RESET enable_sort")
