"""The Region B send job against the real sandbox: exactly once, failures told as failures.

Every test drives :func:`rxroute.deliveries.sending.send` with the real
:class:`SignatureRxClient` over TCP to a :class:`SandboxServer`; retries the job schedules are
run at once (``send_until_done``) instead of waiting for the delayed procrastinate job.
"""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.channels.registry import get_channel
from rxroute.config import Settings
from rxroute.deliveries import ledger
from rxroute.deliveries.sending import send
from rxroute.models import DeliveryAttempt, Prescription
from rxroute.prescriptions.history import history, lock_prescription, record_status
from rxroute.prescriptions.lifecycle import Source, Status
from rxroute.runtime import Runtime
from rxroute.seed.service import add_prescriptions, seed_demo
from tests.erx_sandbox import (
    Erx,
    RecordingRetries,
    gather_in_batches,
    queue_for_erx,
    region_b_pharmacies,
    send_until_done,
)
from tests.erx_sandbox import erx as erx  # a fixture
from tests.erx_sandbox import sandbox as sandbox  # a fixture
from tests.factories import (
    make_patient,
    make_pharmacy,
    make_prescriber,
    make_prescription,
)

UNAUTHORIZED_CLINIC = "You trying to issue prescription to unauthorized clinic."


async def _queued(
    session: AsyncSession,
    runtime: Runtime,
    *,
    patient_overrides: dict[str, object] | None = None,
    prescriber: tuple[str, str, str] = (
        "dr.alice.hartfield@example.com",
        "sandbox-prescriber-alice",
        "123456",
    ),
    contact_id: int = 5001,
    items: int = 1,
) -> uuid.UUID:
    """One queued Region B prescription, committed."""
    patient = await make_patient(session, **(patient_overrides or {}))
    email, password, pin = prescriber
    doctor = await make_prescriber(
        session, runtime.secret_box, email=email, password=password, pin=pin
    )
    pharmacy = await make_pharmacy(session, "B", platform_contact_id=contact_id)
    prescription = await make_prescription(session, patient, doctor, items=items)
    await queue_for_erx(session, prescription.id, pharmacy)
    await session.commit()
    return prescription.id


async def _state(runtime: Runtime, prescription_id: uuid.UUID) -> tuple[Prescription, list[str]]:
    async with runtime.sessionmaker() as session:
        prescription = await session.get(Prescription, prescription_id)
        assert prescription is not None
        events = await history(session, prescription_id)
        return prescription, [event.status for event in events]


async def _attempts(runtime: Runtime, prescription_id: uuid.UUID) -> list[tuple[str, str]]:
    async with runtime.sessionmaker() as session:
        rows = await session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.prescription_id == prescription_id)
            .order_by(DeliveryAttempt.started_at, DeliveryAttempt.attempt)
        )
        return [(row.action, row.outcome) for row in rows]


# --- the happy path ------------------------------------------------------------------------------


async def test_send_issues_once_with_the_nested_platform_id(
    erx: Erx, session: AsyncSession
) -> None:
    pid = await _queued(session, erx.runtime)
    outcomes = await send_until_done(erx.runtime, pid)
    assert [o.result for o in outcomes] == ["issued"]

    prescription, statuses = await _state(erx.runtime, pid)
    assert prescription.status == "issued"
    assert statuses == ["queued", "sending", "issued"]
    assert prescription.provider_prescription_id is not None
    assert prescription.provider_prescription_id.startswith("SRX")
    assert prescription.failure_reason is None
    stats = await erx.stats()
    assert stats["issued_by_client_ref_id"] == {str(pid): 1}
    remote = await erx.control(
        "GET", f"/_sandbox/prescriptions/{prescription.provider_prescription_id}"
    )
    assert remote["data"]["prescription"]["client_ref_id"] == str(pid)

    # Running the job again (a duplicate job, a stalled-job retry) does nothing.
    again = await send_until_done(erx.runtime, pid)
    assert [o.result for o in again] == ["skipped"]
    assert (await erx.stats())["prescriptions_issued"] == 1


