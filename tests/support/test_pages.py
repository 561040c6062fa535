"""The support console: roles, CSRF, search, problems, the prescription page and its actions."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.channels.email.links import read_dispense_token
from rxroute.deliveries import ledger
from rxroute.mailcatcher import MailCatcher
from rxroute.models import (
    DeliveryAttempt,
    InboundWebhookEvent,
    Patient,
    Prescription,
    PrescriptionStatusEvent,
    Role,
    User,
)
from rxroute.prescriptions.history import history, lock_prescription, record_status
from rxroute.prescriptions.lifecycle import FAR_SIDE_STATUSES, Source, Status, derive_status
from rxroute.prescriptions.reference import short_reference
from rxroute.runtime import Runtime
from rxroute.support.tasks import resend_email
from tests import factories
from tests.erx_sandbox import Erx, queue_for_erx, send_until_done
from tests.erx_sandbox import erx as erx  # a fixture
from tests.erx_sandbox import sandbox as sandbox  # a fixture
from tests.staff_pages import csrf_for, csrf_from, sign_in

PAYLOAD_MARKER = "payload-marker-never-shown"


@dataclasses.dataclass
class World:
    support: User
    admin: User
    patient_user: User
    patient: Patient
    prescription: Prescription


async def _walk(
    session: AsyncSession, prescription: Prescription, steps: list[tuple[Status, Source]]
) -> None:
    """Record ``steps`` as the ledger would: ``queued`` opens a delivery, far-side facts are
    observed on it, ``failed`` gives its series up."""
    for status, source in steps:
        if status is Status.QUEUED:
            await factories.queue_delivery(session, prescription.id, source=source)
        elif status is Status.FAILED:
            locked = await lock_prescription(session, prescription.id)
            assert locked.current_delivery_id is not None
            delivery = await ledger.get_delivery(session, locked.current_delivery_id)
            await ledger.fail(session, locked, delivery, "the mail server timed out")
        elif status in FAR_SIDE_STATUSES:
            await factories.observe_current(session, prescription.id, status, source=source)
        else:
            await record_status(session, prescription.id, status, source=source)


@pytest.fixture
async def world(session: AsyncSession, db: Runtime) -> World:
    patient = await factories.make_patient(
        session, email="Jane.Doe@Example.com", first_name="Jane", last_name="Doe"
    )
    patient_user = await factories.make_user(session, Role.PATIENT, patient=patient)
    support = await factories.make_user(session, Role.SUPPORT)
    admin = await factories.make_user(session, Role.ADMIN)
    prescriber = await factories.make_prescriber(session, db.secret_box)
    pharmacy = await factories.make_pharmacy(session, "B", name="Leeds <b>Chemist</b>")
    prescription = await factories.make_prescription(
        session,
        patient,
        prescriber,
        region="B",
        channel="erx",
        pharmacy_id=pharmacy.id,
    )
    delivery = await factories.queue_delivery(
        session, prescription.id, source=Source.PATIENT, actor=str(patient_user.id)
    )
    await _walk(session, prescription, [(Status.SENDING, Source.WORKER)])
    await factories.observe_current(
        session, prescription.id, Status.ISSUED, ref="SRXC49F3D4F66A7", raw_status="issued"
    )
    await factories.observe_current(
        session,
        prescription.id,
        Status.SIGNED,
        source=Source.WEBHOOK,
        raw_status="signed",
        event_id="evt_signed_1",
        occurred_at=datetime(2026, 1, 5, 10, 0, tzinfo=UTC),
    )
    session.add(
        InboundWebhookEvent(
            provider="signaturerx",
            provider_event_id="evt_signed_1",
            event_type="prescription.status_changed",
            payload={"id": "evt_signed_1", "note": PAYLOAD_MARKER},
            prescription_id=prescription.id,
            state="processed",
            processed_at=datetime.now(UTC),
        )
    )
    session.add(ledger.attempt_row(delivery, "issue", "succeeded", datetime.now(UTC), attempt=1))
    await session.commit()
    return World(support, admin, patient_user, patient, prescription)


@pytest.fixture
async def as_support(client: httpx.AsyncClient, world: World) -> httpx.AsyncClient:
    await sign_in(client, world.support)
    return client


async def _new_prescription(
    session: AsyncSession,
    runtime: Runtime,
    world: World,
    region: str,
    steps: list[tuple[Status, Source]],
    **overrides: Any,
) -> Prescription:
    prescriber = await factories.make_prescriber(session, runtime.secret_box, email="x@example.com")
    pharmacy = await factories.make_pharmacy(session, region)
    prescription = await factories.make_prescription(
        session,
        world.patient,
        prescriber,
        region=region,
        channel="email" if region == "A" else "erx",
        pharmacy_id=pharmacy.id,
        **overrides,
    )
    await _walk(session, prescription, steps)
    await session.commit()
    return prescription


FAILED_STEPS = [
    (Status.QUEUED, Source.PATIENT),
    (Status.SENDING, Source.WORKER),
    (Status.FAILED, Source.WORKER),
]
EMAILED_STEPS = [
    (Status.QUEUED, Source.PATIENT),
    (Status.SENDING, Source.WORKER),
    (Status.EMAILED, Source.WORKER),
]


async def _history(session: AsyncSession, prescription_id: uuid.UUID) -> list[Any]:
    return list(
        await session.scalars(
            select(PrescriptionStatusEvent)
            .where(PrescriptionStatusEvent.prescription_id == prescription_id)
            .order_by(PrescriptionStatusEvent.seq)
        )
    )


async def _jobs(session: AsyncSession, task: str) -> list[Any]:
    rows = await session.execute(
        text("SELECT args FROM procrastinate_jobs WHERE task_name = :task"), {"task": task}
    )
    return [row[0] for row in rows]


# --- roles and sign-in ------------------------------------------------------------------


async def test_signed_out_is_sent_to_sign_in(client: httpx.AsyncClient, world: World) -> None:
    response = await client.get("/support")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/support"


async def test_patient_may_not_open_support_or_admin(
    client: httpx.AsyncClient, world: World
) -> None:
    await sign_in(client, world.patient_user)
    for path in ("/support", f"/support/prescriptions/{world.prescription.id}", "/admin"):
        response = await client.get(path, headers={"accept": "text/html"})
        assert response.status_code == 403, path


async def test_patient_may_not_act(client: httpx.AsyncClient, world: World) -> None:
    await sign_in(client, world.patient_user)
    page = (await client.get("/login")).text  # any page carries the session's CSRF token
    response = await client.post(
        f"/support/prescriptions/{world.prescription.id}/void", data={"csrf_token": csrf_from(page)}
    )
    assert response.status_code == 403


async def test_support_and_admin_may_open_the_console(
    client: httpx.AsyncClient, world: World
) -> None:
    for user in (world.support, world.admin):
        client.cookies.clear()
        await sign_in(client, user)
        response = await client.get("/support")
        assert response.status_code == 200
        assert "Support console" in response.text


# --- search -----------------------------------------------------------------------------


async def _search(client: httpx.AsyncClient, query: str) -> httpx.Response:
    """The console's search form: a POST, so the query is in no URL."""
    token = await csrf_for(client, "/support")
    return await client.post("/support/search", data={"csrf_token": token, "q": query})


