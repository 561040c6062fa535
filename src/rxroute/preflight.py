"""``rxroute preflight``: what must exist before the first Region B call, checked live.

The case study's "What needs to exist before the first call" lists things on both sides of
the wire. Each becomes a :class:`Check` against the configured platform (the sandbox in the
demo): rxroute's API client, each prescriber's login and PIN, the clinic's *internal* ID
(catching the dashboard display ID), each Region B pharmacy's contact ID, the webhook
settings, and the pending Region B prescriptions' patient profiles and items.

Messages name pharmacies (not PHI), prescribers by their rxroute id and name, and
prescriptions by id only: never a patient's details.
"""

from __future__ import annotations

import enum
import re
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from rxroute.channels.erx.base import Clinic as PlatformClinic
from rxroute.channels.erx.base import Contact, PrescriberCredentials
from rxroute.channels.erx.channel import build_payload
from rxroute.channels.erx.errors import (
    ErxError,
    LocalValidationError,
    RejectedError,
    RetryableError,
)
from rxroute.channels.erx.signaturerx import SignatureRxClient
from rxroute.config import PLACEHOLDER_MARKERS, Environment, Settings
from rxroute.crypto import DecryptionError, SecretBox
from rxroute.models import Clinic, Pharmacy, Prescriber, Prescription
from rxroute.prescriptions.lifecycle import Status

#: Statuses of prescriptions that will still be sent (or re-sent by support).
PENDING_STATUSES = (Status.DRAFT.value, Status.QUEUED.value, Status.FAILED.value)
#: At most this many failing prescriptions are listed one by one; the rest are counted.
MAX_LISTED_PRESCRIPTIONS = 20
_PIN = re.compile(r"^[0-9]{6}$")
#: A stand-in PIN for checking a prescription's own fields when the prescriber's PIN is
#: unreadable (the prescriber check reports that problem once).
_STAND_IN_PIN = "000000"
#: Fields the prescription checks leave to other checks (or to the patient's later choice).
_CHECKED_ELSEWHERE = {"secure_pin", "clinic_id", "prescriber_ip"}


