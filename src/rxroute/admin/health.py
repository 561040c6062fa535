"""Admin: a live check of one pharmacy or prescriber, its health badge, and withholding.

An admin could store a Region B pharmacy whose contact ID the platform does not know, or a
prescriber whose platform login does not work, and nothing said so until a patient's send
failed. The "Check" button runs the preflight checks (:mod:`rxroute.preflight.live`) for that
one item and keeps the result on the row (``health_status``, ``health_checked_at``,
``health_detail``), shown as a badge.

A pharmacy whose contact the platform rejected - at a check, or when a real send was
refused for an unknown contact (:func:`rxroute.channels.erx.rejections.record_send_rejection`,
called by the send path in the transaction that records the failure) - is *withheld*: the
patients' search leaves it out (:mod:`rxroute.pharmacies.repository`) and it cannot be
chosen, until an admin clears it (:func:`clear_withheld`, audited).

Each check owns its transactions: the row is read in one, the platform is asked with no
transaction open, and the result recorded (with its audit event) in another. Details name
ids, pharmacies and prescribers only, never a patient.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.admin import audit
from rxroute.channels.erx.base import Contact, PrescriberCredentials
from rxroute.channels.erx.errors import ErxError
from rxroute.channels.erx.signaturerx import SignatureRxClient
from rxroute.channels.registry import ERX, erx_channel, get_channel
from rxroute.models import AuditAction, Pharmacy, Prescriber
from rxroute.preflight import live as preflight_live
from rxroute.preflight.checks import Check, Outcome, fail, ok, platform_error, warn
from rxroute.runtime import Runtime

#: How many prescribers' logins a pharmacy check tries for listing the platform's contacts.
MAX_LISTING_PRESCRIBERS = 3
MAX_DETAIL = 500


class NotFound(LookupError):
    """No such pharmacy or prescriber."""


@dataclass(frozen=True)
class Result:
    status: Outcome
    detail: str
    #: The check took the pharmacy out of the patients' search.
    withheld: bool = False


def summarise(checks: list[Check]) -> tuple[Outcome, str]:
    """The worst outcome, and the messages that explain it (with their fixes)."""
    if any(check.status is Outcome.FAIL for check in checks):
        worst = Outcome.FAIL
    elif any(check.status is Outcome.WARN for check in checks):
        worst = Outcome.WARN
    else:
        worst = Outcome.OK
    shown = [check for check in checks if check.status is worst]
    parts = [
        check.message + (f" (fix: {check.fix})" if check.fix and worst is not Outcome.OK else "")
        for check in shown
    ]
    return worst, "; ".join(parts)[:MAX_DETAIL] or "nothing to check"


def _now() -> datetime:
    return datetime.now(UTC)


def _health_change(before: str | None, after: str, detail: str) -> dict[str, object]:
    return {"health": {"before": before, "after": f"{after}: {detail}"[:MAX_DETAIL]}}


# --- pharmacies ------------------------------------------------------------------------


async def _contacts(
    runtime: Runtime, logins: list[PrescriberCredentials], checks: list[Check]
) -> list[Contact] | None:
    """The platform's contacts, listed with the first prescriber login that works."""
    client = erx_channel(runtime)
    if not logins:
        checks.append(
            warn(
                "platform contacts",
                "not checked: no active prescriber has a platform login stored to list the "
                "platform's contacts with",
                "store a prescriber's platform login, then check again",
            )
        )
        return None
    failures = []
    for credentials in logins[:MAX_LISTING_PRESCRIBERS]:
        try:
            return await client.list_contacts(credentials)
        except ErxError as exc:
            failures.append(platform_error(exc))
    checks.append(
        warn(
            "platform contacts",
            f"not checked: cannot list the platform's contacts ({failures[-1]})",
            "check the platform's status and the prescribers' logins, then check again",
        )
    )
    return None