@pytest.mark.parametrize(
    "query",
    [
        "{id}",
        "  {id_upper}  ",
        "SRXC49F3D4F66A7",
        "srxc49f3d4f66a7",
        "jane.doe@example.com",
        "JANE.DOE@EXAMPLE.COM",
    ],
)
async def test_search_finds_by_each_kind_of_id(
    as_support: httpx.AsyncClient, world: World, query: str
) -> None:
    q = query.format(id=world.prescription.id, id_upper=str(world.prescription.id).upper())
    response = await _search(as_support, q)
    assert response.status_code == 200
    assert f'href="/support/prescriptions/{world.prescription.id}"' in response.text
    assert "No prescription matches" not in response.text


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("4fadcc3c-4948-484b-80ca-86acfb51c809", 200),  # an ID nobody has
        ("SRXNOPE", 200),
        ("nobody@example.com", 200),
        ("jane.doe@example", 200),
        # Not an ID, a part of one or an email: the field is named, nothing is searched.
        ("<script>alert(1)</script>", 422),
        ("'; DROP TABLE prescriptions; --", 422),
        ("%_%", 422),
        ("x" * 1900, 422),
        ("\x00\x1b[31m", 422),
    ],
)
async def test_search_odd_queries_answer_safely(
    as_support: httpx.AsyncClient, world: World, query: str, status: int
) -> None:
    response = await _search(as_support, query)
    assert response.status_code == status
    assert "<script>alert(1)</script>" not in response.text
    assert f"/support/prescriptions/{world.prescription.id}" not in response.text
    if status == 422:
        assert 'id="search-errors"' in response.text and "q: Give rxroute" in response.text