class Outcome(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: Outcome
    message: str
    fix: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not Outcome.FAIL

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return data


def ok(name: str, message: str) -> Check:
    return Check(name, Outcome.OK, message)


def warn(name: str, message: str, fix: str | None = None) -> Check:
    return Check(name, Outcome.WARN, message, fix)


def fail(name: str, message: str, fix: str) -> Check:
    return Check(name, Outcome.FAIL, message, fix)


def passed(checks: list[Check]) -> bool:
    return all(check.ok for check in checks)


@dataclass
class _Prescriber:
    row: Prescriber
    credentials: PrescriberCredentials | None
    logged_in: bool = False

    @property
    def label(self) -> str:
        return f"prescriber {self.row.full_name} ({self.row.id})"


def _erx_regions(settings: Settings) -> list[str]:
    return sorted(r for r, channel in settings.region_channels.items() if channel == "erx")


def platform_error(exc: ErxError) -> str:
    if isinstance(exc, RejectedError):
        message = exc.platform_message or "no message"
        return f"the platform refused: {message!r}"
    return f"the platform could not be reached or answered oddly ({exc})"


async def run_preflight(
    session: AsyncSession, settings: Settings, box: SecretBox, client: SignatureRxClient
) -> list[Check]:
    """Every check, in the order a person would fix them. Never raises for a failed check."""
    checks: list[Check] = []
    platform_up = await check_client_credentials(settings, client, checks)
    prescribers = await _check_prescribers(session, box, client, checks, platform_up=platform_up)
    ready = [p for p in prescribers if p.logged_in and p.credentials is not None]
    clinics: list[PlatformClinic] | None = None
    contacts: list[Contact] | None = None
    if ready:
        clinics, contacts = await _platform_lists(client, ready[0], checks)
    await _check_clinic_ids(session, settings, clinics, checks, platform_up=platform_up)
    await _check_pharmacies(session, settings, contacts, checks)
    _check_webhook(settings, checks)
    await _check_pending(session, settings, box, checks)
    return checks


async def check_client_credentials(
    settings: Settings, client: SignatureRxClient, checks: list[Check]
) -> bool:
    name = "client credentials"
    try:
        await client.check_client_credentials()
    except RejectedError as exc:
        checks.append(
            fail(
                name,
                f"token grant for client {settings.erx_client_id!r} at "
                f"{settings.erx_base_url} refused: {exc.platform_message or 'no message'}",
                exc.hint
                or "set RXROUTE_ERX_CLIENT_ID and RXROUTE_ERX_CLIENT_SECRET to the "
                "credentials the platform issued for this environment",
            )
        )
        return False
    except ErxError as exc:
        checks.append(
            fail(
                name,
                f"cannot get a token from {settings.erx_base_url}: {exc}",
                "check RXROUTE_ERX_BASE_URL and RXROUTE_ERX_TOKEN_PATH, and that the platform "
                "(or `rxroute sandbox`) is running",
            )
        )
        return False
    checks.append(ok(name, f"token granted to client {settings.erx_client_id!r}"))
    return True


async def _check_prescribers(
    session: AsyncSession,
    box: SecretBox,
    client: SignatureRxClient,
    checks: list[Check],
    *,
    platform_up: bool,
) -> list[_Prescriber]:
    rows = list(
        await session.scalars(
            select(Prescriber).where(Prescriber.active.is_(True)).order_by(Prescriber.full_name)
        )
    )
    if not rows:
        checks.append(
            fail(
                "prescribers",
                "no active prescriber in rxroute's database",
                "add the doctor registered on the platform (`rxroute seed` in the demo)",
            )
        )
        return []
    result: list[_Prescriber] = []
    for row in rows:
        entry = await check_prescriber(row, box, client, checks, platform_up=platform_up)
        if entry is not None:
            result.append(entry)
    return result


def stored_credentials(box: SecretBox, row: Prescriber) -> PrescriberCredentials | Check:
    """The prescriber's platform login and PIN, decrypted; or the check that says why not."""
    name = f"prescriber {row.full_name} ({row.id})"
    if not row.has_platform_credentials:
        return warn(
            name,
            "no platform login or signing PIN stored: cannot send Region B prescriptions",
            "an admin must store the prescriber's platform email, password and PIN",
        )
    assert row.platform_email_encrypted is not None
    assert row.platform_password_encrypted is not None
    assert row.signing_pin_encrypted is not None
    try:
        return PrescriberCredentials(
            key=str(row.id),
            email=box.decrypt(row.platform_email_encrypted),
            password=box.decrypt(row.platform_password_encrypted),
            secure_pin=box.decrypt(row.signing_pin_encrypted),
        )
    except DecryptionError:
        return fail(
            name,
            "stored platform credentials cannot be decrypted",
            "RXROUTE_ENCRYPTION_KEYS must include the key they were stored with "
            "(keep old keys after the new one while rotating)",
        )


async def check_prescriber(
    row: Prescriber,
    box: SecretBox,
    client: SignatureRxClient,
    checks: list[Check],
    *,
    platform_up: bool,
) -> _Prescriber | None:
    """One prescriber's stored login and PIN, and a live login (preflight and the admin's
    per-prescriber check). Appends its checks; None when there is nothing to log in with."""
    found = stored_credentials(box, row)
    if isinstance(found, Check):
        checks.append(found)
        return None
    credentials = found
    entry = _Prescriber(row, credentials)
    name = entry.label
    if not _PIN.match(credentials.secure_pin):
        checks.append(
            fail(
                f"{name} PIN",
                "the stored signing PIN is not 6 digits",
                "store the prescriber's 6-digit secure PIN from the platform",
            )
        )
    if not platform_up:
        checks.append(warn(f"{name} login", "not checked: the client credentials failed above"))
        return entry
    try:
        await client.check_login(credentials)
    except ErxError as exc:
        hint = exc.hint if isinstance(exc, RejectedError) else None
        checks.append(
            fail(
                f"{name} login",
                f"login failed: {platform_error(exc)}",
                hint or "check the platform email and password stored for this prescriber",
            )
        )
        return entry
    entry.logged_in = True
    pin_note = "PIN present" if _PIN.match(credentials.secure_pin) else "PIN invalid"
    checks.append(ok(f"{name} login", f"login works; {pin_note}"))
    return entry


async def _platform_lists(
    client: SignatureRxClient, prescriber: _Prescriber, checks: list[Check]
) -> tuple[list[PlatformClinic] | None, list[Contact] | None]:
    assert prescriber.credentials is not None
    clinics: list[PlatformClinic] | None = None
    contacts: list[Contact] | None = None
    try:
        clinics = await client.list_clinics(prescriber.credentials)
    except ErxError as exc:
        checks.append(
            fail(
                "platform clinics",
                f"cannot list the prescriber's clinics: {platform_error(exc)}",
                "ask the platform's support which clinics this prescriber belongs to",
            )
        )
    try:
        contacts = await client.list_contacts(prescriber.credentials)
    except ErxError as exc:
        checks.append(
            fail(
                "platform contacts",
                f"cannot list the clinic's pharmacy contacts: {platform_error(exc)}",
                "ask the platform's support to register the pharmacies as contacts",
            )
        )
    return clinics, contacts


def clinic_check(name: str, clinic_id: int, clinics: list[PlatformClinic], variable: str) -> Check:
    internal = {c.internal_id: c for c in clinics}
    if clinic_id in internal:
        found = internal[clinic_id]
        return ok(
            name,
            f"{clinic_id} is the internal ID of {found.name or 'a clinic'} (display ID "
            f"{found.display_id}) among the prescriber's clinics",
        )
    for clinic in clinics:
        if clinic.display_id == str(clinic_id):
            return fail(
                name,
                f"{clinic_id} is the dashboard display ID of {clinic.name or 'the clinic'}, "
                f"not the internal ID the API expects; sends will fail with "
                f"'unauthorized clinic'",
                f"{clinic_id} is the dashboard display ID; set {variable}={clinic.internal_id}",
            )
    known = ", ".join(f"{c.internal_id} (display {c.display_id})" for c in clinics) or "none"
    return fail(
        name,
        f"{clinic_id} is not one of the prescriber's clinics on the platform (internal IDs: "
        f"{known})",
        f"set {variable} to the clinic's internal ID",
    )


async def _check_clinic_ids(
    session: AsyncSession,
    settings: Settings,
    clinics: list[PlatformClinic] | None,
    checks: list[Check],
    *,
    platform_up: bool,
) -> None:
    rows = list(await session.scalars(select(Clinic).order_by(Clinic.name)))
    configured = settings.erx_clinic_id
    if configured is None and not rows:
        checks.append(
            fail(
                "clinic ID",
                "RXROUTE_ERX_CLINIC_ID is not set and no clinic is stored",
                "set RXROUTE_ERX_CLINIC_ID to the clinic's internal API ID (not the "
                "dashboard display ID)",
            )
        )
        return
    targets: list[tuple[str, int, str]] = []
    if configured is not None:
        targets.append(("clinic ID (RXROUTE_ERX_CLINIC_ID)", configured, "RXROUTE_ERX_CLINIC_ID"))
    for row in rows:
        targets.append(
            (f"clinic {row.name} ({row.id})", row.api_internal_id, "its api_internal_id")
        )
    for name, clinic_id, variable in targets:
        if clinics is None:
            reason = (
                "the client credentials failed above"
                if not platform_up
                else "no prescriber could log in and list clinics"
            )
            checks.append(warn(name, f"{clinic_id} not checked: {reason}"))
            continue
        checks.append(clinic_check(name, clinic_id, clinics, variable))


async def _check_pharmacies(
    session: AsyncSession,
    settings: Settings,
    contacts: list[Contact] | None,
    checks: list[Check],
) -> None:
    regions = _erx_regions(settings)
    if not regions:
        return
    pharmacies = list(
        await session.scalars(
            select(Pharmacy)
            .where(Pharmacy.region.in_(regions), Pharmacy.active.is_(True))
            .order_by(Pharmacy.name)
        )
    )
    name = f"region {'/'.join(regions)} pharmacies"
    if not pharmacies:
        checks.append(
            fail(
                name,
                "no active accepted pharmacy: patients have nothing to choose",
                "add the pharmacies registered as contacts on the platform, with their contact IDs",
            )
        )
        return
    if contacts is None:
        checks.append(warn(name, "contact IDs not checked: the platform's contacts are unknown"))
        return
    bad = 0
    for pharmacy in pharmacies:
        found = contact_check(pharmacy, contacts)
        if not found.ok:
            bad += 1
            checks.append(found)
    if not bad:
        checks.append(
            ok(name, f"all {len(pharmacies)} active pharmacies are contacts on the platform")
        )


def contact_check(pharmacy: Pharmacy, contacts: list[Contact]) -> Check:
    """Whether the pharmacy's contact ID is one of the platform's contacts (preflight and
    the admin's per-pharmacy check)."""
    label = f"pharmacy {pharmacy.name} ({pharmacy.id})"
    if pharmacy.platform_contact_id is None:
        return fail(
            label,
            "has no platform contact ID",
            "ask the platform to register it as a contact and store the branch ID",
        )
    for contact in contacts:
        if contact.id == pharmacy.platform_contact_id:
            return ok(
                label,
                f"contact ID {contact.id} is registered on the platform"
                + (f" as {contact.name!r}" if contact.name else ""),
            )
    return fail(
        label,
        f"contact ID {pharmacy.platform_contact_id} is not among the platform's "
        f"{len(contacts)} contacts",
        "correct the stored contact ID, or deactivate the pharmacy until the platform registers it",
    )


def _check_webhook(settings: Settings, checks: list[Check]) -> None:
    url = settings.webhook_url
    if not url.startswith(("http://", "https://")):
        checks.append(fail("webhook URL", f"{url!r} is not an HTTP URL", "set RXROUTE_PUBLIC_URL"))
    elif not url.startswith("https://") and settings.environment is not Environment.DEVELOPMENT:
        checks.append(
            fail(
                "webhook URL",
                f"{url} is not HTTPS; the platform needs a public HTTPS endpoint",
                "set RXROUTE_PUBLIC_URL to rxroute's public https:// address",
            )
        )
    else:
        checks.append(ok("webhook URL", f"{url} (register it on the platform)"))
    secret = settings.webhook_secret.get_secret_value()
    if not secret.strip():
        checks.append(
            fail(
                "webhook secret",
                "empty",
                "set RXROUTE_WEBHOOK_SECRET to the secret the platform signs with",
            )
        )
    elif any(marker in secret.lower() for marker in PLACEHOLDER_MARKERS):
        checks.append(
            warn(
                "webhook secret",
                "set, but a development placeholder",
                "use the platform's webhook secret outside the demo",
            )
        )
    else:
        checks.append(ok("webhook secret", "set"))


async def _check_pending(
    session: AsyncSession, settings: Settings, box: SecretBox, checks: list[Check]
) -> None:
    regions = _erx_regions(settings)
    if not regions:
        return
    name = "pending prescriptions"
    ids = list(
        await session.scalars(
            select(Prescription.id)
            .where(
                Prescription.region.in_(regions),
                Prescription.status.in_(PENDING_STATUSES),
            )
            .order_by(Prescription.created_at, Prescription.id)
        )
    )
    if not ids:
        checks.append(ok(name, "none pending"))
        return
    problems: list[tuple[uuid.UUID, str]] = []
    for start in range(0, len(ids), 200):
        chunk = ids[start : start + 200]
        rows = await session.scalars(
            select(Prescription)
            .where(Prescription.id.in_(chunk))
            .options(
                selectinload(Prescription.items),
                selectinload(Prescription.patient),
                selectinload(Prescription.prescriber),
                selectinload(Prescription.pharmacy),
            )
        )
        for prescription in rows:
            text = await _prescription_problems(session, settings, box, prescription)
            if text:
                problems.append((prescription.id, text))
    if not problems:
        checks.append(ok(name, f"all {len(ids)} have complete patient profiles and items"))
        return
    problems.sort(key=lambda item: str(item[0]))
    for prescription_id, text in problems[:MAX_LISTED_PRESCRIPTIONS]:
        checks.append(
            fail(
                f"prescription {prescription_id}",
                text,
                "complete the patient's profile or the prescription's items before sending",
            )
        )
    if len(problems) > MAX_LISTED_PRESCRIPTIONS:
        more = len(problems) - MAX_LISTED_PRESCRIPTIONS
        checks.append(
            fail(
                name,
                f"{more} more of {len(ids)} pending prescriptions have the same kind of problem",
                "list them with `rxroute preflight --json`",
            )
        )


async def _prescription_problems(
    session: AsyncSession, settings: Settings, box: SecretBox, prescription: Prescription
) -> str | None:
    pin = _STAND_IN_PIN
    encrypted = prescription.prescriber.signing_pin_encrypted
    if encrypted:
        try:
            decrypted = box.decrypt(encrypted)
        except DecryptionError:
            decrypted = _STAND_IN_PIN
        pin = decrypted if _PIN.match(decrypted) else _STAND_IN_PIN
    try:
        await build_payload(session, settings, prescription, prescription.pharmacy, pin)
    except LocalValidationError as exc:
        fields = []
        for problem in exc.problems:
            if problem.field in _CHECKED_ELSEWHERE:
                continue
            # A draft's pharmacy is the patient's choice at send time, not a setup mistake.
            if problem.field == "contact_id" and prescription.pharmacy is None:
                continue
            fields.append(f"{problem.field} ({problem.reason})")
        if fields:
            return "missing or invalid: " + "; ".join(fields)
    except (RetryableError, RejectedError) as exc:  # pragma: no cover - build is local
        return str(exc)
    return None
