"""``rxroute preflight``'s checks that ask the live platform.

rxroute's API client (a token grant), each prescriber's login and PIN, the clinic's
*internal* ID (catching the dashboard display ID) and each Region B pharmacy's contact ID
are only right if the configured platform (the sandbox in the demo) agrees, so each is
checked with a live call. The admin's per-prescriber and per-pharmacy "Check"
(:mod:`rxroute.admin.health`) reuses them.

Messages name pharmacies (not PHI) and prescribers by their rxroute id and name: never a
patient's details.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.channels.erx.base import Clinic as PlatformClinic
from rxroute.channels.erx.base import Contact, PrescriberCredentials
from rxroute.channels.erx.errors import ErxError, RejectedError
from rxroute.channels.erx.signaturerx import SignatureRxClient
from rxroute.config import Settings
from rxroute.crypto import DecryptionError, SecretBox
from rxroute.models import Clinic, Pharmacy, Prescriber
from rxroute.preflight.checks import (
    SIGNING_PIN,
    Check,
    erx_regions,
    fail,
    ok,
    platform_error,
    warn,
)


@dataclass
class CheckedPrescriber:
    """A prescriber as the live checks found them: readable credentials, a working login."""

    row: Prescriber
    credentials: PrescriberCredentials | None
    logged_in: bool = False

    @property
    def label(self) -> str:
        return f"prescriber {self.row.full_name} ({self.row.id})"


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


async def check_prescribers(
    session: AsyncSession,
    box: SecretBox,
    client: SignatureRxClient,
    checks: list[Check],
    *,
    platform_up: bool,
) -> list[CheckedPrescriber]:
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
    result: list[CheckedPrescriber] = []
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
) -> CheckedPrescriber | None:
    """One prescriber's stored login and PIN, and a live login (preflight and the admin's
    per-prescriber check). Appends its checks; None when there is nothing to log in with."""
    found = stored_credentials(box, row)
    if isinstance(found, Check):
        checks.append(found)
        return None
    credentials = found
    entry = CheckedPrescriber(row, credentials)
    name = entry.label
    if not SIGNING_PIN.match(credentials.secure_pin):
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
    pin_note = "PIN present" if SIGNING_PIN.match(credentials.secure_pin) else "PIN invalid"
    checks.append(ok(f"{name} login", f"login works; {pin_note}"))
    return entry


async def listed_clinics(
    client: SignatureRxClient, credentials: PrescriberCredentials, checks: list[Check]
) -> list[PlatformClinic] | None:
    """The prescriber's clinics on the platform, or None with a failed check saying why."""
    try:
        return await client.list_clinics(credentials)
    except ErxError as exc:
        checks.append(
            fail(
                "platform clinics",
                f"cannot list the prescriber's clinics: {platform_error(exc)}",
                "ask the platform's support which clinics this prescriber belongs to",
            )
        )
        return None


async def platform_lists(
    client: SignatureRxClient, prescriber: CheckedPrescriber, checks: list[Check]
) -> tuple[list[PlatformClinic] | None, list[Contact] | None]:
    assert prescriber.credentials is not None
    clinics = await listed_clinics(client, prescriber.credentials, checks)
    contacts: list[Contact] | None = None
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


async def check_clinic_ids(
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


async def check_pharmacies(
    session: AsyncSession,
    settings: Settings,
    contacts: list[Contact] | None,
    checks: list[Check],
) -> None:
    regions = erx_regions(settings)
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
