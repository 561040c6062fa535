"""Region A: the prescription as a PDF, emailed to the pharmacy, with a confirmation link.

Status ``emailed`` once the SMTP server accepts the message. Temporary SMTP failures retry
with backoff; a permanent refusal (550 and friends) fails at once with the server's reason.
An SMTP failure after the message was handed over can, rarely, mean the pharmacy gets the
same PDF twice; the PDF carries rxroute's prescription ID, so a duplicate is recognisable,
and the confirmation link dispenses it only once.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import structlog
from sqlalchemy import func, select

from rxroute.channels.email import document as doc_types
from rxroute.channels.email.errors import EmailRejected, EmailRetryable
from rxroute.channels.email.links import make_dispense_token
from rxroute.channels.email.message import build_prescription_email
from rxroute.channels.email.pdf import render_prescription_pdf
from rxroute.channels.email.smtp import send_email
from rxroute.config import Settings
from rxroute.models import DeliveryAttempt, Prescription
from rxroute.prescriptions.history import lock_prescription, record_status
from rxroute.prescriptions.lifecycle import Source, Status, can_transition
from rxroute.prescriptions.repository import load_for_sending
from rxroute.prescriptions.sending import SendOutcome, backoff_seconds
from rxroute.runtime import Runtime

log = structlog.get_logger(__name__)


def confirm_url(runtime: Runtime, prescription_id: uuid.UUID) -> str:
    token = make_dispense_token(
        runtime.settings.session_secret.get_secret_value(), str(prescription_id)
    )
    return f"{runtime.settings.public_url.rstrip('/')}/pharmacy/confirm/{token}"


def prescription_document(prescription: Prescription, url: str) -> doc_types.PrescriptionDocument:
    patient = prescription.patient
    prescriber = prescription.prescriber
    pharmacy = prescription.pharmacy
    assert pharmacy is not None
    return doc_types.PrescriptionDocument(
        prescription_id=str(prescription.id),
        issued_on=datetime.now(UTC).date(),
        prescriber=doc_types.PrescriberDetails(
            name=prescriber.full_name,
            registration_number=prescriber.registration_number,
            email=prescriber.email,
        ),
        patient=doc_types.PatientDetails(
            full_name=patient.full_name,
            date_of_birth=patient.date_of_birth,
            address_lines=tuple(
                line for line in (patient.address_line1, patient.address_line2) if line
            ),
            town=patient.town,
            postcode=patient.postcode,
            nhs_number=patient.nhs_number,
        ),
        pharmacy=doc_types.PharmacyDetails(
            name=pharmacy.name,
            address_lines=tuple(
                line
                for line in (pharmacy.address_line1, pharmacy.address_line2, pharmacy.town)
                if line
            ),
            postcode=pharmacy.postcode,
        ),
        items=tuple(
            doc_types.PrescriptionItem(
                description=item.description,
                quantity=item.quantity,
                directions=item.directions,
                dmd_code=item.dmd_vpid or item.dmd_apid,
            )
            for item in prescription.items
        ),
        notes=prescription.notes or None,
        confirm_url=url,
    )


class NoRecipient(ValueError):
    """The pharmacy has no email address on file."""


def compose_prescription_email(
    runtime: Runtime, prescription: Prescription, now: datetime
) -> EmailMessage:
    """The email (PDF attached, fresh confirmation link) for a prescription loaded for sending."""
    settings = runtime.settings
    recipient = prescription.pharmacy.email if prescription.pharmacy else None
    if not recipient:
        raise NoRecipient("the pharmacy has no email address")
    url = confirm_url(runtime, prescription.id)
    document = prescription_document(prescription, url)
    return build_prescription_email(
        sender=settings.smtp_from,
        to=recipient,
        doc=document,
        pdf=render_prescription_pdf(document),
        confirm_url=url,
        link_expires_at=now + timedelta(hours=settings.pharmacy_link_ttl_hours),
    )


async def deliver(settings: Settings, message: EmailMessage) -> None:
    """Hand the message to the configured SMTP relay; raises the channel's typed errors."""
    await send_email(
        message,
        host=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value(),
        starttls=settings.smtp_starttls,
    )


