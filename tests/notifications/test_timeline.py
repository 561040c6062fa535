"""The emails in the timelines: the patient's page and API, and the support console."""

from __future__ import annotations

import re

import httpx

from rxroute.deliveries import ledger
from rxroute.mailcatcher import MailCatcher
from rxroute.models import Role
from rxroute.prescriptions.history import lock_prescription
from rxroute.prescriptions.lifecycle import Status
from rxroute.runtime import Runtime
from tests import staff_pages
from tests.factories import make_user, observe_current, queue_delivery
from tests.notifications.conftest import Rx, make_rx, run_notification_jobs
from tests.web.helpers import HTML, sign_in

SENT = "Email sent to patient: sent to pharmacy"
DISPENSED = "Email sent to patient: dispensed"


async def _dispensed_with_emails(runtime: Runtime) -> tuple[Rx, str]:
    async with runtime.sessionmaker() as session, session.begin():
        rx = await make_rx(session, runtime)
        user = await make_user(session, Role.PATIENT, patient=rx.patient)
        await queue_delivery(session, rx.prescription_id)
    async with runtime.sessionmaker() as session, session.begin():
        await observe_current(
            session, rx.prescription_id, Status.EMAILED, ref=f"<{rx.prescription_id}@example.com>"
        )
    await run_notification_jobs(runtime)
    async with runtime.sessionmaker() as session, session.begin():
        await observe_current(session, rx.prescription_id, Status.DISPENSED)
    await run_notification_jobs(runtime)
    return rx, user.email


def _labels(html: str) -> list[str]:
    timeline = html.split('id="timeline"', 1)[1].split("</ol>", 1)[0]
    return re.findall(r'<span class="tl-label">([^<]*)</span>', timeline)


async def test_the_patients_page_shows_each_email_after_its_step(
    mail: Runtime, catcher: MailCatcher, client: httpx.AsyncClient
) -> None:
    rx, email = await _dispensed_with_emails(mail)
    await sign_in(client, email)
    page = await client.get(f"/prescriptions/{rx.prescription_id}", headers=HTML)
    assert page.status_code == 200
    assert _labels(page.text) == [
        "Written by your prescriber",
        "You chose the pharmacy; waiting to send",
        "Emailed to the pharmacy",
        "We emailed you: sent to pharmacy",
        "Dispensed by the pharmacy",
        "We emailed you: dispensed",
    ]


async def test_the_api_lists_the_emails_sent(
    mail: Runtime, catcher: MailCatcher, client: httpx.AsyncClient
) -> None:
    rx, email = await _dispensed_with_emails(mail)
    await sign_in(client, email)
    response = await client.get(f"/api/v1/prescriptions/{rx.prescription_id}")
    assert response.status_code == 200
    emails = response.json()["patient_emails"]
    assert [(e["kind"], e["label"]) for e in emails] == [("sent", SENT), ("dispensed", DISPENSED)]
    assert all(e["sent_at"] and e["sent_at_display"] for e in emails)


async def test_only_sent_emails_are_shown_to_the_patient(
    mail: Runtime, catcher: MailCatcher, client: httpx.AsyncClient
) -> None:
    async with mail.sessionmaker() as session, session.begin():
        rx = await make_rx(session, mail)
        user = await make_user(session, Role.PATIENT, patient=rx.patient)
        await queue_delivery(session, rx.prescription_id)
        await observe_current(
            session, rx.prescription_id, Status.EMAILED, ref=f"<{rx.prescription_id}@example.com>"
        )
    # Not run yet: waiting, so not in the patient's timeline.
    await sign_in(client, user.email)
    page = await client.get(f"/prescriptions/{rx.prescription_id}", headers=HTML)
    assert "We emailed you" not in page.text
    assert (await client.get(f"/api/v1/prescriptions/{rx.prescription_id}")).json()[
        "patient_emails"
    ] == []


async def test_the_support_timeline_shows_sent_and_failed_emails(
    mail: Runtime, catcher: MailCatcher, client: httpx.AsyncClient
) -> None:
    rx, _ = await _dispensed_with_emails(mail)
    catcher.faults.arm("refuse_permanent", 1)
    async with mail.sessionmaker() as session, session.begin():
        support = await make_user(session, Role.SUPPORT)
        # A second prescription for the same patient, whose "action needed" email is refused.
        other = await make_rx(session, mail)
        await queue_delivery(session, other.prescription_id)
        prescription = await lock_prescription(session, other.prescription_id)
        delivery = await ledger.current_delivery(session, prescription)
        assert delivery is not None
        await ledger.fail(session, prescription, delivery, "not sent: no PIN stored")
    await run_notification_jobs(mail)
    await staff_pages.sign_in(client, support)

    page = await client.get(f"/support/prescriptions/{rx.prescription_id}", headers=HTML)
    assert page.status_code == 200
    table = page.text.split('id="timeline"', 1)[1].split("</table>", 1)[0]
    assert table.index("emailed") < table.index(SENT) < table.index(">dispensed<")
    assert table.index(">dispensed<") < table.index(DISPENSED)
    # Support sees what, when and how it went; never the email's text.
    assert "Riverside Pharmacy has dispensed" not in page.text

    failed = await client.get(f"/support/prescriptions/{other.prescription_id}", headers=HTML)
    table = failed.text.split('id="timeline"', 1)[1].split("</table>", 1)[0]
    assert "Email to patient (action_needed): failed" in table
    assert "1 attempt; last error: SMTP server" in table and "(SMTP 550 5.2.1)" in table
    assert other.patient.email not in table
