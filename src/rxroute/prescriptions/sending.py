"""Sending a queued prescription through its channel, exactly once.

The platform does not deduplicate: a second issue is a second legal prescription. So:

* The job marks the prescription ``sending`` and commits *before* calling out. A job that
  finds it already ``sending`` knows an earlier run may have reached the platform (it
  crashed, timed out, or lost the connection), and looks the prescription up by
  ``client_ref_id`` (rxroute's id) before it would issue again.
* After an *ambiguous* failure the next attempt always looks up first, too.
* Retryable failures defer a new attempt with exponential backoff in the same transaction
  that records the failed attempt; after the last attempt the prescription is ``failed``
  with the last reason. A rejection (the platform said no) fails at once, keeping the
  platform's own message: retrying would not change its mind.
* Jobs for one prescription never overlap (a procrastinate lock per prescription).

Nothing here logs PHI: ids, statuses and the platform's messages only.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.channels.erx.base import ErxChannel, PrescriberCredentials
from rxroute.channels.erx.contract import IssuePayload
from rxroute.channels.erx.errors import (
    ErxError,
    FieldProblem,
    LocalValidationError,
    RejectedError,
    RetryableError,
)
from rxroute.channels.erx.payload import MedicineItem, PatientDetails, build_issue_payload
from rxroute.config import Settings
from rxroute.crypto import DecryptionError, SecretBox
from rxroute.models import Clinic, DeliveryAttempt, Prescription, PrescriptionStatusEvent
from rxroute.prescriptions.history import lock_prescription, record_status
from rxroute.prescriptions.lifecycle import Source, Status
from rxroute.prescriptions.repository import load_for_sending
from rxroute.runtime import Runtime

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class SendOutcome:
    """What one run of the send job did; returned for tests and logs."""

    result: str  # issued, found, failed, retry, skipped
    detail: str = ""
    retry_in_seconds: float | None = None


@dataclass(frozen=True)
class PreparedSend:
    credentials: PrescriberCredentials
    payload: IssuePayload
    must_look_up_first: bool


def backoff_seconds(settings: Settings, attempt: int) -> float:
    """Exponential backoff: base * 2^(attempt-1), capped."""
    delay = settings.erx_send_backoff_seconds * (2 ** max(0, attempt - 1))
    return float(min(delay, settings.erx_send_backoff_cap_seconds))


def prescriber_credentials(box: SecretBox, prescription: Prescription) -> PrescriberCredentials:
    prescriber = prescription.prescriber
    if not prescriber.has_platform_credentials:
        raise LocalValidationError(
            [
                FieldProblem(
                    "prescriber",
                    "the prescriber has no platform login or signing PIN stored; "
                    "an admin must add them",
                )
            ]
        )
    assert prescriber.platform_email_encrypted is not None
    assert prescriber.platform_password_encrypted is not None
    assert prescriber.signing_pin_encrypted is not None
    return PrescriberCredentials(
        key=str(prescriber.id),
        email=box.decrypt(prescriber.platform_email_encrypted),
        password=box.decrypt(prescriber.platform_password_encrypted),
        secure_pin=box.decrypt(prescriber.signing_pin_encrypted),
    )


async def clinic_internal_id(
    session: AsyncSession, settings: Settings, prescription: Prescription
) -> int | None:
    """The clinic's internal API ID: the prescription's clinic, else the configured one."""
    if prescription.clinic_id is not None:
        clinic = await session.get(Clinic, prescription.clinic_id)
        if clinic is not None:
            return clinic.api_internal_id
    return settings.erx_clinic_id


async def build_payload(
    session: AsyncSession, settings: Settings, prescription: Prescription, secure_pin: str
) -> IssuePayload:
    patient = prescription.patient
    pharmacy = prescription.pharmacy
    return build_issue_payload(
        patient=PatientDetails(
            first_name=patient.first_name,
            last_name=patient.last_name,
            date_of_birth=patient.date_of_birth,
            gender=patient.gender,
            email=patient.email,
            phone=patient.phone,
            address_line1=patient.address_line1,
            address_line2=patient.address_line2,
            town=patient.town,
            postcode=patient.postcode,
            country=patient.country,
            nhs_number=patient.nhs_number,
        ),
        items=[
            MedicineItem(
                description=item.description,
                quantity=item.quantity,
                directions=item.directions,
                vpid=item.dmd_vpid,
                apid=item.dmd_apid,
            )
            for item in prescription.items
        ],
        clinic_id=await clinic_internal_id(session, settings, prescription),
        contact_id=pharmacy.platform_contact_id if pharmacy else None,
        secure_pin=secure_pin,
        client_ref_id=str(prescription.id),
        prescriber_ip=settings.erx_prescriber_ip,
        notes=prescription.notes,
    )


async def _attempts(session: AsyncSession, prescription_id: uuid.UUID) -> tuple[int, int]:
    """(attempts since the prescription was last queued, attempts ever).

    Support re-queuing a failed prescription starts a fresh series of attempts, but any
    attempt ever made means the platform may already hold it.
    """
    queued_at = await session.scalar(
        select(func.max(PrescriptionStatusEvent.recorded_at)).where(
            PrescriptionStatusEvent.prescription_id == prescription_id,
            PrescriptionStatusEvent.status == Status.QUEUED.value,
        )
    )
    base = select(func.count(func.distinct(DeliveryAttempt.attempt))).where(
        DeliveryAttempt.prescription_id == prescription_id, DeliveryAttempt.channel == "erx"
    )
    ever = await session.scalar(base) or 0
    since = ever
    if queued_at is not None:
        since = await session.scalar(base.where(DeliveryAttempt.started_at >= queued_at)) or 0
    return since, ever


def _attempt(
    prescription_id: uuid.UUID,
    action: str,
    attempt: int,
    outcome: str,
    started: datetime,
    error: str | None = None,
) -> DeliveryAttempt:
    return DeliveryAttempt(
        prescription_id=prescription_id,
        channel="erx",
        action=action,
        attempt=attempt,
        outcome=outcome,
        error=error,
        started_at=started,
    )


def describe_rejection(error: RejectedError) -> str:
    """The platform's own words, then our hint: what support and the patient page show."""
    message = error.platform_message or "the platform refused the prescription"
    hint = getattr(error, "hint", None)
    return f"{message} ({hint})" if hint else message


