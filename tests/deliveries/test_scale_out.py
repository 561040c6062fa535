"""Many processes stay exactly-once: 2 ``rxroute serve`` + 3 ``rxroute worker`` processes.

150 prescriptions sent through both web processes' API against the out-of-process sandbox
with faults (5xx, answers lost after processing, 30-second tokens, webhooks duplicated,
reordered and lost), two workers SIGKILLed along the way and replaced. The harness (and what
"settled" means) is in tests/scale_out.py; bench/bench_scale_out.py runs it with 1,000.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from rxroute.runtime import Runtime
from tests.scale_out import ScaleOutPlan, run_scale_out

pytestmark = pytest.mark.slow


async def test_two_web_and_three_worker_processes_send_each_prescription_once(
    db: Runtime, database_url: str, tmp_path: Path
) -> None:
    async with db.engine.begin() as connection:
        await connection.execute(text("DELETE FROM procrastinate_workers"))
    plan = ScaleOutPlan(sends=150, kills=2, send_timeout=150, settle_timeout=90)

    result = await run_scale_out(db, database_url, tmp_path, plan)

    assert result.failures() == []
    assert sum(result.stats["issued_by_client_ref_id"].values()) == plan.sends
    assert result.statuses["dispensed"] == len(result.ids[:: plan.dispense_every])
    assert set(result.statuses) == {"signed", "dispensed"}, result.statuses
    assert result.kills == 2 and len(result.per_worker) == plan.workers + plan.kills
    print(
        f"{plan.sends} sends via 2 web + 3 workers: {result.sends_per_second:.1f} sends/s, "
        f"settled after {result.settle_seconds:.1f} s; {result.stats['injected_errors']} 5xx, "
        f"{result.stats['injected_drops']} lost answers, "
        f"{result.stats['webhook_duplicates_sent']} duplicate webhooks"
    )
