"""Support's events log and resend; admin's endpoints (add, disable, enable)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, text, update

from rxroute.events.receiver import EventReceiver
from rxroute.events.secrets import secret_bytes
from rxroute.models import EventDelivery, EventEndpoint, Role, User
from rxroute.runtime import Runtime
from tests import factories
from tests.events.conftest import (
    add_endpoint,
    all_delivered,
    deliveries,
    queued_prescription,
    run_jobs_until,
)
from tests.staff_pages import csrf_for, sign_in


async def _user(runtime: Runtime, role: Role) -> User:
    async with runtime.sessionmaker() as session, session.begin():
        user = await factories.make_user(session, role)
    return user


@pytest.fixture
async def delivered_one(
    fast_retries: Runtime, receiver: EventReceiver, secret: str
) -> EventDelivery:
    """One event delivered to the receiver."""
    runtime = fast_retries
    async with runtime.sessionmaker() as session, session.begin():
        await add_endpoint(session, runtime, receiver.events_url, secret)
        await queued_prescription(session, runtime)
    await run_jobs_until(runtime, lambda: all_delivered(runtime))
    (row,) = await deliveries(runtime)
    return row


async def test_support_sees_the_log_and_resend_records_who(
    fast_retries: Runtime,
    client: httpx.AsyncClient,
    receiver: EventReceiver,
    delivered_one: EventDelivery,
) -> None:
    runtime = fast_retries
    support = await _user(runtime, Role.SUPPORT)
    await sign_in(client, support)
    index = await client.get("/support")
    assert 'href="/support/events"' in index.text
    overview = await client.get("/support/events")
    assert overview.status_code == 200
    log_url = f"/support/events/endpoints/{delivered_one.endpoint_id}"
    assert log_url in overview.text
    page = await client.get(log_url)
    assert page.status_code == 200
    assert "prescription.queued" in page.text and str(delivered_one.prescription_id) in page.text
    token = await csrf_for(client, log_url)
    resend_url = f"/support/events/deliveries/{delivered_one.id}/resend"

    refused = await client.post(resend_url, data={"csrf_token": "forged"})
    assert refused.status_code == 403
    async with runtime.sessionmaker() as session:
        unchanged = await session.get_one(EventDelivery, delivered_one.id)
        assert (unchanged.state, unchanged.resend_count) == ("delivered", 0)

    done = await client.post(resend_url, data={"csrf_token": token})
    assert done.status_code == 303 and done.headers["location"] == f"{log_url}?done=resend"
    async with runtime.sessionmaker() as session:
        asked = await session.get_one(EventDelivery, delivered_one.id)
    assert asked.resend_requested_by == support.id and asked.resend_count == 1
    assert asked.state == "pending" and asked.attempts == 0
    await run_jobs_until(runtime, lambda: all_delivered(runtime))
    # Sent again with the same webhook-id: the receiver drops it as a repeat.
    assert len(receiver.events()) == 1 and receiver.repeats == 1
    shown = await client.get(log_url)
    assert support.email in shown.text and "1 time" in shown.text


async def test_resend_of_an_unknown_delivery_is_404(
    fast_retries: Runtime, client: httpx.AsyncClient
) -> None:
    await sign_in(client, await _user(fast_retries, Role.SUPPORT))
    token = await csrf_for(client, "/support/events")
    missing = await client.post(
        f"/support/events/deliveries/{uuid.uuid4()}/resend", data={"csrf_token": token}
    )
    assert missing.status_code == 404


async def test_resend_to_a_disabled_endpoint_is_refused_with_the_reason(
    fast_retries: Runtime, client: httpx.AsyncClient, delivered_one: EventDelivery
) -> None:
    runtime = fast_retries
    async with runtime.sessionmaker() as session, session.begin():
        await session.execute(update(EventEndpoint).values(active=False))
    await sign_in(client, await _user(runtime, Role.SUPPORT))
    log_url = f"/support/events/endpoints/{delivered_one.endpoint_id}"
    token = await csrf_for(client, log_url)
    refused = await client.post(
        f"/support/events/deliveries/{delivered_one.id}/resend", data={"csrf_token": token}
    )
    assert refused.status_code == 409
    assert "disabled" in refused.text


async def test_a_long_failing_endpoint_is_flagged_on_both_pages(
    fast_retries: Runtime, client: httpx.AsyncClient, receiver: EventReceiver, secret: str
) -> None:
    runtime = fast_retries
    async with runtime.sessionmaker() as session, session.begin():
        endpoint = await add_endpoint(session, runtime, receiver.events_url, secret)
        await queued_prescription(session, runtime)
    receiver.fail_next(1000)

    async def failed() -> bool:
        return (await deliveries(runtime))[0].attempts >= 1

    await run_jobs_until(runtime, failed)
    await sign_in(client, await _user(runtime, Role.ADMIN))
    log_url = f"/support/events/endpoints/{endpoint.id}"
    recent = await client.get(log_url)
    assert 'id="flagged"' not in recent.text  # failing, but not for long yet
    async with runtime.sessionmaker() as session, session.begin():
        await session.execute(
            update(EventEndpoint)
            .where(EventEndpoint.id == endpoint.id)
            .values(failing_since=datetime.now(UTC) - timedelta(hours=2))
        )
    flagged = await client.get(log_url)
    assert 'id="flagged"' in flagged.text and "HTTP 503" in flagged.text
    for path in ("/support/events", "/admin/events"):
        listing = await client.get(path)
        assert re.search(r'<tr class="flagged">', listing.text), path


async def test_pages_are_for_staff_only(fast_retries: Runtime, client: httpx.AsyncClient) -> None:
    await sign_in(client, await _user(fast_retries, Role.PATIENT))
    assert (await client.get("/support/events")).status_code == 403
    assert (await client.get("/admin/events")).status_code == 403


async def test_admin_adds_an_endpoint_and_sees_its_secret_once(
    fast_retries: Runtime, client: httpx.AsyncClient
) -> None:
    runtime = fast_retries
    await sign_in(client, await _user(runtime, Role.ADMIN))
    token = await csrf_for(client, "/admin/events/new")
    bad = await client.post(
        "/admin/events/new",
        data={"csrf_token": token, "url": "ftp://example.com/x", "event_types": ["nope"]},
    )
    assert bad.status_code == 422
    assert "http:// or https:// URL" in bad.text and "Choose event types" in bad.text
    created = await client.post(
        "/admin/events/new",
        data={
            "csrf_token": token,
            "url": "https://platform.example.com/rxroute/events",
            "description": "Platform staging",
            "event_types": ["prescription.dispensed", "prescription.cancelled"],
        },
    )
    assert created.status_code == 201
    assert created.headers["cache-control"] == "no-store"
    shown = re.search(r'value="(whsec_[A-Za-z0-9+/=]+)"', created.text)
    assert shown is not None
    secret = shown.group(1)
    assert len(secret_bytes(secret)) == 32
    async with runtime.sessionmaker() as session:
        (endpoint,) = (await session.scalars(select(EventEndpoint))).all()
        raw = await session.scalar(text("SELECT secret_encrypted FROM event_endpoints"))
    assert endpoint.event_types == ["prescription.dispensed", "prescription.cancelled"]
    assert raw is not None and secret not in raw
    assert runtime.secret_box.decrypt(raw) == secret
    listing = await client.get("/admin/events")
    assert "Platform staging" in listing.text and secret not in listing.text

    disabled = await client.post(
        f"/admin/events/{endpoint.id}/active", data={"csrf_token": token, "active": "0"}
    )
    assert disabled.status_code == 303
    async with runtime.sessionmaker() as session:
        assert (await session.get_one(EventEndpoint, endpoint.id)).active is False
    enabled = await client.post(
        f"/admin/events/{endpoint.id}/active", data={"csrf_token": token, "active": "1"}
    )
    assert enabled.status_code == 303
    async with runtime.sessionmaker() as session:
        assert (await session.get_one(EventEndpoint, endpoint.id)).active is True
    forged = await client.post(
        f"/admin/events/{endpoint.id}/active", data={"csrf_token": "x", "active": "0"}
    )
    assert forged.status_code == 403


async def test_staging_admin_needs_https(fast_retries: Runtime, client: httpx.AsyncClient) -> None:
    from rxroute.config import Environment

    runtime = fast_retries
    await sign_in(client, await _user(runtime, Role.ADMIN))
    token = await csrf_for(client, "/admin/events/new")
    runtime.settings = runtime.settings.model_copy(update={"environment": Environment.STAGING})
    refused = await client.post(
        "/admin/events/new", data={"csrf_token": token, "url": "http://platform.example.com/e"}
    )
    assert refused.status_code == 422 and "https:// URL" in refused.text