async def check_pharmacy(
    runtime: Runtime, pharmacy_id: uuid.UUID, *, actor_id: uuid.UUID
) -> Result:
    """Check one pharmacy now, record the result on it (audited), and return it."""
    settings = runtime.settings
    async with runtime.sessionmaker() as session, session.begin():
        pharmacy = await session.get(Pharmacy, pharmacy_id)
        if pharmacy is None:
            raise NotFound("no such pharmacy")
        channel_name = settings.channel_for_region(pharmacy.region)
        logins: list[PrescriberCredentials] = []
        if channel_name == ERX:
            for prescriber in await session.scalars(
                select(Prescriber)
                .where(Prescriber.active.is_(True))
                .order_by(Prescriber.full_name, Prescriber.id)
            ):
                found = preflight_live.stored_credentials(runtime.secret_box, prescriber)
                if isinstance(found, PrescriberCredentials):
                    logins.append(found)
    label = f"pharmacy {pharmacy.name} ({pharmacy.id})"
    checks: list[Check] = []
    contact_rejected = False
    if channel_name is None:
        checks.append(
            fail(
                label,
                f"region {pharmacy.region} is not configured",
                "move it to a configured region",
            )
        )
    elif (problem := get_channel(runtime, channel_name).pharmacy_problem(pharmacy)) is not None:
        checks.append(fail(label, problem, "edit the pharmacy"))
    elif channel_name == ERX:
        try:
            async with asyncio.timeout(settings.platform_call_deadline_seconds):
                contacts = await _contacts(runtime, logins, checks)
        except TimeoutError:
            contacts = None
            checks.append(warn(label, "not checked: the platform did not answer in time"))
        if contacts is not None:
            found_check = preflight_live.contact_check(pharmacy, contacts)
            checks.append(found_check)
            contact_rejected = not found_check.ok
    else:
        checks.append(ok(label, f"region {pharmacy.region} sends by {channel_name}; details set"))
    status, detail = summarise(checks)
    async with runtime.sessionmaker() as session, session.begin():
        row = await session.get(Pharmacy, pharmacy_id, with_for_update=True)
        if row is None:
            raise NotFound("no such pharmacy")
        before = audit.snapshot(row)
        extra = _health_change(row.health_status, status.value, detail)
        row.health_status, row.health_detail = status.value, detail
        row.health_checked_at = _now()
        withheld = contact_rejected and row.withheld_at is None
        if withheld:
            row.withheld_at = row.health_checked_at
            extra["withheld"] = {"before": False, "after": True}
        audit.record(session, actor_id, row, before, action=AuditAction.CHECKED, extra=extra)
    return Result(status, detail, withheld)


async def clear_withheld(
    session: AsyncSession, pharmacy: Pharmacy, *, actor_id: uuid.UUID, reason: str
) -> bool:
    """Put a withheld pharmacy back in the patients' search; False if it was not withheld."""
    if pharmacy.withheld_at is None:
        return False
    before = audit.snapshot(pharmacy)
    pharmacy.withheld_at = None
    extra: dict[str, object] = {"withheld": {"before": True, "after": False}}
    if reason:
        extra["reason"] = {"before": None, "after": reason}
    audit.record(session, actor_id, pharmacy, before, action=AuditAction.CLEARED, extra=extra)
    await session.flush()
    return True


# --- prescribers -----------------------------------------------------------------------


async def _prescriber_checks(
    runtime: Runtime, row: Prescriber, client: SignatureRxClient, checks: list[Check]
) -> None:
    settings = runtime.settings
    up = await preflight_live.check_client_credentials(settings, client, checks)
    entry = await preflight_live.check_prescriber(
        row, runtime.secret_box, client, checks, platform_up=up
    )
    if entry is None or not entry.logged_in or entry.credentials is None:
        return
    if settings.erx_clinic_id is None:
        return
    clinics = await preflight_live.listed_clinics(client, entry.credentials, checks)
    if clinics is None:
        return
    checks.append(
        preflight_live.clinic_check(
            "clinic ID (RXROUTE_ERX_CLINIC_ID)",
            settings.erx_clinic_id,
            clinics,
            "RXROUTE_ERX_CLINIC_ID",
        )
    )


async def check_prescriber(
    runtime: Runtime, prescriber_id: uuid.UUID, *, actor_id: uuid.UUID
) -> Result:
    """Check one prescriber's platform account now; record the result on it (audited)."""
    settings = runtime.settings
    async with runtime.sessionmaker() as session, session.begin():
        row = await session.get(Prescriber, prescriber_id)
        if row is None:
            raise NotFound("no such prescriber")
    label = f"prescriber {row.full_name} ({row.id})"
    checks: list[Check] = []
    if not row.active:
        checks.append(warn(label, "inactive in rxroute: cannot sign", "reactivate it to use it"))
    client = erx_channel(runtime)
    if ERX not in settings.region_channels.values():
        checks.append(ok(label, "no region sends through the platform"))
    elif not isinstance(client, SignatureRxClient):
        checks.append(warn(label, "not checked: no platform client to check with"))
    else:
        try:
            async with asyncio.timeout(settings.platform_call_deadline_seconds):
                await _prescriber_checks(runtime, row, client, checks)
        except TimeoutError:
            checks.append(warn(label, "not checked: the platform did not answer in time"))
    status, detail = summarise(checks)
    async with runtime.sessionmaker() as session, session.begin():
        fresh = await session.get(Prescriber, prescriber_id, with_for_update=True)
        if fresh is None:
            raise NotFound("no such prescriber")
        before = audit.snapshot(fresh)
        extra = _health_change(fresh.health_status, status.value, detail)
        fresh.health_status, fresh.health_detail = status.value, detail
        fresh.health_checked_at = _now()
        audit.record(session, actor_id, fresh, before, action=AuditAction.CHECKED, extra=extra)
    return Result(status, detail)
