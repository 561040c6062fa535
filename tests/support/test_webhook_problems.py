"""Support's webhook problems: failed and stale-pending events, and reprocessing one."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.models import InboundWebhookEvent, Role, User
from rxroute.runtime import Runtime
from rxroute.webhooks.dead_letters import STALE_PENDING_AFTER
from tests import factories
from tests.staff_pages import csrf_for, csrf_from, sign_in
from tests.webhooks.helpers import (
    event_payload,
    new_prescription,
    provider_id_for,
    run_jobs,
    status_and_history,
)

PAYLOAD_MARKER = "payload-marker-never-shown"
LONG_AGO = timedelta(minutes=30)


@dataclasses.dataclass
class Staff:
    support: User
    patient_user: User


@pytest.fixture
async def staff(session: AsyncSession) -> Staff:
    support = await factories.make_user(session, Role.SUPPORT)
    patient_user = await factories.make_user(session, Role.PATIENT)
    await session.commit()
    return Staff(support, patient_user)


@pytest.fixture
async def as_support(client: httpx.AsyncClient, staff: Staff) -> httpx.AsyncClient:
    await sign_in(client, staff.support)
    return client


async def _add_event(
    runtime: Runtime,
    provider_event_id: str,
    state: str,
    *,
    pid: uuid.UUID | None = None,
    status: str = "dispensed",
    age: timedelta = timedelta(0),
    **columns: Any,
) -> uuid.UUID:
    """A stored event about ``pid`` (by platform id and client_ref_id), ``age`` old."""
    payload = event_payload(
        status=status,
        provider_id=provider_id_for(pid) if pid else "SRXNOSUCH",
        client_ref_id=str(pid) if pid else None,
        event_id=provider_event_id,
    )
    payload["note"] = PAYLOAD_MARKER
    async with runtime.sessionmaker() as session, session.begin():
        now = await session.scalar(text("SELECT now()"))
        assert isinstance(now, datetime)
        event = InboundWebhookEvent(
            provider="signaturerx",
            provider_event_id=provider_event_id,
            event_type=payload["event"],
            payload=payload,
            state=state,
            received_at=now - age,
            **columns,
        )
        session.add(event)
        await session.flush()
        return event.id


def _failed_columns() -> dict[str, Any]:
    return {
        "error_type": "RuntimeError",
        "error": "processing failed 11 times; the last attempt raised builtins.RuntimeError",
        "attempts": 11,
        "failed_at": datetime.now(UTC),
    }


async def _event(runtime: Runtime, event_id: uuid.UUID) -> InboundWebhookEvent:
    async with runtime.sessionmaker() as session:
        event = await session.get(InboundWebhookEvent, event_id)
        assert event is not None
        return event


async def _jobs(runtime: Runtime) -> list[dict[str, Any]]:
    async with runtime.sessionmaker() as session:
        rows = await session.execute(
            text(
                "SELECT args, lock FROM procrastinate_jobs "
                "WHERE task_name = 'process_webhook_event' ORDER BY id"
            )
        )
        return [dict(row._mapping) for row in rows]


def _section(page: str, table_id: str) -> str:
    start = page.index(f'id="{table_id}"')
    return page[start : page.index("</table>", start)]


async def test_the_list_shows_failed_and_stale_pending_events_only(
    as_support: httpx.AsyncClient, db: Runtime
) -> None:
    pid = await new_prescription(db)
    await _add_event(db, "evt_failed", "failed", pid=pid, age=LONG_AGO, **_failed_columns())
    await _add_event(db, "evt_stale", "pending", pid=pid, age=LONG_AGO)
    await _add_event(db, "evt_fresh", "pending", pid=pid, age=timedelta(minutes=1))
    await _add_event(db, "evt_done", "processed", pid=pid, age=LONG_AGO)
    almost = STALE_PENDING_AFTER - timedelta(minutes=1)
    await _add_event(db, "evt_almost", "pending", age=almost)
    # Received long ago, but support re-queued it a minute ago: not stale again yet.
    await _add_event(
        db,
        "evt_requeued",
        "pending",
        age=LONG_AGO,
        reprocess_count=1,
        reprocess_requested_at=datetime.now(UTC) - timedelta(minutes=1),
    )

    console = (await as_support.get("/support")).text
    assert "Webhook problems (2)" in console
    assert 'href="/support/webhooks"' in console

    response = await as_support.get("/support/webhooks")
    assert response.status_code == 200
    page = response.text
    failed = _section(page, "failed-events")
    assert "evt_failed" in failed and "RuntimeError" in failed and ">11<" in failed
    assert f'href="/support/prescriptions/{pid}"' in failed  # linked through its payload
    assert f'<input type="hidden" name="csrf_token" value="{csrf_from(page)}">' in failed
    assert "evt_stale" in _section(page, "stale-events")
    for absent in ("evt_fresh", "evt_done", "evt_almost", "evt_requeued"):
        assert absent not in page, absent
    assert PAYLOAD_MARKER not in page


async def test_the_prescription_page_shows_its_failed_event_with_a_reprocess_button(
    as_support: httpx.AsyncClient, db: Runtime
) -> None:
    pid = await new_prescription(db)
    failed_id = await _add_event(db, "evt_failed", "failed", pid=pid, **_failed_columns())
    await _add_event(db, "evt_stale", "pending", pid=pid, age=LONG_AGO)
    await _add_event(db, "evt_other", "failed", **_failed_columns())  # another prescription's
    page = (await as_support.get(f"/support/prescriptions/{pid}")).text
    events = _section(page, "webhook-events")
    assert "evt_failed" in events and "RuntimeError after 11 attempts" in events
    assert "evt_stale" in events and "pending for over 10 minutes" in events
    assert "evt_other" not in events
    assert f'action="/support/webhooks/{failed_id}/reprocess"' in events
    assert PAYLOAD_MARKER not in page


async def test_reprocess_requeues_records_who_and_the_event_is_processed(
    as_support: httpx.AsyncClient, db: Runtime, staff: Staff
) -> None:
    pid = await new_prescription(db)
    event_id = await _add_event(db, "evt_failed", "failed", pid=pid, **_failed_columns())
    path = f"/support/prescriptions/{pid}"
    token = await csrf_for(as_support, path)

    response = await as_support.post(
        f"/support/webhooks/{event_id}/reprocess",
        data={"csrf_token": token, "prescription_id": str(pid)},
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"{path}?done=reprocess"
    event = await _event(db, event_id)
    assert (event.state, event.reprocess_count) == ("pending", 1)
    assert event.reprocess_requested_by == staff.support.id
    assert event.reprocess_requested_at is not None
    assert (event.error, event.error_type, event.attempts, event.failed_at) == (
        None,
        None,
        None,
        None,
    )
    jobs = await _jobs(db)
    assert jobs == [{"args": {"event_id": str(event_id)}, "lock": f"erx:{provider_id_for(pid)}"}]

    # The handler works now: the job the reprocess deferred applies the event.
    await run_jobs(db)
    assert (await _event(db, event_id)).state == "processed"
    status, history = await status_and_history(db, pid)
    assert status == "dispensed"
    assert [e.provider_event_id for e in history if e.source == "webhook"] == ["evt_failed"]
    page = (await as_support.get(f"{path}?done=reprocess")).text
    assert "The webhook event was queued to be processed again." in page
    assert f"1 time, last by {staff.support.email}" in _section(page, "webhook-events")


async def test_reprocess_from_the_list_returns_to_the_list(
    as_support: httpx.AsyncClient, db: Runtime
) -> None:
    event_id = await _add_event(db, "evt_stale", "pending", age=LONG_AGO)
    token = await csrf_for(as_support, "/support/webhooks")
    response = await as_support.post(
        f"/support/webhooks/{event_id}/reprocess", data={"csrf_token": token}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/support/webhooks?done=reprocess"
    assert (await _event(db, event_id)).reprocess_count == 1
    assert len(await _jobs(db)) == 1
    # Asked twice (a double click): the event is freshly pending, so the second is refused.
    again = await as_support.post(
        f"/support/webhooks/{event_id}/reprocess", data={"csrf_token": token}
    )
    assert again.status_code == 409
    assert "still waiting for its processing job" in again.text
    assert (await _event(db, event_id)).reprocess_count == 1
    assert len(await _jobs(db)) == 1


async def test_reprocess_of_a_processed_event_is_409(
    as_support: httpx.AsyncClient, db: Runtime
) -> None:
    pid = await new_prescription(db)
    event_id = await _add_event(db, "evt_done", "processed", pid=pid)
    token = await csrf_for(as_support, "/support/webhooks")
    for extra in ({}, {"prescription_id": str(pid)}):
        response = await as_support.post(
            f"/support/webhooks/{event_id}/reprocess", data={"csrf_token": token, **extra}
        )
        assert response.status_code == 409
        assert "was processed already" in response.text
    event = await _event(db, event_id)
    assert (event.state, event.reprocess_count, event.reprocess_requested_by) == (
        "processed",
        0,
        None,
    )
    assert await _jobs(db) == []


async def test_reprocess_of_an_unknown_event_is_404(
    as_support: httpx.AsyncClient, db: Runtime
) -> None:
    token = await csrf_for(as_support, "/support/webhooks")
    response = await as_support.post(
        f"/support/webhooks/{uuid.uuid4()}/reprocess", data={"csrf_token": token}
    )
    assert response.status_code == 404


async def test_reprocess_needs_the_csrf_token_and_a_staff_user(
    client: httpx.AsyncClient, db: Runtime, staff: Staff
) -> None:
    event_id = await _add_event(db, "evt_failed", "failed", **_failed_columns())
    await sign_in(client, staff.support)
    for data in ({}, {"csrf_token": "forged"}):
        response = await client.post(f"/support/webhooks/{event_id}/reprocess", data=data)
        assert response.status_code == 403
    client.cookies.clear()
    await sign_in(client, staff.patient_user)
    token = csrf_from((await client.get("/login")).text)
    response = await client.post(
        f"/support/webhooks/{event_id}/reprocess", data={"csrf_token": token}
    )
    assert response.status_code == 403
    event = await _event(db, event_id)
    assert (event.state, event.reprocess_count) == ("failed", 0)
    assert await _jobs(db) == []
