"""Voiding: cancel on the platform first, then record what the platform said.

The platform call happens outside any database transaction (no row lock held across the
network); the state is re-checked before and recorded after.
"""

from __future__ import annotations

import uuid

import structlog

from rxroute.channels.erx.errors import RejectedError, RejectReason, RetryableError
from rxroute.channels.registry import erx_channel
from rxroute.crypto import DecryptionError
from rxroute.models import Prescription, User
from rxroute.prescriptions import repository
from rxroute.prescriptions.errors import ChannelRefused, ChannelUnavailable, Conflict, NotFound
from rxroute.prescriptions.history import record_status
from rxroute.prescriptions.lifecycle import Source, Status, can_transition
from rxroute.prescriptions.sending import describe_rejection, prescriber_credentials
from rxroute.runtime import Runtime

log = structlog.get_logger(__name__)


async def void_prescription(
    runtime: Runtime, user: User, prescription_id: uuid.UUID
) -> Prescription:
    async with runtime.sessionmaker() as session, session.begin():
        found = await repository.get_visible(session, user, prescription_id)
        if found is None:
            raise NotFound("prescription not found")
        current = Status(found.status)
        if current is Status.DISPENSED:
            raise ChannelRefused(
                "this prescription has already been dispensed, so it cannot be voided"
            )
        if current in (Status.QUEUED, Status.SENDING):
            raise Conflict(
                "this prescription is being sent right now; wait for the send to finish, "
                "then void it"
            )
        if not can_transition(current, Status.VOIDED):
            raise Conflict(f"a {current.value} prescription cannot be voided")
        on_platform = found.channel == "erx" and found.provider_prescription_id is not None
        provider_id = found.provider_prescription_id
        credentials = None
        if on_platform:
            loaded = await repository.load_for_sending(session, prescription_id)
            try:
                credentials = prescriber_credentials(runtime.secret_box, loaded)
            except DecryptionError as exc:
                raise ChannelUnavailable(str(exc)) from exc

    raw_status: str | None = None
    if on_platform and credentials is not None and provider_id is not None:
        try:
            remote = await erx_channel(runtime).void(credentials, provider_id)
            raw_status = remote.status
        except RejectedError as exc:
            if exc.reason is RejectReason.ALREADY_DISPENSED:
                raise ChannelRefused(
                    "the pharmacy has already dispensed this prescription, so it cannot be "
                    f"voided (platform said: {exc.platform_message})"
                ) from exc
            raise ChannelRefused(f"the platform refused: {describe_rejection(exc)}") from exc
        except RetryableError as exc:
            raise ChannelUnavailable(
                f"the platform could not be reached ({exc}); nothing was changed, try again"
            ) from exc

    async with runtime.sessionmaker() as session, session.begin():
        await record_status(
            session,
            prescription_id,
            Status.VOIDED,
            source=Source.SUPPORT,
            actor=str(user.id),
            provider_status=raw_status,
            detail="voided by support",
        )
        prescription = await repository.get_visible(session, user, prescription_id)
        assert prescription is not None
    log.info("prescription_voided", prescription_id=str(prescription_id), actor=str(user.id))
    return prescription