async def test_overlong_query_is_refused(as_support: httpx.AsyncClient, world: World) -> None:
    response = await _search(as_support, "x" * 5000)
    assert response.status_code == 422


# --- problems ---------------------------------------------------------------------------


async def test_problems_list_failed_stuck_and_flagged_events(
    as_support: httpx.AsyncClient, world: World, session: AsyncSession, db: Runtime
) -> None:
    failed = await _new_prescription(session, db, world, "B", FAILED_STEPS)
    stuck = await _new_prescription(session, db, world, "A", [])
    fresh = await _new_prescription(session, db, world, "A", [])
    long_ago = datetime.now(UTC) - timedelta(minutes=25)
    for prescription, when in ((stuck, long_ago), (fresh, datetime.now(UTC))):
        session.add(
            PrescriptionStatusEvent(
                prescription_id=prescription.id,
                status="queued",
                source="patient",
                occurred_at=when,
                recorded_at=when,
            )
        )
        await session.execute(
            text("UPDATE prescriptions SET status = 'queued' WHERE id = :id"),
            {"id": prescription.id},
        )
    for state, event_id in (
        ("unknown_prescription", "evt_orphan"),
        ("unknown_type", "evt_weird"),
        ("failed", "evt_broken"),
        ("processed", "evt_fine"),
    ):
        session.add(
            InboundWebhookEvent(
                provider="signaturerx",
                provider_event_id=event_id,
                event_type="prescription.<i>odd</i>",
                payload={"note": PAYLOAD_MARKER},
                state=state,
                error="no prescription with this platform id",
            )
        )
    await session.commit()

    page = (await as_support.get("/support")).text
    assert f"/support/prescriptions/{failed.id}" in page
    assert f"/support/prescriptions/{stuck.id}" in page
    assert f"/support/prescriptions/{fresh.id}" not in page
    assert "Webhook problems (3)" in page  # one failed, two flagged; listed on their own page
    assert 'href="/support/webhooks"' in page
    events_page = (await as_support.get("/support/webhooks")).text
    for event_id in ("evt_orphan", "evt_weird", "evt_broken"):
        assert event_id in events_page
    assert "evt_fine" not in events_page
    assert "prescription.&lt;i&gt;odd&lt;/i&gt;" in events_page
    assert PAYLOAD_MARKER not in page + events_page


# --- the prescription page --------------------------------------------------------------


async def test_prescription_page_shows_timeline_events_attempts_and_the_patient(
    as_support: httpx.AsyncClient, world: World
) -> None:
    response = await as_support.get(f"/support/prescriptions/{world.prescription.id}")
    assert response.status_code == 200
    page = response.text
    timeline = page[page.index('id="timeline"') : page.index('id="events-heading"')]
    for source in ("patient", "worker", "webhook"):
        assert f'<td class="source">{source}</td>' in timeline
    assert "Jane Doe (patient)" in timeline  # the patient's send, attributed by name
    assert str(world.patient_user.id) not in timeline
    assert "5 Jan 2026, 10:00:00 GMT" in timeline  # the platform's time, not ours
    assert "evt_signed_1" in page
    assert "prescription.status_changed" in page
    assert PAYLOAD_MARKER not in page
    assert "SRXC49F3D4F66A7" in page
    assert "Jane Doe" in page and "Jane.Doe@Example.com" in page
    # Date of birth and phone, to tell patients apart and call them; never the address.
    dob = world.patient.date_of_birth.isoformat()
    assert 'id="patient-dob"' in page and dob in page
    assert world.patient.phone and world.patient.phone in page
    assert "Example Street" not in page and "LS1 4AP" not in page  # no patient address
    assert "Leeds &lt;b&gt;Chemist&lt;/b&gt;" in page
    assert "<b>Chemist</b>" not in page


