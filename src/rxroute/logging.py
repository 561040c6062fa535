"""Structured JSON logs through structlog, for rxroute and the libraries under it.

Log ids, never PHI: no names, dates of birth, addresses or medicines in any event.

Two guards keep what the code does not choose to log out of the logs too:

* :func:`loggable_path` is the only form a request path is logged in: a segment that is
  not a word of one of the app's own routes, an id (UUID or number) or a static file name
  is masked, so a mistyped or malicious URL (``/prescriptions/jane@example.com``) is not
  copied into the log, and the pharmacy's link token never is. Query strings are never
  logged, and uvicorn's access log (which has them) is silenced.
* :func:`redact_database_details` cuts the lines a database error may quote rows in
  (``DETAIL:``, ``[parameters: ...]``) out of every logged traceback, whatever raised it;
  rxroute's own engines already leave them out (:mod:`rxroute.db.engine`).
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from collections.abc import Iterable

import structlog
from structlog.types import EventDict, WrappedLogger

from rxroute.observability.tracing import add_trace_ids

#: Paths whose last segment is a bearer credential (the pharmacy's confirmation token, a
#: patient's unsubscribe token).
SECRET_PATH_PREFIXES = ("/pharmacy/confirm/", "/notifications/unsubscribe/")
#: What a masked path segment is logged as.
MASKED = "<masked>"
_ID = re.compile(r"^[0-9]{1,20}$")
_STATIC_FILE = re.compile(r"^[A-Za-z0-9_-]{1,80}\.(?:css|js|map|png|svg|ico|woff2?|txt)$")


def route_words(paths: Iterable[str]) -> frozenset[str]:
    """The literal segments of route paths (``/api/v1/prescriptions/{id}`` gives three)."""
    words: set[str] = set()
    for path in paths:
        words.update(part for part in path.split("/") if part and "{" not in part)
    return frozenset(words)


def _is_id(segment: str) -> bool:
    if _ID.match(segment):
        return True
    try:
        uuid.UUID(segment)
    except ValueError:
        return False
    return len(segment) in (32, 36)


def loggable_path(path: str, words: frozenset[str]) -> str:
    """``path`` with every segment that could be typed-in text masked.

    Kept: the app's own route words (``words``, from :func:`route_words`), ids, and static
    file names. The pharmacy link's token is masked as ``<token>``.
    """
    for prefix in SECRET_PATH_PREFIXES:
        if path.startswith(prefix):
            return prefix + "<token>"
    kept = [
        part if not part or part in words or _is_id(part) or _STATIC_FILE.match(part) else MASKED
        for part in path.split("/")
    ]
    return "/".join(kept)


#: Lines of a database error that can quote a row or the statement's values.
_DATABASE_DETAIL = re.compile(r"^(?:DETAIL|HINT|CONTEXT):.*$|^\[parameters: .*\]$", re.MULTILINE)


def redact_database_details(
    logger: WrappedLogger, method_name: str, event_dict: EventDict
) -> EventDict:
    """A structlog processor: database detail lines out of the event and its traceback."""
    for key in ("event", "exception"):
        value = event_dict.get(key)
        if isinstance(value, str):
            event_dict[key] = _DATABASE_DETAIL.sub("[database detail redacted]", value)
    return event_dict


#: Run on every event, rxroute's (structlog) and the libraries' (stdlib logging).
_SHARED: list[structlog.types.Processor] = [
    structlog.contextvars.merge_contextvars,
    add_trace_ids,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def log_formatter(*, json: bool = True) -> logging.Formatter:
    """The one formatter every log line goes through: tracebacks rendered, then redacted."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_database_details,
            renderer,
        ],
    )


def configure_logging(level: str = "INFO", *, json: bool = True) -> None:
    structlog.configure(
        # filter_by_level first: a line below the level is dropped before the chain runs
        # (time stamp, trace ids...), not after; the send job makes several per send.
        processors=[
            structlog.stdlib.filter_by_level,
            *_SHARED,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(log_formatter(json=json))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    # uvicorn's access log duplicates our request log line, with the query string.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "procrastinate"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
