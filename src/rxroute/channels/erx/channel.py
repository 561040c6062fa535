"""Region B as a delivery channel: the e-prescription platform behind the Channel interface.

The platform client (:mod:`rxroute.channels.erx.signaturerx`) speaks the wire; this module
turns its typed errors into the channel's (retryable, ambiguous, rejected), bounds every
call by one total deadline (so a worker cut off from the database cannot still be issuing
when its job is retried as stalled), and maps platform copies to :class:`FarSideCopy`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.channels.base import (
    Delivered,
    DeliveryRejected,
    DeliveryRetryable,
    FarSideCopy,
    NotSendable,
    Purpose,
    RetryPolicy,
    RowSource,
    Withdrawn,
)
from rxroute.channels.erx.base import ErxChannel, PrescriberCredentials, RemotePrescription
from rxroute.channels.erx.contract import IssuePayload
from rxroute.channels.erx.errors import (
    ErxError,
    FieldProblem,
    LocalValidationError,
    RejectedError,
    RejectReason,
    RetryableError,
)
from rxroute.channels.erx.payload import MedicineItem, PatientDetails, build_issue_payload
from rxroute.channels.erx.rejections import record_send_rejection
from rxroute.channels.erx.status import UnknownProviderStatus, from_provider
from rxroute.channels.registry import ERX, erx_channel
from rxroute.config import Settings
from rxroute.crypto import DecryptionError, SecretBox
from rxroute.models import Clinic, Delivery, Pharmacy, Prescription
from rxroute.prescriptions.lifecycle import Status
from rxroute.runtime import Runtime

T = TypeVar("T")


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
    session: RowSource, settings: Settings, prescription: Prescription
) -> int | None:
    """The clinic's internal API ID: the prescription's clinic, else the configured one."""
    if prescription.clinic_id is not None:
        clinic = await session.get(Clinic, prescription.clinic_id)
        if clinic is not None:
            return clinic.api_internal_id
    return settings.erx_clinic_id


async def build_payload(
    session: RowSource,
    settings: Settings,
    prescription: Prescription,
    pharmacy: Pharmacy | None,
    secure_pin: str,
) -> IssuePayload:
    patient = prescription.patient
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


def describe_rejection(error: RejectedError) -> str:
    """The platform's own words, then our hint: what support and the patient page show."""
    message = error.platform_message or "the platform refused the prescription"
    hint = getattr(error, "hint", None)
    return f"{message} ({hint})" if hint else message


@dataclass(frozen=True)
class ErxPrepared:
    credentials: PrescriberCredentials
    client_ref_id: str
    payload: IssuePayload | None = None


def copy_of(remote: RemotePrescription) -> FarSideCopy:
    try:
        status = Status(from_provider(remote.status))
    except UnknownProviderStatus as exc:
        raise DeliveryRetryable(str(exc)) from exc
    return FarSideCopy(
        ref=remote.provider_id,
        status=status,
        raw_status=remote.status,
        destination=remote.contact_id,
        token=remote.token,
    )


class ErxDeliveryChannel:
    name = ERX
    deliver_action = "issue"
    delivered_status = Status.ISSUED
    polls = True

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    @property
    def client(self) -> ErxChannel:
        return erx_channel(self._runtime)

    def retry_policy(self, settings: Settings) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=settings.erx_send_max_attempts,
            base_seconds=settings.erx_send_backoff_seconds,
            cap_seconds=settings.erx_send_backoff_cap_seconds,
        )

    def pharmacy_problem(self, pharmacy: Pharmacy) -> str | None:
        if pharmacy.platform_contact_id is None:
            return (
                "this pharmacy has no e-prescription contact ID yet; choose another "
                "or ask an admin to add it"
            )
        if pharmacy.withheld_at is not None:
            return "the platform does not accept this pharmacy's contact ID; choose another"
        return None

    def destination(self, pharmacy: Pharmacy) -> str | None:
        contact = pharmacy.platform_contact_id
        return None if contact is None else str(contact)

    async def prepare(
        self,
        runtime: Runtime,
        session: RowSource,
        prescription: Prescription,
        delivery: Delivery,
        purpose: Purpose,
    ) -> ErxPrepared:
        try:
            credentials = prescriber_credentials(runtime.secret_box, prescription)
        except LocalValidationError as exc:
            raise NotSendable(f"not sent: {exc}", field=exc.field) from exc
        except DecryptionError as exc:
            raise NotSendable(f"not sent: {exc}", field="prescriber") from exc
        payload = None
        if purpose is Purpose.DELIVER:
            pharmacy = await session.get(Pharmacy, delivery.pharmacy_id)
            assert pharmacy is not None
            try:
                payload = await build_payload(
                    session, runtime.settings, prescription, pharmacy, credentials.secure_pin
                )
            except LocalValidationError as exc:
                raise NotSendable(f"not sent: {exc}", field=exc.field) from exc
        return ErxPrepared(credentials, str(prescription.id), payload)

    async def _bounded(self, call: Awaitable[T], operation: str) -> T:
        """The whole platform call, token refreshes and retries included, within the deadline."""
        deadline = self._runtime.settings.platform_call_deadline_seconds
        try:
            async with asyncio.timeout(deadline):
                return await call
        except TimeoutError as exc:
            raise DeliveryRetryable(
                f"{operation}: no answer from the platform within {deadline:g} s",
                ambiguous=True,
            ) from exc
        except RejectedError as exc:
            final = Status.DISPENSED if exc.reason is RejectReason.ALREADY_DISPENSED else None
            raise DeliveryRejected(describe_rejection(exc), final_status=final) from exc
        except RetryableError as exc:
            raise DeliveryRetryable(
                f"{operation} failed: {exc}",
                ambiguous=exc.ambiguous,
                retry_after=exc.retry_after_seconds,
            ) from exc
        except ErxError as exc:
            raise DeliveryRejected(str(exc)) from exc

    async def look_up(self, runtime: Runtime, prepared: Any) -> list[FarSideCopy] | None:
        assert isinstance(prepared, ErxPrepared)
        found = await self._bounded(
            self.client.find_by_client_ref(prepared.credentials, prepared.client_ref_id), "lookup"
        )
        return [copy_of(remote) for remote in found]

    async def deliver(self, runtime: Runtime, prepared: Any) -> Delivered:
        assert isinstance(prepared, ErxPrepared) and prepared.payload is not None
        issued = await self._bounded(
            self.client.issue(prepared.credentials, prepared.payload), "issue"
        )
        return Delivered(ref=issued.provider_id, raw_status=issued.status, token=issued.token)

    async def withdraw(
        self, runtime: Runtime, prepared: Any, copy: FarSideCopy | None
    ) -> Withdrawn:
        assert isinstance(prepared, ErxPrepared)
        if copy is None:
            return Withdrawn(detail="nothing on the platform to void")
        remote = await self._bounded(self.client.void(prepared.credentials, copy.ref), "void")
        return Withdrawn(raw_status=remote.status, detail=f"voided {copy.ref} on the platform")

    async def poll(self, runtime: Runtime, prepared: Any, ref: str) -> FarSideCopy:
        assert isinstance(prepared, ErxPrepared)
        remote = await self._bounded(self.client.get(prepared.credentials, ref), "get")
        return copy_of(remote)

    async def record_rejection(
        self,
        session: AsyncSession,
        prescription: Prescription,
        delivery: Delivery,
        error: DeliveryRejected,
    ) -> None:
        await record_send_rejection(session, prescription, delivery, error)


def build(runtime: Runtime) -> ErxDeliveryChannel:
    return ErxDeliveryChannel(runtime)
