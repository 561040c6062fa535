"""``rxroute worker`` with the test-only jobs of :mod:`tests.jobs.tasks` registered too.

Run as ``python -m tests.jobs.worker_main [worker options]``: the real CLI command, in a
real process, so a test can cut its database off or SIGKILL it.
"""

from __future__ import annotations

import sys

import tests.jobs.tasks  # noqa: F401  (registers the test jobs on rxroute's queue)
from rxroute.cli import main

if __name__ == "__main__":
    sys.argv = ["rxroute", "worker", *sys.argv[1:]]
    main()