async def test_a_run_that_died_while_sending_looks_up_before_issuing(
    erx: Erx, session: AsyncSession
) -> None:
    """Status ``sending`` at start: an earlier run may have reached the platform."""
    pid = await _queued(session, erx.runtime)
    # What a run records when it claims the delivery, just before it calls out (then dies).
    prescription = await lock_prescription(session, pid)
    delivery = await ledger.current_delivery(session, prescription)
    assert delivery is not None
    delivery.reached_out = True
    delivery.attempts_in_series = 1
    await record_status(session, pid, Status.SENDING, source=Source.WORKER)
    await session.commit()

    outcomes = await send_until_done(erx.runtime, pid)
    assert [o.result for o in outcomes] == ["issued"]
    assert await _attempts(erx.runtime, pid) == [("lookup", "not_found"), ("issue", "succeeded")]
    assert (await erx.stats())["issued_by_client_ref_id"] == {str(pid): 1}


# --- exactly once under faults -------------------------------------------------------------------


@pytest.mark.slow
async def test_exactly_once_across_1000_sends_with_faults_and_short_tokens(
    db: Runtime, session: AsyncSession
) -> None:
    """10% 5xx, 10% processed-then-dropped, 30 s tokens, 20 sends at a time: one issue each."""
    from rxroute.channels.erx.signaturerx import SignatureRxClient
    from rxroute.sandbox import SandboxServer
    from tests.erx_sandbox import sandbox_config

    await seed_demo(session, db.secret_box)
    await add_prescriptions(session, 2000)
    await session.commit()
    pharmacies = await region_b_pharmacies(session)
    assert [p.platform_contact_id for p in pharmacies][:2] == [5001, 5002]
    ids = list(
        await session.scalars(
            select(Prescription.id)
            .where(Prescription.region == "B", Prescription.notes == "Bulk test prescription")
            .order_by(Prescription.id)
            .limit(1000)
        )
    )
    assert len(ids) == 1000
    for index, pid in enumerate(ids):
        await queue_for_erx(session, pid, pharmacies[index % len(pharmacies)])
    await session.commit()

    config = sandbox_config(
        error_rate=0.1,
        drop_after_processing_rate=0.1,
        access_token_ttl_seconds=30,
        session_token_ttl_seconds=30,
    )
    saved_settings, saved_service = db.settings, db.services.get("erx")
    async with SandboxServer(config, host="127.0.0.1", port=0) as server:
        settings: Settings = db.settings.model_copy(
            update={
                "erx_base_url": server.url,
                "erx_send_backoff_seconds": 0.001,
                "erx_send_max_attempts": 50,
            }
        )
        client = SignatureRxClient(settings)
        db.settings = settings
        db.services["erx"] = client
        wired = Erx(sandbox=server, client=client, runtime=db, settings=settings)
        try:
            results = await gather_in_batches(
                ids, 20, lambda pid: send_until_done(db, pid, max_runs=60)
            )
            stats = await wired.stats()
        finally:
            db.settings = saved_settings
            if saved_service is None:
                db.services.pop("erx", None)
            else:
                db.services["erx"] = saved_service
            await client.aclose()

    final = Counter(outcomes[-1].result for outcomes in results)
    assert set(final) <= {"issued", "found"}, final
    # The faults really happened, and some issues landed without an answer and were found.
    assert stats["injected_errors"] > 0 and stats["injected_drops"] > 0
    assert final["found"] > 0
    async with db.sessionmaker() as check:
        statuses = Counter(
            (
                await check.execute(select(Prescription.status).where(Prescription.id.in_(ids)))
            ).scalars()
        )
    # A copy found by lookup is recorded as the platform holds it now (signed, if it signed
    # while the answer was lost), never behind it.
    assert sum(statuses.values()) == 1000
    assert set(statuses) <= {"issued", "signed"}, statuses
    by_ref = stats["issued_by_client_ref_id"]
    assert set(by_ref) == {str(pid) for pid in ids}
    assert set(by_ref.values()) == {1}
    assert stats["prescriptions_issued"] == 1000


