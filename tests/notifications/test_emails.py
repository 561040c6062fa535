"""Each status email goes out once, with its own words, through the jobs and the catcher.

Status moves are recorded the way the send job, webhooks and support record them (the
ledger and :func:`record_status`), committed, and then the real worker runs the deferred
jobs against the mail catcher.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable
from email import message_from_bytes, policy

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.deliveries import ledger
from rxroute.mailcatcher import MailCatcher
from rxroute.mailcatcher.store import StoredMessage
from rxroute.models import OutboxEvent, PatientNotification, Pharmacy, Prescription
from rxroute.notifications import service as notifications
from rxroute.notifications.tasks import send_stream
from rxroute.prescriptions.history import lock_prescription, record_status
from rxroute.prescriptions.lifecycle import Source, Status
from rxroute.prescriptions.reference import short_reference
from rxroute.runtime import Runtime
from rxroute.web.failure_text import FAILURE_HEADLINE, FAILURE_NEXT_STEP, failure_cause
from tests.factories import observe_current, queue_delivery
from tests.notifications.conftest import (
    PATIENT_STREET,
    Rx,
    body_of,
    jobs_waiting,
    kinds,
    make_rx,
    notifications_of,
    run_notification_jobs,
    to_patient,
)

Step = Callable[[AsyncSession, Rx], Awaitable[None]]
GAVE_UP = "not sent after 3 attempts; last error: SMTP server 192.0.2.1:25 timed out"


async def _queue(session: AsyncSession, rx: Rx) -> None:
    await queue_delivery(session, rx.prescription_id)


async def _sending(session: AsyncSession, rx: Rx) -> None:
    await record_status(session, rx.prescription_id, Status.SENDING, source=Source.WORKER)


async def _emailed(session: AsyncSession, rx: Rx) -> None:
    await observe_current(
        session, rx.prescription_id, Status.EMAILED, ref=f"<{rx.prescription_id}@example.com>"
    )


def _observed(status: Status) -> Step:
    async def step(session: AsyncSession, rx: Rx) -> None:
        await observe_current(
            session,
            rx.prescription_id,
            status,
            source=Source.WEBHOOK,
            ref=f"SRX{rx.prescription_id.hex[:12].upper()}",
        )

    return step


async def _fail(session: AsyncSession, rx: Rx) -> None:
    prescription = await lock_prescription(session, rx.prescription_id)
    delivery = await ledger.current_delivery(session, prescription)
    assert delivery is not None
    await ledger.fail(session, prescription, delivery, GAVE_UP)


async def _retry(session: AsyncSession, rx: Rx) -> None:
    prescription = await lock_prescription(session, rx.prescription_id)
    delivery = await ledger.current_delivery(session, prescription)
    assert delivery is not None
    await ledger.start_series(
        session, prescription, delivery, source=Source.SUPPORT, actor=None, detail="retry"
    )


async def _void_by_support(session: AsyncSession, rx: Rx) -> None:
    await record_status(
        session, rx.prescription_id, Status.VOIDED, source=Source.SUPPORT, detail="duplicate"
    )


async def _reroute(session: AsyncSession, rx: Rx) -> None:
    prescription = await lock_prescription(session, rx.prescription_id)
    pharmacy = await session.get_one(Pharmacy, rx.other_pharmacy.id)
    await ledger.open_delivery(
        session,
        prescription,
        pharmacy=pharmacy,
        region=pharmacy.region,
        channel=str(prescription.channel),
        source=Source.PATIENT,
        actor=None,
        reason="closer to home",
    )


async def _run(runtime: Runtime, rx: Rx, steps: list[Step]) -> None:
    """Each step in its own committed transaction, as the real writers do."""
    for step in steps:
        async with runtime.sessionmaker() as session, session.begin():
            await step(session, rx)


async def _setup(runtime: Runtime, region: str = "A") -> Rx:
    async with runtime.sessionmaker() as session, session.begin():
        return await make_rx(session, runtime, region=region)


def _parsed(message: StoredMessage) -> object:
    return message_from_bytes(message.raw, policy=policy.default)


def _check_common(message: StoredMessage, rx: Rx, runtime: Runtime) -> None:
    """What every patient email has: sender, greeting, number, links, and no medicine."""
    parsed = message_from_bytes(message.raw, policy=policy.default)
    body = body_of(message)
    assert message.from_header == runtime.settings.smtp_from
    assert message.to_header == rx.patient.email
    assert body.startswith(f"Hello {rx.patient.first_name},\n")
    # The reference the pharmacy sees: ours before the platform has the prescription, else its.
    quoted = re.search(r"^Reference: (\S+) \(quote it", body, re.MULTILINE)
    assert quoted is not None, body
    assert quoted.group(1) == short_reference(rx.prescription_id) or quoted.group(1).startswith(
        "SRX"
    )
    assert f"http://rxroute.test/prescriptions/{rx.prescription_id}" in body
    unsubscribe = str(parsed["List-Unsubscribe"])
    assert unsubscribe.startswith("<http://rxroute.test/notifications/unsubscribe/")
    assert unsubscribe.strip("<>") in body
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # No medicine (the factory's items are "Semaglutide ...") and nothing of the patient's
    # own address, in the subject or anywhere in the message.
    assert "semaglutide" not in message.raw.decode().lower()
    assert PATIENT_STREET not in message.raw.decode()
    assert message.html_body is None and not message.attachments


SCENARIOS: dict[str, tuple[str, list[Step], list[str]]] = {
    # Region A: queued, sending and dispensed; only "sent" and "dispensed" are emails.
    "region-a-dispensed": (
        "A",
        [_queue, _sending, _emailed, _observed(Status.DISPENSED)],
        ["sent", "dispensed"],
    ),
    # Region B: signed and printed are steps inside the pharmacy's day, not emails.
    "region-b-printed-expired": (
        "B",
        [
            _queue,
            _sending,
            _observed(Status.SIGNED),
            _observed(Status.PRINTED),
            _observed(Status.EXPIRED),
        ],
        ["sent", "expired"],
    ),
    "failed": ("A", [_queue, _sending, _fail], ["action_needed"]),
    "cancelled-by-support": (
        "A",
        [_queue, _sending, _emailed, _void_by_support],
        ["sent", "cancelled"],
    ),
    "rerouted": ("A", [_queue, _sending, _emailed, _reroute], ["sent", "rerouted"]),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_each_kind_is_emailed_once_in_order(
    mail: Runtime, catcher: MailCatcher, name: str
) -> None:
    region, steps, expected = SCENARIOS[name]
    rx = await _setup(mail, region)
    await _run(mail, rx, steps)
    await run_notification_jobs(mail)
    messages = to_patient(catcher, rx.patient)
    assert kinds(messages) == expected
    assert len(catcher.messages()) == len(expected), "an email went to someone else"
    for message in messages:
        _check_common(message, rx, mail)
    rows = await notifications_of(mail, rx.prescription_id)
    assert [(r.kind, r.state, r.attempts) for r in rows] == [(k, "sent", 1) for k in expected]
    assert all(r.sent_at is not None and r.message_id for r in rows)


async def test_sent_and_dispensed_name_the_pharmacy_and_its_address(
    mail: Runtime, catcher: MailCatcher
) -> None:
    rx = await _setup(mail)
    await _run(mail, rx, [_queue, _sending, _emailed, _observed(Status.DISPENSED)])
    await run_notification_jobs(mail)
    sent, dispensed = to_patient(catcher, rx.patient)
    assert sent.subject == "Your prescription has been sent to your pharmacy"
    assert "Riverside Pharmacy\n1 Chemist Street\nLeeds\nLS2 9ZZ\n" in body_of(sent)
    assert dispensed.subject == "Your prescription has been dispensed"
    assert "Riverside Pharmacy has dispensed your prescription" in body_of(dispensed)
    assert "1 Chemist Street" in body_of(dispensed)


async def test_action_needed_says_why_in_plain_words(mail: Runtime, catcher: MailCatcher) -> None:
    rx = await _setup(mail)
    await _run(mail, rx, [_queue, _sending, _fail])
    await run_notification_jobs(mail)
    (message,) = to_patient(catcher, rx.patient)
    body = body_of(message)
    assert message.subject == "Action needed: your prescription was not sent"
    # The page's own words, and the cause in a sentence: never support's detail.
    assert FAILURE_HEADLINE in body and FAILURE_NEXT_STEP in body
    assert failure_cause(GAVE_UP) in body
    # Retries used up: the service was down, so another pharmacy would not help.
    assert "not answering" in body and "choosing another pharmacy would not help" in body
    assert "192.0.2.1" not in body and "SMTP" not in body


async def test_rerouted_names_the_new_pharmacy(mail: Runtime, catcher: MailCatcher) -> None:
    rx = await _setup(mail)
    await _run(mail, rx, [_queue, _sending, _emailed, _reroute])
    await run_notification_jobs(mail)
    _, rerouted = to_patient(catcher, rx.patient)
    body = body_of(rerouted)
    assert rerouted.subject == "Your prescription is going to a new pharmacy"
    assert "Hilltop Pharmacy\n7 Summit Way\nYork\nYO1 7HH\n" in body
    assert "Riverside" not in body


async def test_cancelled_says_who_cancelled(mail: Runtime, catcher: MailCatcher) -> None:
    rx = await _setup(mail)
    await _run(mail, rx, [_queue, _void_by_support])
    await run_notification_jobs(mail)
    (message,) = to_patient(catcher, rx.patient)
    assert message.subject == "Your prescription has been cancelled"
    assert "Our support team cancelled your prescription" in body_of(message)
    assert "If you did not expect this" in body_of(message)


async def test_a_move_that_happens_again_does_not_email_again(
    mail: Runtime, catcher: MailCatcher
) -> None:
    """A second failed series of the same delivery is the same news: one email."""
    rx = await _setup(mail)
    await _run(mail, rx, [_queue, _sending, _fail, _retry, _sending, _fail])
    await run_notification_jobs(mail)
    assert kinds(to_patient(catcher, rx.patient)) == ["action_needed"]
    async with mail.sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).where(PatientNotification.prescription_id == rx.prescription_id)
        )
        failed_moves = await session.scalar(
            text(
                "SELECT count(*) FROM outbox_events WHERE prescription_id = :p "
                "AND type = 'prescription.failed'"
            ),
            {"p": rx.prescription_id},
        )
    assert count == 1
    assert failed_moves == 2, "the status did move twice: the index is what kept one email"


async def test_a_job_run_twice_sends_once(mail: Runtime, catcher: MailCatcher) -> None:
    rx = await _setup(mail)
    await _run(mail, rx, [_queue, _sending, _emailed])
    assert await send_stream(mail, rx.prescription_id) == 1
    assert await send_stream(mail, rx.prescription_id) == 0
    assert await send_stream(mail, uuid.uuid4()) == 0
    assert len(to_patient(catcher, rx.patient)) == 1


async def test_a_rolled_back_move_sends_nothing(mail: Runtime, catcher: MailCatcher) -> None:
    rx = await _setup(mail)
    async with mail.sessionmaker() as session, session.begin():
        await _queue(session, rx)
        await _sending(session, rx)
        await _emailed(session, rx)
        assert await jobs_waiting(mail) == 0, "the job is not visible before commit"
        await session.rollback()
    assert await notifications_of(mail, rx.prescription_id) == []
    assert await jobs_waiting(mail) == 0
    await run_notification_jobs(mail)
    assert catcher.messages() == []


async def test_the_job_is_committed_with_the_move(mail: Runtime) -> None:
    rx = await _setup(mail)
    await _run(mail, rx, [_queue, _sending, _emailed])
    (row,) = await notifications_of(mail, rx.prescription_id)
    async with mail.sessionmaker() as session:
        args = list(
            await session.scalars(
                text("SELECT args FROM procrastinate_jobs WHERE task_name = :t AND lock = :l"),
                {"t": "send_patient_notifications", "l": f"notify:{rx.prescription_id}"},
            )
        )
    assert args == [{"prescription_id": str(rx.prescription_id)}]
    assert row.state == "pending" and row.attempts == 0


async def test_emails_of_one_prescription_go_out_in_order(
    mail: Runtime, catcher: MailCatcher
) -> None:
    """Both moves are committed before any job runs, and the worker runs two at a time:
    the per-prescription stream still sends "sent" before "dispensed"."""
    rxs = [await _setup(mail) for _ in range(4)]
    for rx in rxs:
        await _run(mail, rx, [_queue, _sending, _emailed, _observed(Status.DISPENSED)])
    await run_notification_jobs(mail)
    for rx in rxs:
        assert kinds(to_patient(catcher, rx.patient)) == ["sent", "dispensed"]


async def test_turned_off_records_and_sends_nothing(mail: Runtime, catcher: MailCatcher) -> None:
    mail.settings = mail.settings.model_copy(update={"patient_notifications": False})
    rx = await _setup(mail)
    await _run(mail, rx, [_queue, _sending, _emailed, _observed(Status.DISPENSED)])
    assert await notifications_of(mail, rx.prescription_id) == []
    assert await jobs_waiting(mail) == 0


async def test_turned_off_after_the_move_skips_the_waiting_email(
    mail: Runtime, catcher: MailCatcher
) -> None:
    rx = await _setup(mail)
    await _run(mail, rx, [_queue, _sending, _emailed])
    mail.settings = mail.settings.model_copy(update={"patient_notifications": False})
    await run_notification_jobs(mail)
    (row,) = await notifications_of(mail, rx.prescription_id)
    assert (row.state, row.skip_reason) == ("skipped", "disabled")
    assert catcher.messages() == []


async def test_two_writers_of_the_same_email_at_once_record_it_once(mail: Runtime) -> None:
    """The unique index, not the prescription's row lock, is what keeps it to one: two
    transactions record the same email at the same time, and one of them gets nothing."""
    mail.settings = mail.settings.model_copy(update={"patient_notifications": False})
    rx = await _setup(mail)
    await _run(mail, rx, [_queue, _sending, _emailed])
    mail.settings = mail.settings.model_copy(update={"patient_notifications": True})
    async with mail.sessionmaker() as session:
        event_id = await session.scalar(
            select(OutboxEvent.id).where(
                OutboxEvent.prescription_id == rx.prescription_id,
                OutboxEvent.type == "prescription.sent",
            )
        )
        prescription = await session.get_one(Prescription, rx.prescription_id)
        delivery_id = prescription.current_delivery_id
    both_inserting = asyncio.Barrier(2)

    async def record() -> bool:
        async with mail.sessionmaker() as session, session.begin():
            loaded = await session.get_one(Prescription, rx.prescription_id)
            await both_inserting.wait()
            row = await notifications.status_moved(
                session, loaded, event_id=event_id, delivery_id=delivery_id, status_event_seq=None
            )
            # Hold the transaction open, so the other insert really waits on this one.
            await asyncio.sleep(0.3)
            return row is not None

    assert sorted(await asyncio.gather(record(), record())) == [False, True]
    assert len(await notifications_of(mail, rx.prescription_id)) == 1
    assert await jobs_waiting(mail) == 1


async def test_an_email_that_cannot_be_composed_fails_without_holding_up_the_next(
    mail: Runtime, catcher: MailCatcher
) -> None:
    rx = await _setup(mail)
    await _run(mail, rx, [_queue, _sending, _emailed])
    mail.settings = mail.settings.model_copy(update={"public_url": "ftp://rxroute.test"})
    await run_notification_jobs(mail)
    (row,) = await notifications_of(mail, rx.prescription_id)
    assert (row.state, row.last_error) == ("failed", "the unsubscribe URL must be an http(s) URL")
    mail.settings = mail.settings.model_copy(update={"public_url": "http://rxroute.test"})
    await _run(mail, rx, [_observed(Status.DISPENSED)])
    await run_notification_jobs(mail)
    assert kinds(to_patient(catcher, rx.patient)) == ["dispensed"]
