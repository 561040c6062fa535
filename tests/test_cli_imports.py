"""``rxroute --help`` loads only the CLI: no web stack, ORM, driver or settings models.

Not a timing test (bench/bench_cli_help.py measures the time): it checks the cause of a
slow ``--help``, which modules the CLI imports before any command runs.
"""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("sqlalchemy", "fastapi", "starlette", "uvicorn", "psycopg", "pydantic", "cryptography")

_PROBE = """
import sys
import rxroute.cli
print(" ".join(m for m in {heavy!r} if m in sys.modules))
"""


def test_loading_the_cli_imports_nothing_heavy() -> None:
    shown = subprocess.run(
        [sys.executable, "-c", _PROBE.format(heavy=HEAVY)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert shown.stdout.split() == [], f"imported at CLI load: {shown.stdout.strip()}"


def test_help_still_lists_every_command() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "rxroute.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    for command in ("migrate", "seed", "serve", "worker", "demo", "preflight", "sandbox"):
        assert command in shown.stdout
    assert "mailcatcher" in shown.stdout and "apikey" in shown.stdout
