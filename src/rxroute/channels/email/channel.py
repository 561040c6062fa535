"""Region A as a delivery channel: the prescription as a PDF, emailed to the pharmacy.

Delivered once the SMTP server accepts the message (its Message-ID is the delivery's
reference). The confirmation link is bound to the delivery (:class:`DispenseLink`), so it
stops working the moment the delivery is no longer live. A resend is visibly a copy with
the same reference; withdrawing sends a cancellation email. Email cannot be looked up or
polled: the channel says so (``look_up`` returns None), and the ledger plans for it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from typing import Any

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
from rxroute.channels.email import document as doc_types
from rxroute.channels.email.errors import EmailRejected, EmailRetryable
from rxroute.channels.email.links import DispenseLink, make_dispense_token
from rxroute.channels.email.message import (
    build_cancellation_email,
    build_prescription_email,
    copy_notice,
)
from rxroute.channels.email.pdf import render_prescription_pdf
from rxroute.channels.email.smtp import send_configured
from rxroute.channels.registry import EMAIL
from rxroute.config import Settings
from rxroute.models import Delivery, Pharmacy, Prescription
from rxroute.prescriptions.lifecycle import Status
from rxroute.prescriptions.reference import short_reference
from rxroute.runtime import Runtime
from rxroute.timezones import display_date, format_display


def new_link_nonce() -> str:
    return secrets.token_urlsafe(16)


def confirm_url(settings: Settings, link: DispenseLink) -> str:
    token = make_dispense_token(settings.link_secret.get_secret_value(), link)
    return f"{settings.public_url.rstrip('/')}/pharmacy/confirm/{token}"


def issue_date(settings: Settings, prescription: Prescription, now: datetime) -> date:
    """The day printed as the issue date: when it was first queued, in the display zone.

    The same on every copy and every re-route, so a pharmacy never sees one prescription
    with two issue dates.
    """
    return display_date(prescription.first_queued_at or now, settings)


def prescription_document(
    settings: Settings,
    prescription: Prescription,
    pharmacy: Pharmacy,
    url: str,
    *,
    now: datetime,
    notice: str | None = None,
) -> doc_types.PrescriptionDocument:
    patient = prescription.patient
    prescriber = prescription.prescriber
    return doc_types.PrescriptionDocument(
        prescription_id=str(prescription.id),
        reference=short_reference(prescription.id),
        issued_on=issue_date(settings, prescription, now),
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
        copy_notice=notice,
    )


@dataclass(frozen=True)
class EmailPrepared:
    message: EmailMessage


class EmailDeliveryChannel:
    name = EMAIL
    deliver_action = "email"
    delivered_status = Status.EMAILED
    polls = False

    def retry_policy(self, settings: Settings) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=settings.erx_send_max_attempts,
            base_seconds=settings.erx_send_backoff_seconds,
            cap_seconds=settings.erx_send_backoff_cap_seconds,
        )

    def pharmacy_problem(self, pharmacy: Pharmacy) -> str | None:
        if not pharmacy.email:
            return "this pharmacy has no email address yet; choose another"
        return None

    def destination(self, pharmacy: Pharmacy) -> str | None:
        return pharmacy.email

    async def prepare(
        self,
        runtime: Runtime,
        session: RowSource,
        prescription: Prescription,
        delivery: Delivery,
        purpose: Purpose,
    ) -> EmailPrepared:
        settings = runtime.settings
        pharmacy = await session.get(Pharmacy, delivery.pharmacy_id)
        assert pharmacy is not None
        if not pharmacy.email:
            raise NotSendable("not sent: the pharmacy has no email address", field="pharmacy")
        if purpose is Purpose.WITHDRAW:
            message = build_cancellation_email(
                sender=settings.smtp_from,
                to=pharmacy.email,
                pharmacy_name=pharmacy.name,
                reference=short_reference(prescription.id),
                reason=delivery.closed_reason or "cancelled by the prescriber's service",
            )
            return EmailPrepared(message)
        if purpose is Purpose.POLL:
            raise NotSendable("email deliveries cannot be polled")
        if delivery.link_nonce is None:
            delivery.link_nonce = new_link_nonce()
        now = datetime.now(UTC)
        url = confirm_url(
            settings, DispenseLink(str(prescription.id), str(delivery.id), delivery.link_nonce)
        )
        notice = (
            copy_notice(short_reference(prescription.id)) if purpose is Purpose.RESEND else None
        )
        document = prescription_document(
            settings, prescription, pharmacy, url, now=now, notice=notice
        )
        message = build_prescription_email(
            sender=settings.smtp_from,
            to=pharmacy.email,
            doc=document,
            pdf=render_prescription_pdf(document),
            confirm_url=url,
            link_expires_at=now + timedelta(hours=settings.pharmacy_link_ttl_hours),
            link_expiry_text=format_display(
                now + timedelta(hours=settings.pharmacy_link_ttl_hours), settings
            ),
        )
        return EmailPrepared(message)

    async def look_up(self, runtime: Runtime, prepared: Any) -> list[FarSideCopy] | None:
        return None

    async def _send(self, runtime: Runtime, message: EmailMessage) -> None:
        try:
            await send_configured(message, runtime.settings)
        except EmailRejected as exc:
            raise DeliveryRejected(f"the mail server refused the email: {exc}") from exc
        except EmailRetryable as exc:
            raise DeliveryRetryable(str(exc)) from exc

    async def deliver(self, runtime: Runtime, prepared: Any) -> Delivered:
        assert isinstance(prepared, EmailPrepared)
        await self._send(runtime, prepared.message)
        return Delivered(ref=str(prepared.message["Message-ID"]), raw_status="accepted")

    async def withdraw(
        self, runtime: Runtime, prepared: Any, copy: FarSideCopy | None
    ) -> Withdrawn:
        assert isinstance(prepared, EmailPrepared)
        await self._send(runtime, prepared.message)
        return Withdrawn(detail="cancellation emailed to the pharmacy")

    async def poll(self, runtime: Runtime, prepared: Any, ref: str) -> FarSideCopy:
        raise DeliveryRejected("email deliveries cannot be polled")

    async def record_rejection(
        self,
        session: AsyncSession,
        prescription: Prescription,
        delivery: Delivery,
        error: DeliveryRejected,
    ) -> None:
        """An SMTP refusal says nothing about the pharmacy's setup: nothing to record."""


def build(runtime: Runtime) -> EmailDeliveryChannel:
    return EmailDeliveryChannel()