async def _fail(session: AsyncSession, prescription_id: uuid.UUID, reason: str) -> None:
    prescription = await lock_prescription(session, prescription_id)
    prescription.failure_reason = reason
    await record_status(
        session, prescription_id, Status.FAILED, source=Source.WORKER, detail=reason
    )


async def _record_issued(
    session: AsyncSession,
    prescription_id: uuid.UUID,
    provider_id: str,
    token: str | None,
    raw_status: str,
) -> None:
    prescription = await lock_prescription(session, prescription_id)
    prescription.provider_prescription_id = provider_id
    if token:
        prescription.provider_token = token
    prescription.failure_reason = None
    prescription.last_provider_update_at = datetime.now(UTC)
    await record_status(
        session,
        prescription_id,
        Status.ISSUED,
        source=Source.WORKER,
        provider_status=raw_status,
    )


async def send_via_erx(
    runtime: Runtime,
    channel: ErxChannel,
    prescription_id: uuid.UUID,
    *,
    schedule_retry: RetryScheduler,
) -> SendOutcome:
    settings = runtime.settings
    # --- phase 1: claim the prescription and prepare the payload (own transaction) ---------
    async with runtime.sessionmaker() as session, session.begin():
        locked = await lock_prescription(session, prescription_id)
        status = Status(locked.status)
        if status not in (Status.QUEUED, Status.SENDING):
            return SendOutcome("skipped", f"status is {status.value}")
        previous_attempts, attempts_ever = await _attempts(session, prescription_id)
        # "sending" at start means an earlier run may have reached the platform.
        must_look_up = status is Status.SENDING or attempts_ever > 0
        if status is Status.QUEUED:
            await record_status(session, prescription_id, Status.SENDING, source=Source.WORKER)
        prescription = await load_for_sending(session, prescription_id)
        try:
            credentials = prescriber_credentials(runtime.secret_box, prescription)
            payload = await build_payload(session, settings, prescription, credentials.secure_pin)
        except LocalValidationError as exc:
            reason = f"not sent: {exc}"
            session.add(
                _attempt(
                    prescription_id,
                    "issue",
                    previous_attempts + 1,
                    "rejected",
                    datetime.now(UTC),
                    reason,
                )
            )
            await _fail(session, prescription_id, reason)
            log.info(
                "erx_send_refused_locally", prescription_id=str(prescription_id), field=exc.field
            )
            return SendOutcome("failed", reason)
        except DecryptionError as exc:
            reason = f"not sent: {exc}"
            await _fail(session, prescription_id, reason)
            return SendOutcome("failed", reason)
    attempt = previous_attempts + 1
    client_ref = str(prescription_id)

    # --- phase 2: look up first if an earlier attempt may have landed ---------------------
    started = datetime.now(UTC)
    if must_look_up:
        try:
            found = await channel.find_by_client_ref(credentials, client_ref)
        except RetryableError as exc:
            return await _after_retryable(
                runtime, prescription_id, attempt, "lookup", exc, started, schedule_retry
            )
        except RejectedError as exc:
            return await _after_rejection(runtime, prescription_id, attempt, "lookup", exc, started)
        if found:
            remote = found[0]
            async with runtime.sessionmaker() as session, session.begin():
                extra = f"; {len(found)} copies exist on the platform" if len(found) > 1 else ""
                session.add(
                    _attempt(
                        prescription_id,
                        "lookup",
                        attempt,
                        "found",
                        started,
                        f"already issued as {remote.provider_id}{extra}",
                    )
                )
                await _record_issued(
                    session, prescription_id, remote.provider_id, remote.token, remote.status
                )
            if len(found) > 1:
                log.error(
                    "erx_duplicate_issue_detected", prescription_id=client_ref, copies=len(found)
                )
            log.info(
                "erx_send_found_existing",
                prescription_id=client_ref,
                provider_id=remote.provider_id,
            )
            return SendOutcome("found", remote.provider_id)
        async with runtime.sessionmaker() as session, session.begin():
            session.add(_attempt(prescription_id, "lookup", attempt, "not_found", started))

    # --- phase 3: issue ---------------------------------------------------------------------
    started = datetime.now(UTC)
    try:
        issued = await channel.issue(credentials, payload)
    except RetryableError as exc:
        return await _after_retryable(
            runtime, prescription_id, attempt, "issue", exc, started, schedule_retry
        )
    except RejectedError as exc:
        return await _after_rejection(runtime, prescription_id, attempt, "issue", exc, started)
    except ErxError as exc:
        return await _after_rejection_text(
            runtime, prescription_id, attempt, "issue", str(exc), started
        )
    async with runtime.sessionmaker() as session, session.begin():
        session.add(
            _attempt(
                prescription_id,
                "issue",
                attempt,
                "succeeded",
                started,
                f"issued as {issued.provider_id}",
            )
        )
        await _record_issued(
            session, prescription_id, issued.provider_id, issued.token, issued.status
        )
    log.info(
        "erx_issued", prescription_id=client_ref, provider_id=issued.provider_id, attempt=attempt
    )
    return SendOutcome("issued", issued.provider_id)


