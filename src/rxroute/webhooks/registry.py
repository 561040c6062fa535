"""The webhook event types rxroute handles, in one explicit table.

An event whose type is not here is stored and flagged ``unknown_type`` for support, never
dropped: a new event type from the platform shows up on the support console the day it
appears, instead of vanishing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.models import InboundWebhookEvent

Handler = Callable[[AsyncSession, InboundWebhookEvent, dict[str, Any]], Awaitable[str]]

STATUS_CHANGED = "prescription.status_changed"


def handlers() -> dict[str, Handler]:
    from rxroute.webhooks.processing import handle_status_changed

    return {STATUS_CHANGED: handle_status_changed}
