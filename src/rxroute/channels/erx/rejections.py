"""Region B's answer to a refused send: a refusal that says the setup is wrong marks it.

When the platform refuses a send because it does not know the pharmacy's contact, the
pharmacy is marked failed and withheld from the patients' search until an admin clears it
(:mod:`rxroute.admin.health`); when it refuses the prescriber's account (inactive, login,
PIN), the prescriber's health badge says so. The send path reaches this through the
channel (:meth:`rxroute.channels.base.Channel.record_rejection`), so the core knows nothing of
the platform's reasons; kept apart from the admin's live checks, which it does not need.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.channels.base import DeliveryRejected
from rxroute.channels.erx.errors import RejectedError, RejectReason
from rxroute.models import Delivery, Pharmacy, Prescriber, Prescription

MAX_DETAIL = 500
FAILED = "fail"
#: Platform refusals of a send that say the prescriber's account is what needs fixing.
PRESCRIBER_REASONS = {
    RejectReason.INACTIVE_PRESCRIBER: "the platform says this prescriber's account is inactive",
    RejectReason.INVALID_PRESCRIBER_CREDENTIALS: "the platform refused the stored login",
    RejectReason.INVALID_SECURE_PIN: "the platform refused the stored signing PIN",
}


async def record_send_rejection(
    session: AsyncSession, prescription: Prescription, delivery: Delivery, error: BaseException
) -> None:
    """Called by the send path, in the transaction that records a rejected send.

    When the platform refused the send for the pharmacy's contact, the pharmacy is marked
    failed and withheld from the patients' search; when it refused the prescriber's account
    (inactive, login, PIN), the prescriber's badge says so. Typed by the platform client's
    :class:`RejectReason` (the channel's rejection keeps it as its cause): no message is
    parsed. Anything else changes nothing.
    """
    cause = error.__cause__ if isinstance(error, DeliveryRejected) else error
    if not isinstance(cause, RejectedError):
        return
    now = datetime.now(UTC)
    if cause.reason is RejectReason.UNKNOWN_CONTACT:
        pharmacy = await session.get(Pharmacy, delivery.pharmacy_id, with_for_update=True)
        if pharmacy is None:
            return
        pharmacy.health_status = FAILED
        pharmacy.health_checked_at = now
        pharmacy.health_detail = (
            f"a send was refused: the platform does not know contact ID "
            f"{pharmacy.platform_contact_id} (delivery {delivery.id})"
        )[:MAX_DETAIL]
        if pharmacy.withheld_at is None:
            pharmacy.withheld_at = now
    elif cause.reason in PRESCRIBER_REASONS:
        prescriber = await session.get(Prescriber, prescription.prescriber_id, with_for_update=True)
        if prescriber is None:
            return
        prescriber.health_status = FAILED
        prescriber.health_checked_at = now
        prescriber.health_detail = (
            f"a send was refused: {PRESCRIBER_REASONS[cause.reason]} (delivery {delivery.id})"
        )[:MAX_DETAIL]