class RetryScheduler:
    """Defers the next attempt inside the caller's transaction (a seam for tests)."""

    async def __call__(
        self, session: AsyncSession, prescription_id: uuid.UUID, delay_seconds: float
    ) -> None:
        from rxroute.prescriptions.tasks import defer_send

        await defer_send(session, prescription_id, delay_seconds=delay_seconds)


async def _after_retryable(
    runtime: Runtime,
    prescription_id: uuid.UUID,
    attempt: int,
    action: str,
    exc: RetryableError,
    started: datetime,
    schedule_retry: RetryScheduler,
) -> SendOutcome:
    settings = runtime.settings
    outcome = "ambiguous" if exc.ambiguous else "retryable"
    reason = f"{action} failed: {exc}"
    async with runtime.sessionmaker() as session, session.begin():
        session.add(_attempt(prescription_id, action, attempt, outcome, started, reason))
        if attempt >= settings.erx_send_max_attempts:
            final = f"not sent after {attempt} attempts; last error: {exc}"
            await _fail(session, prescription_id, final)
            log.warning("erx_send_gave_up", prescription_id=str(prescription_id), attempts=attempt)
            return SendOutcome("failed", final)
        delay = exc.retry_after_seconds or backoff_seconds(settings, attempt)
        delay = min(delay, settings.erx_send_backoff_cap_seconds)
        await schedule_retry(session, prescription_id, delay)
    log.info(
        "erx_send_retry_scheduled",
        prescription_id=str(prescription_id),
        attempt=attempt,
        outcome=outcome,
        delay_seconds=delay,
    )
    return SendOutcome("retry", reason, retry_in_seconds=delay)


async def _after_rejection(
    runtime: Runtime,
    prescription_id: uuid.UUID,
    attempt: int,
    action: str,
    exc: RejectedError,
    started: datetime,
) -> SendOutcome:
    return await _after_rejection_text(
        runtime, prescription_id, attempt, action, describe_rejection(exc), started
    )


async def _after_rejection_text(
    runtime: Runtime,
    prescription_id: uuid.UUID,
    attempt: int,
    action: str,
    reason: str,
    started: datetime,
) -> SendOutcome:
    async with runtime.sessionmaker() as session, session.begin():
        session.add(_attempt(prescription_id, action, attempt, "rejected", started, reason))
        await _fail(session, prescription_id, reason)
    log.info("erx_send_rejected", prescription_id=str(prescription_id), action=action)
    return SendOutcome("failed", reason)