def email_attempt(
    prescription_id: uuid.UUID,
    action: str,
    attempt: int,
    outcome: str,
    started: datetime,
    error: str | None,
) -> DeliveryAttempt:
    return DeliveryAttempt(
        prescription_id=prescription_id,
        channel="email",
        action=action,
        attempt=attempt,
        outcome=outcome,
        error=error,
        started_at=started,
    )


async def send_via_email(runtime: Runtime, prescription_id: uuid.UUID) -> SendOutcome:
    async with runtime.sessionmaker() as session, session.begin():
        locked = await lock_prescription(session, prescription_id)
        status = Status(locked.status)
        if status not in (Status.QUEUED, Status.SENDING):
            return SendOutcome("skipped", f"status is {status.value}")
        if status is Status.QUEUED:
            await record_status(session, prescription_id, Status.SENDING, source=Source.WORKER)
        attempt = 1 + (
            await session.scalar(
                select(func.count()).where(
                    DeliveryAttempt.prescription_id == prescription_id,
                    DeliveryAttempt.channel == "email",
                    DeliveryAttempt.action == "email",
                )
            )
            or 0
        )
        prescription = await load_for_sending(session, prescription_id)
        started = datetime.now(UTC)
        try:
            message = compose_prescription_email(runtime, prescription, started)
        except NoRecipient:
            message = None
    if message is None:
        return await _finish(
            runtime,
            prescription_id,
            attempt,
            started,
            "rejected",
            "not sent: the pharmacy has no email address",
        )
    try:
        await deliver(runtime.settings, message)
    except EmailRejected as exc:
        return await _finish(
            runtime,
            prescription_id,
            attempt,
            started,
            "rejected",
            f"the mail server refused the email: {exc}",
        )
    except EmailRetryable as exc:
        return await _retry_or_fail(runtime, prescription_id, attempt, started, str(exc))
    return await _finish(runtime, prescription_id, attempt, started, "succeeded", None)


async def _finish(
    runtime: Runtime,
    prescription_id: uuid.UUID,
    attempt: int,
    started: datetime,
    outcome: str,
    error: str | None,
) -> SendOutcome:
    async with runtime.sessionmaker() as session, session.begin():
        session.add(email_attempt(prescription_id, "email", attempt, outcome, started, error))
        prescription = await lock_prescription(session, prescription_id)
        if outcome == "succeeded":
            prescription.failure_reason = None
            await record_status(session, prescription_id, Status.EMAILED, source=Source.WORKER)
        elif can_transition(Status(prescription.status), Status.FAILED):
            prescription.failure_reason = error
            await record_status(
                session, prescription_id, Status.FAILED, source=Source.WORKER, detail=error
            )
    log.info("email_send_finished", prescription_id=str(prescription_id), outcome=outcome)
    return SendOutcome("emailed" if outcome == "succeeded" else "failed", error or "")


async def _retry_or_fail(
    runtime: Runtime, prescription_id: uuid.UUID, attempt: int, started: datetime, reason: str
) -> SendOutcome:
    from rxroute.prescriptions.tasks import defer_send

    settings = runtime.settings
    if attempt >= settings.erx_send_max_attempts:
        return await _finish(
            runtime,
            prescription_id,
            attempt,
            started,
            "rejected",
            f"not sent after {attempt} attempts; last error: {reason}",
        )
    delay = backoff_seconds(settings, attempt)
    async with runtime.sessionmaker() as session, session.begin():
        session.add(email_attempt(prescription_id, "email", attempt, "retryable", started, reason))
        await defer_send(session, prescription_id, delay_seconds=delay)
    return SendOutcome("retry", reason, retry_in_seconds=delay)