async def test_unknown_prescription_is_404(as_support: httpx.AsyncClient, world: World) -> None:
    response = await as_support.get(
        f"/support/prescriptions/{uuid.uuid4()}", headers={"accept": "text/html"}
    )
    assert response.status_code == 404


# --- actions: CSRF ----------------------------------------------------------------------


@pytest.mark.parametrize("action", ["void", "retry", "resend-email"])
async def test_actions_need_the_csrf_token(
    as_support: httpx.AsyncClient, world: World, session: AsyncSession, action: str
) -> None:
    before = len(await _history(session, world.prescription.id))
    for data in ({}, {"csrf_token": "forged"}):
        response = await as_support.post(
            f"/support/prescriptions/{world.prescription.id}/{action}", data=data
        )
        assert response.status_code == 403
    assert len(await _history(session, world.prescription.id)) == before


# --- retry ------------------------------------------------------------------------------


async def test_retry_requeues_a_failed_send_with_who_did_it(
    as_support: httpx.AsyncClient, world: World, session: AsyncSession, db: Runtime
) -> None:
    failed = await _new_prescription(session, db, world, "B", FAILED_STEPS)
    path = f"/support/prescriptions/{failed.id}"
    token = await csrf_for(as_support, path)
    response = await as_support.post(
        f"{path}/retry", data={"csrf_token": token, "reason": "mail server fixed"}
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"{path}?done=retried"

    last = (await _history(session, failed.id))[-1]
    assert (last.status, last.source, last.actor) == ("queued", "support", str(world.support.id))
    assert "mail server fixed" in (last.detail or "")
    current = await session.get(Prescription, failed.id, populate_existing=True)
    assert current is not None and current.status == "queued"
    assert current.failure_reason is None
    # The same delivery, pending again, as a fresh series with its counter at zero.
    assert (
        current.current_delivery_id is not None and last.delivery_id == current.current_delivery_id
    )
    delivery = await ledger.get_delivery(session, current.current_delivery_id)
    assert (delivery.state, delivery.series, delivery.attempts_in_series) == ("pending", 2, 0)
    assert {"prescription_id": str(failed.id)} in await _jobs(session, "send_prescription")

    page = (await as_support.get(response.headers["location"])).text
    assert "The send was queued again." in page
    assert world.support.email in page  # the timeline names who retried


@pytest.mark.parametrize("steps", [EMAILED_STEPS, [(Status.QUEUED, Source.PATIENT)], []])
async def test_retry_only_from_failed(
    as_support: httpx.AsyncClient,
    world: World,
    session: AsyncSession,
    db: Runtime,
    steps: list[tuple[Status, Source]],
) -> None:
    prescription = await _new_prescription(session, db, world, "A", steps)
    before = len(await _history(session, prescription.id))
    path = f"/support/prescriptions/{prescription.id}"
    token = await csrf_for(as_support, path)
    response = await as_support.post(
        f"{path}/retry", data={"csrf_token": token, "reason": "checked the pharmacy"}
    )
    assert response.status_code == 409
    assert "only a failed send can be retried" in response.text
    assert len(await _history(session, prescription.id)) == before
    assert await _jobs(session, "send_prescription") == []


# --- void -------------------------------------------------------------------------------


async def _issued_on_the_sandbox(session: AsyncSession, erx: Erx, world: World) -> Prescription:
    """A Region B prescription of the world's patient, issued on the sandbox by the worker."""
    prescriber = await factories.make_prescriber(session, erx.runtime.secret_box)
    pharmacy = await factories.make_pharmacy(session, "B", platform_contact_id=5001)
    prescription = await factories.make_prescription(session, world.patient, prescriber)
    await queue_for_erx(session, prescription.id, pharmacy)
    await session.commit()
    outcomes = await send_until_done(erx.runtime, prescription.id)
    assert outcomes[-1].result == "issued"
    issued = await session.get(Prescription, prescription.id, populate_existing=True)
    assert issued is not None and issued.provider_prescription_id
    return issued


async def _on_the_platform(erx: Erx, provider_id: str) -> str:
    remote = await erx.control("GET", f"/_sandbox/prescriptions/{provider_id}")
    status: str = remote["data"]["prescription"]["status"]
    return status


async def test_void_region_b_calls_the_platform_and_records_who_and_why(
    as_support: httpx.AsyncClient, world: World, session: AsyncSession, erx: Erx
) -> None:
    issued = await _issued_on_the_sandbox(session, erx, world)
    provider_id = issued.provider_prescription_id
    assert provider_id is not None
    path = f"/support/prescriptions/{issued.id}"
    page = (await as_support.get(f"{path}/void")).text
    assert 'name="reason"' in page  # the void's confirm step asks why
    token = await csrf_for(as_support, path)
    response = await as_support.post(
        f"{path}/void", data={"csrf_token": token, "reason": "prescribed twice by mistake"}
    )
    assert response.status_code == 303
    assert await _on_the_platform(erx, provider_id) == "voided"
    last = (await _history(session, issued.id))[-1]
    assert (last.status, last.source, last.actor) == ("voided", "support", str(world.support.id))
    assert last.provider_status == "voided"
    assert "prescribed twice by mistake" in (last.detail or "")
    current = await session.get(Prescription, issued.id, populate_existing=True)
    assert current is not None and current.status == "voided"
    page = (await as_support.get(response.headers["location"])).text
    assert "The prescription was voided." in page


async def test_void_without_a_reason_is_refused_naming_the_field(
    as_support: httpx.AsyncClient, world: World, session: AsyncSession, erx: Erx
) -> None:
    issued = await _issued_on_the_sandbox(session, erx, world)
    assert issued.provider_prescription_id is not None
    before = len(await _history(session, issued.id))
    path = f"/support/prescriptions/{issued.id}"
    for reason in ("", "   "):
        token = await csrf_for(as_support, path)
        response = await as_support.post(
            f"{path}/void", data={"csrf_token": token, "reason": reason}
        )
        assert response.status_code == 422
        assert "reason: say why" in response.text
    assert len(await _history(session, issued.id)) == before
    assert await _on_the_platform(erx, issued.provider_prescription_id) != "voided"
    current = await session.get(Prescription, issued.id, populate_existing=True)
    assert current is not None and current.status == "issued"


async def test_void_refused_by_the_platform_when_dispensed(
    as_support: httpx.AsyncClient, world: World, session: AsyncSession, erx: Erx
) -> None:
    issued = await _issued_on_the_sandbox(session, erx, world)
    provider_id = issued.provider_prescription_id
    assert provider_id is not None
    # The pharmacy dispensed it on the platform; rxroute has not heard yet (no webhook).
    await erx.control("POST", f"/_sandbox/prescriptions/{provider_id}/dispense")
    path = f"/support/prescriptions/{issued.id}"
    token = await csrf_for(as_support, path)
    response = await as_support.post(
        f"{path}/void", data={"csrf_token": token, "reason": "patient changed their mind"}
    )
    assert response.status_code == 409
    assert "already dispensed this prescription, so it cannot be cancelled" in response.text
    assert 'role="alert"' in response.text
    statuses = [e.status for e in await _history(session, issued.id)]
    assert "voided" not in statuses
    # What the platform said is now the truth here too.
    assert statuses[-1] == "dispensed"
    current = await session.get(Prescription, issued.id, populate_existing=True)
    assert current is not None and current.status == "dispensed"
    assert await _on_the_platform(erx, provider_id) == "dispensed"


async def test_void_of_a_dispensed_prescription_is_refused_locally(
    as_support: httpx.AsyncClient, world: World, session: AsyncSession, db: Runtime
) -> None:
    prescription = await _new_prescription(
        session, db, world, "A", [*EMAILED_STEPS, (Status.DISPENSED, Source.PHARMACY)]
    )
    path = f"/support/prescriptions/{prescription.id}"
    page = (await as_support.get(path)).text
    assert "/void" not in page  # no button for a final prescription
    before = len(await _history(session, prescription.id))
    response = await as_support.post(
        f"{path}/void",
        data={"csrf_token": await csrf_for(as_support, path), "reason": "prescribed in error"},
    )
    assert response.status_code == 409
    assert "already been dispensed, so it cannot be cancelled" in response.text
    assert len(await _history(session, prescription.id)) == before


# --- resend a Region A email ------------------------------------------------------------


@pytest.fixture
def catcher() -> Iterator[MailCatcher]:
    with MailCatcher("127.0.0.1", 0, 0) as running:
        yield running


async def test_resend_email_records_the_request_and_resends(
    as_support: httpx.AsyncClient,
    world: World,
    session: AsyncSession,
    db: Runtime,
    catcher: MailCatcher,
) -> None:
    prescription = await _new_prescription(session, db, world, "A", EMAILED_STEPS)
    path = f"/support/prescriptions/{prescription.id}"
    assert "/resend-email" in (await as_support.get(path)).text
    token = await csrf_for(as_support, path)
    response = await as_support.post(f"{path}/resend-email", data={"csrf_token": token})
    assert response.status_code == 303
    jobs = await _jobs(session, "resend_prescription_email")
    assert jobs == [
        {"prescription_id": str(prescription.id), "requested_by": str(world.support.id)}
    ]
    requested = (
        await session.scalars(
            select(DeliveryAttempt).where(DeliveryAttempt.prescription_id == prescription.id)
        )
    ).all()
    assert [(a.action, a.outcome) for a in requested] == [("resend", "requested")]
    # No bare user id in the attempt's note (the page would show a UUID): who asked is the
    # history's actor, shown by name.
    assert str(world.support.id) not in (requested[0].error or "")
    assert "resend requested by support" in (requested[0].error or "")
    # The request is in the history too, with who asked; the status does not move.
    events = await history(session, prescription.id)
    note = events[-1]
    assert (note.status, note.source, note.actor) == ("emailed", "support", str(world.support.id))
    assert derive_status(Status(e.status) for e in events) is Status.EMAILED

    # Run the job against a local mail catcher.
    settings = db.settings.model_copy(update={"smtp_port": catcher.smtp_port})
    outcome = await resend_email(
        dataclasses.replace(db, settings=settings), prescription.id, str(world.support.id)
    )
    assert outcome == "succeeded"
    [message] = catcher.messages()
    # Visibly a copy, with the same reference, so the pharmacy does not dispense it twice.
    reference = short_reference(prescription.id)
    assert message.subject == f"COPY: Private prescription {reference}"
    assert f"COPY - same prescription, reference {reference}; do not dispense twice" in (
        message.text_body or ""
    )
    current = await session.get(Prescription, prescription.id, populate_existing=True)
    assert current is not None and current.status == "emailed"  # unchanged
    # Its link is bound to the live delivery it copies.
    assert current.current_delivery_id is not None
    [url] = [w for w in (message.text_body or "").split() if "/pharmacy/confirm/" in w]
    link = read_dispense_token(
        db.settings.link_secret.get_secret_value(), url.rsplit("/", 1)[1], 3600
    )
    assert link.delivery_id == str(current.current_delivery_id)
    resent = (
        await session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.prescription_id == prescription.id)
            .order_by(DeliveryAttempt.started_at)
        )
    ).all()
    assert [(a.action, a.outcome) for a in resent] == [
        ("resend", "requested"),
        ("resend", "succeeded"),
    ]
    page = (await as_support.get(path)).text
    assert "requested" in page and "succeeded" in page


async def test_resend_only_for_emailed_region_a(
    as_support: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    path = f"/support/prescriptions/{world.prescription.id}"  # Region B, signed
    assert "/resend-email" not in (await as_support.get(path)).text
    token = await csrf_for(as_support, path)
    response = await as_support.post(f"{path}/resend-email", data={"csrf_token": token})
    assert response.status_code == 409
    assert "only a Region A (email) prescription" in response.text
    assert await _jobs(session, "resend_prescription_email") == []
