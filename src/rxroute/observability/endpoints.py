"""``GET /metrics`` for Prometheus, with the job queue's depth read at scrape time.

Left out of the API document: it is for the scraper, not for clients. When
``RXROUTE_METRICS_TOKEN`` is set it needs ``Authorization: Bearer <token>`` (compared in
constant time); otherwise keep the path off the public ingress (see docs/operations.md).
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from rxroute.config import Settings
from rxroute.observability.metrics import CONTENT_TYPE_LATEST, QueueDepth, exposition
from rxroute.runtime import get_runtime

router = APIRouter(include_in_schema=False)

#: Due jobs per task with the age of the oldest: a job waits from when it became due (its
#: ``scheduled_at``, else when it was deferred or last retried: its latest event).
_QUEUE_DEPTH = text(
    """
    SELECT job.task_name,
           count(*) AS waiting,
           coalesce(max(extract(epoch FROM now() - greatest(job.scheduled_at, latest.at))), 0)
    FROM procrastinate_jobs AS job
    LEFT JOIN LATERAL (
        SELECT max(event.at) AS at FROM procrastinate_events AS event
        WHERE event.job_id = job.id
    ) AS latest ON true
    WHERE job.status = 'todo' AND (job.scheduled_at IS NULL OR job.scheduled_at <= now())
    GROUP BY job.task_name
    """
)


async def queue_depths(engine: AsyncEngine) -> list[QueueDepth]:
    async with engine.connect() as connection:
        rows = (await connection.execute(_QUEUE_DEPTH)).all()
    return [QueueDepth(str(task), int(count), float(age)) for task, count, age in rows]


def scrape_allowed(settings: Settings, authorization: str) -> bool:
    """Whether a scrape may see the metrics (shared with the worker's metrics port)."""
    if settings.metrics_token is None:
        return True
    expected = f"Bearer {settings.metrics_token.get_secret_value()}"
    return hmac.compare_digest(authorization.encode(), expected.encode())


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    runtime = get_runtime()
    if not scrape_allowed(runtime.settings, request.headers.get("authorization", "")):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="metrics need 'Authorization: Bearer <RXROUTE_METRICS_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    depths = await queue_depths(runtime.engine)
    return Response(exposition(depths), media_type=CONTENT_TYPE_LATEST)
