"""Email in tests: rxroute's own mail catcher, and the runtime's SMTP settings aimed at it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from rxroute.config import Settings
from rxroute.mailcatcher import MailCatcher
from rxroute.runtime import Runtime


@contextlib.contextmanager
def sending_to(runtime: Runtime, catcher: MailCatcher, **overrides: Any) -> Iterator[Settings]:
    """Point the runtime's SMTP settings at ``catcher`` (plus ``overrides``) for the block."""
    saved = runtime.settings
    runtime.settings = saved.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": catcher.smtp_port,
            "smtp_username": "",
            "smtp_starttls": False,
            **overrides,
        }
    )
    try:
        yield runtime.settings
    finally:
        runtime.settings = saved


@pytest.fixture
def catcher() -> Iterator[MailCatcher]:
    with MailCatcher("127.0.0.1", 0, 0) as running:
        yield running
