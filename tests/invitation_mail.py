"""Invitation emails in tests: the queued jobs, run for real against rxroute's mail catcher."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from rxroute.auth.tasks import send_invitation
from rxroute.mailcatcher import MailCatcher
from rxroute.mailcatcher.store import StoredMessage
from rxroute.runtime import Runtime
from tests.mail import catcher as catcher  # a fixture
from tests.mail import sending_to

_LINK = re.compile(r"https?://\S+/welcome/([A-Za-z0-9_-]+)")


@pytest.fixture
def mail(db: Runtime, catcher: MailCatcher) -> Iterator[Runtime]:
    """The runtime, sending email to the catcher."""
    with sending_to(db, catcher):
        yield db


async def invitation_jobs(runtime: Runtime) -> list[dict[str, Any]]:
    """The queued ``send_invitation_email`` jobs' arguments, oldest first."""
    async with runtime.engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT args FROM procrastinate_jobs WHERE task_name = 'send_invitation_email' "
                "ORDER BY id"
            )
        )
        return [dict(row.args) for row in rows]


async def run_invitation_jobs(runtime: Runtime) -> list[str]:
    """Run every queued invitation job once (as the worker would); their outcomes."""
    outcomes = []
    for args in await invitation_jobs(runtime):
        outcomes.append(
            await send_invitation(runtime, uuid.UUID(args["invitation_id"]), args["sealed_token"])
        )
    return outcomes


def token_in(message: StoredMessage) -> str:
    assert message.text_body is not None
    found = _LINK.search(message.text_body)
    assert found, message.text_body
    return found.group(1)
