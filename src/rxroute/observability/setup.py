"""Starting what operators see in a process: error reports (and traces, when configured).

Called once per process that runs rxroute's code (each web process, each worker, the
demo), after logging is configured. Metrics need no start: they are module-level objects.
"""

from __future__ import annotations

from rxroute.config import Settings
from rxroute.observability.errors import init_error_reporting
from rxroute.observability.tracing import configure_tracing


def start_observability(settings: Settings) -> None:
    init_error_reporting(settings)
    configure_tracing()