# --- the platform says no: failed, with its own words ------------------------------------------


@pytest.mark.parametrize(
    ("case", "platform_message"),
    [
        ("wrong_pin", "Invalid secure pin."),
        ("unknown_contact", "The selected contact is invalid."),
        ("inactive_prescriber", "Prescriber account is inactive."),
    ],
)
async def test_platform_rejections_end_failed_with_the_platform_message(
    erx: Erx, session: AsyncSession, case: str, platform_message: str
) -> None:
    if case == "wrong_pin":
        pid = await _queued(
            session,
            erx.runtime,
            prescriber=("dr.alice.hartfield@example.com", "sandbox-prescriber-alice", "999999"),
        )
    elif case == "unknown_contact":
        pid = await _queued(session, erx.runtime, contact_id=9999)
    else:
        pid = await _queued(
            session,
            erx.runtime,
            prescriber=("dr.carol.inactive@example.com", "sandbox-prescriber-carol", "111111"),
        )
    outcomes = await send_until_done(erx.runtime, pid)
    assert [o.result for o in outcomes] == ["failed"]

    prescription, statuses = await _state(erx.runtime, pid)
    assert prescription.status == "failed"
    assert prescription.failure_reason is not None
    assert platform_message in prescription.failure_reason
    assert prescription.provider_prescription_id is None
    assert statuses == ["queued", "sending", "failed"]
    assert "issued" not in statuses
    async with erx.runtime.sessionmaker() as check:
        events = await history(check, pid)
    assert events[-1].detail is not None and platform_message in events[-1].detail
    assert await _attempts(erx.runtime, pid) == [("issue", "rejected")]
    assert (await erx.stats())["prescriptions_issued"] == 0


async def test_display_clinic_id_is_explained_on_send(erx: Erx, session: AsyncSession) -> None:
    erx.reconfigure(erx_clinic_id=201334)
    pid = await _queued(session, erx.runtime)
    outcomes = await send_until_done(erx.runtime, pid)
    assert [o.result for o in outcomes] == ["failed"]

    prescription, statuses = await _state(erx.runtime, pid)
    assert prescription.status == "failed"
    reason = prescription.failure_reason or ""
    assert UNAUTHORIZED_CLINIC in reason
    assert "201334" in reason and "display ID" in reason and "994" in reason
    assert statuses[-1] == "failed" and "issued" not in statuses
    assert (await erx.stats())["prescriptions_issued"] == 0


@pytest.mark.parametrize(
    ("what", "field"),
    [("no_postcode", "patient.post_code"), ("no_items", "medicines")],
)
async def test_incomplete_prescriptions_are_refused_before_sending(
    erx: Erx, session: AsyncSession, what: str, field: str
) -> None:
    if what == "no_postcode":
        pid = await _queued(session, erx.runtime, patient_overrides={"postcode": ""})
    else:
        pid = await _queued(session, erx.runtime, items=0)
    before = await erx.stats()
    outcomes = await send_until_done(erx.runtime, pid)
    assert [o.result for o in outcomes] == ["failed"]

    prescription, statuses = await _state(erx.runtime, pid)
    assert prescription.status == "failed"
    assert field in (prescription.failure_reason or "")
    assert (prescription.failure_reason or "").startswith("not sent:")
    assert statuses == ["queued", "sending", "failed"]
    after = await erx.stats()
    # Nothing reached the platform: not even a token request.
    assert after["token_grants"] == before["token_grants"] == 0
    assert after["prescriptions_issued"] == 0


# --- retries -------------------------------------------------------------------------------------


def test_backoff_is_exponential_and_capped(erx: Erx) -> None:
    tuned = erx.runtime.settings.model_copy(
        update={"erx_send_backoff_seconds": 2.0, "erx_send_backoff_cap_seconds": 30.0}
    )
    policy = get_channel(erx.runtime, "erx").retry_policy(tuned)
    assert [policy.delay(n) for n in range(1, 8)] == [2, 4, 8, 16, 30, 30, 30]
    assert policy.delay(0) == 2.0
    assert policy.delay(3, hint=5.0) == 5.0


