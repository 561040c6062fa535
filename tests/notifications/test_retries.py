"""A relay that is unwell: temporary refusals are retried with Region A's policy, then sent;
permanent ones and the last attempt fail the email without holding up the next one."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text

from rxroute.mailcatcher import MailCatcher
from rxroute.notifications.tasks import retry_policy, send_stream
from rxroute.prescriptions.lifecycle import Status
from rxroute.runtime import Runtime
from tests.factories import observe_current, queue_delivery
from tests.notifications.conftest import (
    BASE_DELAY,
    MAX_ATTEMPTS,
    kinds,
    make_rx,
    notifications_of,
    run_notification_jobs,
    to_patient,
)


async def _scheduled(runtime: Runtime) -> list[datetime]:
    async with runtime.sessionmaker() as session:
        rows = await session.scalars(
            text(
                "SELECT scheduled_at FROM procrastinate_jobs WHERE task_name = "
                "'send_patient_notifications' AND status = 'todo' ORDER BY id"
            )
        )
        return [row for row in rows if row is not None]


def test_the_policy_is_region_as(mail: Runtime) -> None:
    policy = retry_policy(mail)
    assert (policy.max_attempts, policy.base_seconds) == (MAX_ATTEMPTS, BASE_DELAY)


async def test_temporary_refusals_are_retried_then_sent(
    mail: Runtime, catcher: MailCatcher
) -> None:
    async with mail.sessionmaker() as session, session.begin():
        rx = await make_rx(session, mail)
        await queue_delivery(session, rx.prescription_id)
        await observe_current(
            session, rx.prescription_id, Status.EMAILED, ref=f"<{rx.prescription_id}@example.com>"
        )
    catcher.faults.arm("refuse_temporary", MAX_ATTEMPTS - 1)

    # One attempt by hand: refused, recorded, and the next one scheduled with the backoff.
    before = datetime.now(UTC)
    assert await send_stream(mail, rx.prescription_id) == 0
    (row,) = await notifications_of(mail, rx.prescription_id)
    assert (row.state, row.attempts) == ("pending", 1)
    assert row.last_error and "451" in row.last_error and "data stage" in row.last_error
    assert rx.patient.email not in row.last_error
    assert row.next_attempt_at is not None and row.next_attempt_at > before
    retries = await _scheduled(mail)
    assert retries and retries[-1] >= before
    # Not due yet: a run now does not jump the backoff.
    if row.next_attempt_at > datetime.now(UTC):
        assert await send_stream(mail, rx.prescription_id) == 0

    await run_notification_jobs(mail)
    (row,) = await notifications_of(mail, rx.prescription_id)
    assert (row.state, row.attempts) == ("sent", MAX_ATTEMPTS)
    assert row.sent_at is not None
    assert catcher.faults.fired() == {"refuse_temporary": MAX_ATTEMPTS - 1}
    assert kinds(to_patient(catcher, rx.patient)) == ["sent"]


async def test_every_attempt_refused_fails_the_email_and_the_next_still_goes(
    mail: Runtime, catcher: MailCatcher
) -> None:
    async with mail.sessionmaker() as session, session.begin():
        rx = await make_rx(session, mail)
        await queue_delivery(session, rx.prescription_id)
        await observe_current(
            session, rx.prescription_id, Status.EMAILED, ref=f"<{rx.prescription_id}@example.com>"
        )
    catcher.faults.arm("refuse_temporary", MAX_ATTEMPTS)
    await run_notification_jobs(mail)
    (row,) = await notifications_of(mail, rx.prescription_id)
    assert (row.state, row.attempts) == ("failed", MAX_ATTEMPTS)
    async with mail.sessionmaker() as session, session.begin():
        await observe_current(session, rx.prescription_id, Status.DISPENSED)
    await run_notification_jobs(mail)
    assert kinds(to_patient(catcher, rx.patient)) == ["dispensed"]


async def test_a_permanent_refusal_is_not_retried(mail: Runtime, catcher: MailCatcher) -> None:
    async with mail.sessionmaker() as session, session.begin():
        rx = await make_rx(session, mail)
        await queue_delivery(session, rx.prescription_id)
        await observe_current(
            session, rx.prescription_id, Status.EMAILED, ref=f"<{rx.prescription_id}@example.com>"
        )
        await observe_current(session, rx.prescription_id, Status.DISPENSED)
    catcher.faults.arm("refuse_permanent", 1)
    await run_notification_jobs(mail)
    sent, dispensed = await notifications_of(mail, rx.prescription_id)
    assert (sent.kind, sent.state, sent.attempts) == ("sent", "failed", 1)
    assert sent.last_error and "550" in sent.last_error
    assert (dispensed.state, dispensed.attempts) == ("sent", 1)
    assert kinds(to_patient(catcher, rx.patient)) == ["dispensed"]


async def test_an_unreachable_relay_is_retried(mail: Runtime, catcher: MailCatcher) -> None:
    """Nothing listening: the same retryable path as a 4xx, with the stage named."""
    async with mail.sessionmaker() as session, session.begin():
        rx = await make_rx(session, mail)
        await queue_delivery(session, rx.prescription_id)
        await observe_current(
            session, rx.prescription_id, Status.EMAILED, ref=f"<{rx.prescription_id}@example.com>"
        )
    port = catcher.smtp_port
    catcher.stop()
    assert await send_stream(mail, rx.prescription_id) == 0
    (row,) = await notifications_of(mail, rx.prescription_id)
    assert (row.state, row.attempts) == ("pending", 1)
    assert row.last_error == f"SMTP server 127.0.0.1:{port} refused the connection"
