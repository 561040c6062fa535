"""How long ``rxroute --help`` takes, against starting Python and importing typer alone.

Run by hand: ``.venv/bin/python bench/bench_cli_help.py``. Target (issue 13): under 0.3 s.
The baseline is the floor any typer CLI pays: the interpreter and typer's own import.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = 15
RXROUTE = Path(sys.executable).with_name("rxroute")


def _median_seconds(command: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    baseline = _median_seconds([sys.executable, "-c", "import typer, rich.console"])
    help_time = _median_seconds([str(RXROUTE), "--help"])
    print(f"rxroute --help      median {help_time * 1000:7.1f} ms (target 300 ms)")
    print(f"python + typer only median {baseline * 1000:7.1f} ms")
    print(f"ratio {help_time / baseline:.2f}x the floor")


if __name__ == "__main__":
    main()
