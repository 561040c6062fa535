"""Opting out: the link in every email, a page that asks before it acts, and no more emails."""

from __future__ import annotations

import re
import uuid
from email import message_from_bytes, policy

import httpx
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import update

from rxroute.auth.keys import link_keys
from rxroute.channels.email.links import DispenseLink, make_dispense_token
from rxroute.mailcatcher import MailCatcher
from rxroute.models import Patient
from rxroute.notifications.links import UNSUBSCRIBE_SALT, make_unsubscribe_token
from rxroute.prescriptions.lifecycle import Status
from rxroute.runtime import Runtime
from tests.factories import observe_current, queue_delivery
from tests.notifications.conftest import (
    Rx,
    jobs_waiting,
    kinds,
    make_rx,
    notifications_of,
    run_notification_jobs,
    to_patient,
)

HTML = {"Accept": "text/html"}


async def _emailed(runtime: Runtime) -> Rx:
    async with runtime.sessionmaker() as session, session.begin():
        rx = await make_rx(session, runtime)
        await queue_delivery(session, rx.prescription_id)
        await observe_current(
            session, rx.prescription_id, Status.EMAILED, ref=f"<{rx.prescription_id}@example.com>"
        )
    return rx


async def _dispensed(runtime: Runtime, rx: Rx) -> None:
    async with runtime.sessionmaker() as session, session.begin():
        await observe_current(session, rx.prescription_id, Status.DISPENSED)


async def _opted_out(runtime: Runtime, patient_id: uuid.UUID) -> bool:
    async with runtime.sessionmaker() as session:
        patient = await session.get_one(Patient, patient_id)
        return patient.notifications_opt_out


def _path(url: str) -> str:
    return url.removeprefix("http://rxroute.test")


async def test_the_emailed_link_asks_first_and_the_button_unsubscribes(
    mail: Runtime, catcher: MailCatcher, client: httpx.AsyncClient
) -> None:
    rx = await _emailed(mail)
    await run_notification_jobs(mail)
    (message,) = to_patient(catcher, rx.patient)
    parsed = message_from_bytes(message.raw, policy=policy.default)
    url = str(parsed["List-Unsubscribe"]).strip("<>")

    # Opening the link (as a mail scanner or a preview would) changes nothing.
    for _ in range(2):
        page = await client.get(_path(url), headers=HTML)
        assert page.status_code == 200
        assert page.headers["cache-control"] == "no-store"
        assert "Stop these emails" in page.text
        assert rx.patient.email not in page.text and rx.patient.last_name not in page.text
    assert not await _opted_out(mail, rx.patient.id)

    token = _path(url).rsplit("/", 1)[1]
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text)
    assert nonce and nonce.group(1) == token
    done = await client.post(_path(url), data={"nonce": nonce.group(1)})
    assert done.status_code == 303
    assert done.headers["location"] == f"/notifications/unsubscribe/{token}?done=1"
    assert await _opted_out(mail, rx.patient.id)
    after = await client.get(done.headers["location"], headers=HTML)
    assert "you will get no more emails" in after.text.lower()
    assert "Stop these emails" not in after.text

    # Opted out: the next move is recorded as skipped, with no job and no email.
    await _dispensed(mail, rx)
    assert await jobs_waiting(mail) == 0
    await run_notification_jobs(mail)
    assert kinds(to_patient(catcher, rx.patient)) == ["sent"]
    rows = await notifications_of(mail, rx.prescription_id)
    assert [(r.kind, r.state, r.skip_reason) for r in rows] == [
        ("sent", "sent", None),
        ("dispensed", "skipped", "opted_out"),
    ]

    # Posting again is harmless.
    again = await client.post(_path(url), data={"nonce": token})
    assert again.status_code == 303


async def test_a_post_without_the_pages_nonce_changes_nothing(
    mail: Runtime, client: httpx.AsyncClient
) -> None:
    rx = await _emailed(mail)
    token = make_unsubscribe_token(mail.settings, rx.patient.id)
    for data in ({}, {"nonce": "something else"}, {"List-Unsubscribe": "Yes"}):
        response = await client.post(f"/notifications/unsubscribe/{token}", data=data)
        assert response.status_code == 403, data
        assert not await _opted_out(mail, rx.patient.id)


async def test_one_click_unsubscribe_from_the_mail_provider(
    mail: Runtime, client: httpx.AsyncClient
) -> None:
    """RFC 8058: the provider POSTs ``List-Unsubscribe=One-Click`` to the header's URL."""
    rx = await _emailed(mail)
    token = make_unsubscribe_token(mail.settings, rx.patient.id)
    response = await client.post(
        f"/notifications/unsubscribe/{token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert await _opted_out(mail, rx.patient.id)


async def test_bad_and_forged_tokens_are_refused(mail: Runtime, client: httpx.AsyncClient) -> None:
    rx = await _emailed(mail)
    good = make_unsubscribe_token(mail.settings, rx.patient.id)
    other_key = URLSafeTimedSerializer("not-rxroute's-key", salt=UNSUBSCRIBE_SALT)
    keys = link_keys(mail.settings).oldest_first
    bad = {
        "tampered": good[:-2] + ("AA" if not good.endswith("AA") else "BB"),
        "truncated": good[: len(good) // 2],
        "another key": str(other_key.dumps({"pt": str(rx.patient.id)})),
        "another purpose": make_dispense_token(
            link_keys(mail.settings).current,
            DispenseLink(str(rx.prescription_id), str(uuid.uuid4()), "nonce"),
        ),
        "right key, wrong shape": str(
            URLSafeTimedSerializer(keys, salt=UNSUBSCRIBE_SALT).dumps({"pt": "not-a-uuid"})
        ),
        "nobody": make_unsubscribe_token(mail.settings, uuid.uuid4()),
        "too long": "a" * 2000,
    }
    for name, token in bad.items():
        page = await client.get(f"/notifications/unsubscribe/{token}", headers=HTML)
        assert page.status_code == 400, name
        assert "This link is not valid" in page.text
        posted = await client.post(f"/notifications/unsubscribe/{token}", data={"nonce": token})
        assert posted.status_code == 400, name
    assert not await _opted_out(mail, rx.patient.id)


async def test_an_opt_out_after_the_move_skips_the_waiting_email(
    mail: Runtime, catcher: MailCatcher, client: httpx.AsyncClient
) -> None:
    rx = await _emailed(mail)
    token = make_unsubscribe_token(mail.settings, rx.patient.id)
    response = await client.post(f"/notifications/unsubscribe/{token}", data={"nonce": token})
    assert response.status_code == 303
    await run_notification_jobs(mail)
    assert to_patient(catcher, rx.patient) == []
    ((state, reason),) = [
        (r.state, r.skip_reason) for r in await notifications_of(mail, rx.prescription_id)
    ]
    assert (state, reason) == ("skipped", "opted_out")


async def test_the_job_checks_the_opt_out_itself(mail: Runtime, catcher: MailCatcher) -> None:
    """Set behind the service's back (as a concurrent opt-out would land): still skipped."""
    rx = await _emailed(mail)
    async with mail.sessionmaker() as session, session.begin():
        await session.execute(
            update(Patient).where(Patient.id == rx.patient.id).values(notifications_opt_out=True)
        )
    await run_notification_jobs(mail)
    assert to_patient(catcher, rx.patient) == []
    (row,) = await notifications_of(mail, rx.prescription_id)
    assert (row.state, row.skip_reason) == ("skipped", "opted_out")