async def test_after_the_last_attempt_the_prescription_fails_with_the_last_reason(
    erx: Erx, session: AsyncSession
) -> None:
    erx.reconfigure(
        erx_send_max_attempts=4, erx_send_backoff_seconds=1.0, erx_send_backoff_cap_seconds=60.0
    )
    await erx.set_faults(error_rate=1.0)
    pid = await _queued(session, erx.runtime)
    retries = RecordingRetries()
    outcomes = await send_until_done(erx.runtime, pid, retries=retries)

    assert [o.result for o in outcomes] == ["retry", "retry", "retry", "failed"]
    assert [delay for _, delay in retries.delays] == [1.0, 2.0, 4.0]
    prescription, statuses = await _state(erx.runtime, pid)
    assert prescription.status == "failed"
    reason = prescription.failure_reason or ""
    assert reason.startswith("not sent after 4 attempts; last error:")
    assert "HTTP 5" in reason
    assert statuses == ["queued", "sending", "failed"]
    assert (await erx.stats())["prescriptions_issued"] == 0


async def test_ambiguous_failure_is_looked_up_instead_of_issued_again(
    erx: Erx, session: AsyncSession
) -> None:
    """The sandbox issues, then drops the connection once; the retry finds it by client_ref_id."""
    pid = await _queued(session, erx.runtime)
    # Tokens in hand first, so the one dropped request is the issue itself.
    async with erx.runtime.sessionmaker() as s:
        from rxroute.channels.erx.channel import prescriber_credentials
        from rxroute.prescriptions.repository import load_for_sending

        credentials = prescriber_credentials(erx.runtime.secret_box, await load_for_sending(s, pid))
    await erx.client.check_login(credentials)
    await erx.set_faults(drop_after_processing_rate=1.0)

    retries = RecordingRetries()
    first = await send(erx.runtime, pid, schedule_retry=retries)
    assert first.result == "retry"
    assert "no answer after sending" in first.detail
    assert (await erx.stats())["issued_by_client_ref_id"] == {str(pid): 1}
    prescription, _ = await _state(erx.runtime, pid)
    assert prescription.status == "sending"  # not shown as sent before we know

    await erx.set_faults(drop_after_processing_rate=0.0)
    second = await send(erx.runtime, pid, schedule_retry=retries)
    assert second.result == "found"
    prescription, statuses = await _state(erx.runtime, pid)
    # The sandbox signs at once: the lookup finds it signed, and both facts are recorded.
    assert prescription.status == "signed"
    assert prescription.provider_prescription_id == second.detail
    assert statuses == ["queued", "sending", "issued", "signed"]
    assert await _attempts(erx.runtime, pid) == [("issue", "ambiguous"), ("lookup", "found")]
    stats = await erx.stats()
    assert stats["issued_by_client_ref_id"] == {str(pid): 1}
    assert stats["injected_drops"] == 1


async def test_support_requeue_after_failure_looks_up_first(
    erx: Erx, session: AsyncSession
) -> None:
    """A failed prescription queued again starts a new series but still checks the platform."""
    erx.reconfigure(erx_send_max_attempts=1)
    await erx.set_faults(error_rate=1.0)
    pid = await _queued(session, erx.runtime)
    assert [o.result for o in await send_until_done(erx.runtime, pid)] == ["failed"]

    await erx.set_faults(error_rate=0.0)
    prescription = await lock_prescription(session, pid)
    delivery = await ledger.current_delivery(session, prescription)
    assert delivery is not None
    await ledger.start_series(
        session, prescription, delivery, source=Source.SUPPORT, actor=None, detail="retried"
    )
    await session.commit()
    assert [o.result for o in await send_until_done(erx.runtime, pid)] == ["issued"]
    attempts = await _attempts(erx.runtime, pid)
    assert attempts[-2:] == [("lookup", "not_found"), ("issue", "succeeded")]
    assert (await erx.stats())["issued_by_client_ref_id"] == {str(pid): 1}
