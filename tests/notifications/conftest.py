"""Patient notifications against rxroute's own mail catcher and the real job queue.

The runtime's SMTP settings point at a :class:`MailCatcher` on 127.0.0.1 (which can refuse
the next messages on demand), with a test-sized retry policy; jobs run through the real
procrastinate worker, in rounds, until none is due.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.jobs import queue
from rxroute.mailcatcher import MailCatcher
from rxroute.mailcatcher.store import StoredMessage
from rxroute.models import Patient, PatientNotification, Pharmacy
from rxroute.runtime import Runtime
from tests.factories import make_patient, make_pharmacy, make_prescriber, make_prescription
from tests.mail import catcher as catcher  # a fixture
from tests.mail import sending_to

TASK = "send_patient_notifications"
MAX_ATTEMPTS = 3
BASE_DELAY = 0.05
CAP_DELAY = 0.2
#: The patient's own address: it must never appear in an email about a pharmacy.
PATIENT_STREET = "12 Patientside Road"


@pytest.fixture
def mail(db: Runtime, catcher: MailCatcher) -> Iterator[Runtime]:
    """The runtime, sending email to the catcher with a test-sized retry policy."""
    with sending_to(
        db,
        catcher,
        smtp_from="prescriptions@rxroute.example.com",
        public_url="http://rxroute.test",
        erx_send_max_attempts=MAX_ATTEMPTS,
        erx_send_backoff_seconds=BASE_DELAY,
        erx_send_backoff_cap_seconds=CAP_DELAY,
        events_url="",
        patient_notifications=True,
    ):
        yield db


@dataclass
class Rx:
    prescription_id: uuid.UUID
    patient: Patient
    pharmacy: Pharmacy
    other_pharmacy: Pharmacy


async def make_rx(session: AsyncSession, runtime: Runtime, *, region: str = "A") -> Rx:
    """A prescription ready to be queued, for a patient whose street is PATIENT_STREET."""
    patient = await make_patient(session, region=region, address_line1=PATIENT_STREET)
    prescriber = await make_prescriber(session, runtime.secret_box)
    pharmacy = await make_pharmacy(
        session,
        region,
        name="Riverside Pharmacy",
        address_line1="1 Chemist Street",
        town="Leeds",
        postcode="LS2 9ZZ",
    )
    other = await make_pharmacy(
        session,
        region,
        name="Hilltop Pharmacy",
        address_line1="7 Summit Way",
        town="York",
        postcode="YO1 7HH",
    )
    prescription = await make_prescription(
        session,
        patient,
        prescriber,
        region=region,
        channel="email" if region == "A" else "erx",
        pharmacy_id=pharmacy.id,
    )
    return Rx(prescription.id, patient, pharmacy, other)


async def jobs_waiting(runtime: Runtime) -> int:
    async with runtime.sessionmaker() as session:
        found = await session.scalar(
            text(
                "SELECT count(*) FROM procrastinate_jobs "
                "WHERE task_name = :task AND status IN ('todo', 'doing')"
            ),
            {"task": TASK},
        )
    return int(found or 0)


async def run_notification_jobs(runtime: Runtime, *, timeout: float = 20.0) -> None:
    """Run the real worker in rounds until no notification job waits (retries included)."""
    deadline = time.monotonic() + timeout
    while await jobs_waiting(runtime):
        assert time.monotonic() < deadline, f"notification jobs still waiting after {timeout:g} s"
        await queue.run_worker_async(
            concurrency=2, wait=False, install_signal_handlers=False, listen_notify=False
        )
        await asyncio.sleep(0.02)


async def notifications_of(
    runtime: Runtime, prescription_id: uuid.UUID
) -> list[PatientNotification]:
    async with runtime.sessionmaker() as session:
        return list(
            await session.scalars(
                select(PatientNotification)
                .where(PatientNotification.prescription_id == prescription_id)
                .order_by(PatientNotification.status_event_seq)
            )
        )


def to_patient(catcher: MailCatcher, patient: Patient) -> list[StoredMessage]:
    return [m for m in catcher.messages() if m.envelope_to == (patient.email,)]


def kinds(messages: list[StoredMessage]) -> list[str]:
    from email import message_from_bytes, policy

    return [
        str(message_from_bytes(m.raw, policy=policy.default)["X-Rxroute-Notification"])
        for m in messages
    ]


def body_of(message: StoredMessage) -> str:
    """The plain-text body with the wire's CRLFs as newlines."""
    return (message.text_body or "").replace("\r\n", "\n")
