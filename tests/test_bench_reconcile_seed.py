"""The 100,000-prescription reconciliation bench still seeds what the send path leaves.

``bench/bench_reconcile.py --seed direct`` writes prescriptions in bulk as the send path
would have left them, and before timing anything it checks one of them against a
prescription really sent, table by table (``bench/reconcile_seed.py``). A migration that
adds a column to one of those tables can break that check, as 0019's copy of the patient's
name did, and nothing else runs the bench. This runs it small, as a user would: a separate
process with its own sandbox and database. No timing is checked.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_direct_seeding_matches_the_send_path() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RXROUTE_")}
    if server := os.environ.get("RXROUTE_TEST_DATABASE_URL"):
        env["RXROUTE_TEST_DATABASE_URL"] = server  # else the bench starts an embedded one
    ran = subprocess.run(
        [
            sys.executable,
            "bench/bench_reconcile.py",
            "--seed",
            "direct",
            "--prescriptions",
            "12",
            "--concurrency",
            "2",
            "--modes",
            "batched",
            "--latency-ms",
            "0",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert "a seeded prescription matches one sent through the send path" in ran.stdout
