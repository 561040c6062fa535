"""Admin rules: accepted pharmacies (forms; the CSV import is :mod:`rxroute.admin.pharmacy_import`)
and prescribers.

Services add and flush; the request owns the transaction. Validation returns field-level
messages keyed by form field, so a page can show each next to its input. Prescriber
platform credentials are write-only: they are encrypted on the way in and never read back
out here (only whether each is set). Every change is recorded in the admin audit trail
(:mod:`rxroute.admin.audit`) with the acting admin, in the same transaction.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.admin import audit
from rxroute.config import Settings
from rxroute.crypto import DecryptionError, SecretBox
from rxroute.models import AuditAction, Pharmacy, Prescriber, Prescription
from rxroute.pharmacies.repository import normalise_query

# --- shared field checks ----------------------------------------------------------------

#: UK postcode: outward code (A9, A99, A9A, AA9, AA99, AA9A), then inward code (9AA).
_POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?) ?([0-9][A-Z]{2})$")
_EMAIL = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+$")
_PIN = re.compile(r"^[0-9]{6}$")
_CODE = re.compile(r"^[A-Z0-9]{3,20}$")
PASSWORD_MESSAGE = "Enter the platform password (at most 500 characters)."  # noqa: S105
MAX_INT32 = 2**31 - 1

#: The form's and the CSV file's columns (export writes them in this order).
PHARMACY_FIELDS = (
    "code",
    "name",
    "address_line1",
    "address_line2",
    "town",
    "postcode",
    "region",
    "email",
    "platform_contact_id",
    "active",
)
_LENGTHS = {
    "name": 200,
    "address_line1": 200,
    "address_line2": 200,
    "town": 100,
    "email": 320,
}
_REQUIRED = {
    "name": "Enter the pharmacy's name.",
    "address_line1": "Enter the first line of the address.",
    "town": "Enter the town.",
}


def normalise_postcode(raw: str) -> str | None:
    """``ls15ab`` -> ``LS1 5AB``; None when it is not a UK postcode."""
    compact = "".join(raw.split()).upper()
    match = _POSTCODE.match(compact)
    if match is None:
        return None
    return f"{match.group(1)} {match.group(2)}"


def valid_email(raw: str) -> bool:
    return len(raw) <= 320 and _EMAIL.match(raw) is not None


def _clean(value: object) -> str:
    """Trimmed text without control characters (a pasted tab or NUL goes no further)."""
    text = "" if value is None else str(value)
    return "".join(ch for ch in text if ch.isprintable()).strip()


_TRUE = {"1", "true", "yes", "y", "on", "active"}
_FALSE = {"0", "false", "no", "n", "off", "inactive"}


def parse_active(raw: str, *, default: bool = True) -> bool | None:
    value = raw.strip().lower()
    if not value:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return None


@dataclass
class PharmacyInput:
    """A pharmacy as typed (form or CSV row), cleaned and checked."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    active: bool = True
    platform_contact_id: int | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


def check_pharmacy(
    settings: Settings, raw: Mapping[str, object], *, active_default: bool = True
) -> PharmacyInput:
    values = {name: _clean(raw.get(name)) for name in PHARMACY_FIELDS}
    result = PharmacyInput(values=values)
    errors = result.errors
    for name, message in _REQUIRED.items():
        if not values[name]:
            errors[name] = message
    for name, limit in _LENGTHS.items():
        if len(values[name]) > limit and name not in errors:
            errors[name] = f"At most {limit} characters."
    if not values["postcode"]:
        errors["postcode"] = "Enter the postcode."
    else:
        postcode = normalise_postcode(values["postcode"])
        if postcode is None:
            errors["postcode"] = "Enter a UK postcode, like LS1 5AB."
        else:
            values["postcode"] = postcode
    region = values["region"].upper()
    values["region"] = region
    channel = settings.channel_for_region(region) if region else None
    served = ", ".join(sorted(settings.region_channels))
    if not region:
        errors["region"] = f"Choose a region ({served})."
    elif channel is None:
        errors["region"] = f"Region {region!r} is not configured; use one of {served}."
    email = values["email"]
    if email:
        if not valid_email(email):
            errors.setdefault("email", "Enter an email address like name@example.com.")
        else:
            values["email"] = email.lower()
    elif channel == "email":
        errors["email"] = f"Region {region} sends prescriptions by email: enter the email."
    contact = values["platform_contact_id"]
    if contact:
        if not contact.isdigit() or not 0 < int(contact) <= MAX_INT32:
            errors["platform_contact_id"] = "The platform contact ID is a positive whole number."
        else:
            result.platform_contact_id = int(contact)
            values["platform_contact_id"] = str(int(contact))
    elif channel == "erx":
        errors["platform_contact_id"] = (
            f"Region {region} sends through the e-prescription platform: enter the pharmacy's "
            "platform contact (branch) ID."
        )
    code = "".join(values["code"].split()).upper()
    values["code"] = code
    if code and not _CODE.match(code):
        errors["code"] = "The code is 3 to 20 letters and digits, like FA123 (or leave it empty)."
    active = parse_active(values["active"], default=active_default)
    if active is None:
        errors["active"] = "Use yes or no (or true/false, 1/0)."
    else:
        result.active = active
    return result


async def _contact_taken(
    session: AsyncSession, region: str, contact_id: int, exclude: uuid.UUID | None
) -> Pharmacy | None:
    statement = select(Pharmacy).where(
        Pharmacy.region == region, Pharmacy.platform_contact_id == contact_id
    )
    if exclude is not None:
        statement = statement.where(Pharmacy.id != exclude)
    return (await session.scalars(statement.limit(1))).first()


async def _duplicate(
    session: AsyncSession, region: str, name: str, postcode: str, exclude: uuid.UUID | None
) -> bool:
    statement = select(Pharmacy.id).where(
        Pharmacy.region == region,
        func.lower(Pharmacy.name) == name.lower(),
        Pharmacy.postcode == postcode,
    )
    if exclude is not None:
        statement = statement.where(Pharmacy.id != exclude)
    return (await session.scalar(statement.limit(1))) is not None


async def check_pharmacy_against_list(
    session: AsyncSession, checked: PharmacyInput, *, exclude: uuid.UUID | None = None
) -> None:
    """Add errors for clashes with pharmacies already in the list."""
    if not checked.ok:
        return
    values = checked.values
    if checked.platform_contact_id is not None:
        other = await _contact_taken(
            session, values["region"], checked.platform_contact_id, exclude
        )
        if other is not None:
            checked.errors["platform_contact_id"] = (
                f"Another pharmacy in region {values['region']} ({other.name}) already has "
                "this platform contact ID."
            )
    if values["code"]:
        statement = select(Pharmacy.name).where(Pharmacy.code == values["code"])
        if exclude is not None:
            statement = statement.where(Pharmacy.id != exclude)
        holder = await session.scalar(statement.limit(1))
        if holder is not None:
            checked.errors["code"] = f"Another pharmacy ({holder}) already has this code."
    if await _duplicate(session, values["region"], values["name"], values["postcode"], exclude):
        checked.errors["name"] = (
            "A pharmacy with this name and postcode is already in this region's list."
        )


def apply_input(pharmacy: Pharmacy, checked: PharmacyInput) -> None:
    """Copy a checked form or CSV row onto the pharmacy."""
    values = checked.values
    pharmacy.code = values["code"] or None
    pharmacy.name = values["name"]
    pharmacy.address_line1 = values["address_line1"]
    pharmacy.address_line2 = values["address_line2"]
    pharmacy.town = values["town"]
    pharmacy.postcode = values["postcode"]
    pharmacy.region = values["region"]
    pharmacy.email = values["email"] or None
    pharmacy.platform_contact_id = checked.platform_contact_id
    pharmacy.active = checked.active


async def save_pharmacy(
    session: AsyncSession,
    settings: Settings,
    form: Mapping[str, object],
    pharmacy: Pharmacy | None = None,
    *,
    actor_id: uuid.UUID,
) -> tuple[Pharmacy | None, PharmacyInput]:
    """Create (``pharmacy`` None) or update; returns (saved or None, the checked input).

    ``actor_id`` is the admin making the change, for the audit trail.
    """
    checked = check_pharmacy(
        settings, form, active_default=pharmacy.active if pharmacy is not None else True
    )
    await check_pharmacy_against_list(
        session, checked, exclude=pharmacy.id if pharmacy is not None else None
    )
    if not checked.ok:
        return None, checked
    before = audit.snapshot(pharmacy)
    target = pharmacy or Pharmacy()
    apply_input(target, checked)
    if pharmacy is None:
        session.add(target)
    await session.flush()
    audit.record(session, actor_id, target, before)
    await session.flush()
    return target, checked


async def set_pharmacy_active(
    session: AsyncSession,
    pharmacy: Pharmacy,
    active: bool,
    *,
    actor_id: uuid.UUID,
    reason: str = "",
) -> None:
    """Activate or deactivate; ``reason`` (optional) is kept in the audit trail."""
    before = audit.snapshot(pharmacy)
    pharmacy.active = active
    action = AuditAction.ACTIVATED if active else AuditAction.DEACTIVATED
    why = " ".join(reason.split())[:500]
    extra = (
        {"reason": {"before": None, "after": why}}
        if why and before != audit.snapshot(pharmacy)
        else None
    )
    audit.record(session, actor_id, pharmacy, before, action=action, extra=extra)
    await session.flush()


@dataclass(frozen=True)
class PharmacyPage:
    pharmacies: list[Pharmacy]
    total: int
    offset: int
    limit: int


async def list_pharmacies(
    session: AsyncSession,
    *,
    region: str = "",
    query: str = "",
    state: str = "all",
    offset: int = 0,
    limit: int = 50,
) -> PharmacyPage:
    statement = select(Pharmacy)
    if region:
        statement = statement.where(Pharmacy.region == region.upper())
    if state == "active":
        statement = statement.where(Pharmacy.active.is_(True))
    elif state == "inactive":
        statement = statement.where(Pharmacy.active.is_(False))
    elif state == "withheld":
        statement = statement.where(Pharmacy.withheld_at.is_not(None))
    elif state == "problems":
        statement = statement.where(
            or_(Pharmacy.withheld_at.is_not(None), Pharmacy.health_status == "fail")
        )
    terms = normalise_query(query)
    for word in terms.split(" ") if terms else []:
        statement = statement.where(
            or_(
                Pharmacy.search_text.contains(word, autoescape=True),
                func.lower(func.coalesce(Pharmacy.email, "")).contains(word, autoescape=True),
            )
        )
    total = await session.scalar(select(func.count()).select_from(statement.subquery())) or 0
    found = await session.scalars(
        statement.order_by(Pharmacy.region, Pharmacy.town, Pharmacy.name, Pharmacy.id)
        .offset(offset)
        .limit(limit)
    )
    return PharmacyPage(pharmacies=list(found), total=total, offset=offset, limit=limit)


# --- prescribers ------------------------------------------------------------------------

PRESCRIBER_FIELDS = ("full_name", "email", "registration_number", "active")
SECRET_FIELDS = ("platform_email", "platform_password", "signing_pin")


@dataclass
class PrescriberInput:
    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    active: bool = True

    @property
    def ok(self) -> bool:
        return not self.errors


def check_prescriber(form: Mapping[str, object]) -> PrescriberInput:
    values = {name: _clean(form.get(name)) for name in PRESCRIBER_FIELDS}
    result = PrescriberInput(values=values)
    errors = result.errors
    if not values["full_name"]:
        errors["full_name"] = "Enter the prescriber's name."
    elif len(values["full_name"]) > 200:
        errors["full_name"] = "At most 200 characters."
    if not values["email"]:
        errors["email"] = "Enter the prescriber's email address."
    elif not valid_email(values["email"]):
        errors["email"] = "Enter an email address like name@example.com."
    else:
        values["email"] = values["email"].lower()
    if not values["registration_number"]:
        errors["registration_number"] = "Enter the registration number (e.g. GMC-7999999)."
    elif len(values["registration_number"]) > 40:
        errors["registration_number"] = "At most 40 characters."
    # A checkbox: present means active. The form always sends it when ticked.
    result.active = values["active"].lower() in _TRUE
    secrets = {name: str(form.get(name) or "") for name in SECRET_FIELDS}
    platform_email = secrets["platform_email"].strip()
    if platform_email and not valid_email(platform_email):
        errors["platform_email"] = "Enter the platform login email like name@example.com."
    password = secrets["platform_password"]
    if password and (len(password) > 500 or not password.strip()):
        errors["platform_password"] = PASSWORD_MESSAGE
    pin = secrets["signing_pin"].strip()
    if pin and not _PIN.match(pin):
        errors["signing_pin"] = "The signing PIN is exactly 6 digits."
    return result


async def save_prescriber(
    session: AsyncSession,
    box: SecretBox,
    form: Mapping[str, object],
    prescriber: Prescriber | None = None,
    *,
    actor_id: uuid.UUID,
) -> tuple[Prescriber | None, PrescriberInput]:
    """Create or update. Blank secret fields keep what is stored; ``clear_credentials``
    removes all three. Secrets are encrypted here and never returned (the audit trail says
    only that they changed)."""
    checked = check_prescriber(form)
    if checked.ok:
        statement = select(Prescriber.id).where(
            func.lower(Prescriber.email) == checked.values["email"]
        )
        if prescriber is not None:
            statement = statement.where(Prescriber.id != prescriber.id)
        if await session.scalar(statement.limit(1)) is not None:
            checked.errors["email"] = "Another prescriber already has this email address."
    if not checked.ok:
        return None, checked
    before = audit.snapshot(prescriber)
    target = prescriber or Prescriber()
    target.full_name = checked.values["full_name"]
    target.email = checked.values["email"]
    target.registration_number = checked.values["registration_number"]
    target.active = checked.active
    if str(form.get("clear_credentials") or "").lower() in _TRUE:
        target.platform_email_encrypted = None
        target.platform_password_encrypted = None
        target.signing_pin_encrypted = None
        target.platform_prescriber_id = None
    platform_email = str(form.get("platform_email") or "").strip()
    password = str(form.get("platform_password") or "")
    pin = str(form.get("signing_pin") or "").strip()
    if platform_email:
        if target.platform_email_encrypted is not None:
            # A different platform login is a different platform prescriber.
            target.platform_prescriber_id = None
        target.platform_email_encrypted = box.encrypt(platform_email)
    if password:
        target.platform_password_encrypted = box.encrypt(password)
    if pin:
        target.signing_pin_encrypted = box.encrypt(pin)
    if prescriber is None:
        session.add(target)
    await session.flush()
    audit.record(session, actor_id, target, before)
    await session.flush()
    return target, checked


# --- regions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RegionRow:
    region: str
    channel: str | None
    active_pharmacies: int
    inactive_pharmacies: int
    prescriptions: dict[str, int]

    @property
    def total_prescriptions(self) -> int:
        return sum(self.prescriptions.values())


async def region_overview(session: AsyncSession, settings: Settings) -> list[RegionRow]:
    pharmacy_counts: dict[str, tuple[int, int]] = {}
    for region, active, count in await session.execute(
        select(Pharmacy.region, Pharmacy.active, func.count()).group_by(
            Pharmacy.region, Pharmacy.active
        )
    ):
        on, off = pharmacy_counts.get(region, (0, 0))
        pharmacy_counts[region] = (on + count, off) if active else (on, off + count)
    prescription_counts: dict[str, dict[str, int]] = {}
    for sent_to, status, count in await session.execute(
        select(Prescription.region, Prescription.status, func.count())
        .where(Prescription.region.is_not(None))
        .group_by(Prescription.region, Prescription.status)
    ):
        if sent_to is not None:
            prescription_counts.setdefault(sent_to, {})[status] = count
    regions = sorted(
        set(settings.region_channels) | set(pharmacy_counts) | set(prescription_counts)
    )
    return [
        RegionRow(
            region=region,
            channel=settings.channel_for_region(region),
            active_pharmacies=pharmacy_counts.get(region, (0, 0))[0],
            inactive_pharmacies=pharmacy_counts.get(region, (0, 0))[1],
            prescriptions=dict(sorted(prescription_counts.get(region, {}).items())),
        )
        for region in regions
    ]


@dataclass(frozen=True)
class PlatformLogin:
    """Which platform account a prescriber signs with: the login email, never the password."""

    prescriber: Prescriber
    #: The decrypted login email; None when none is stored.
    email: str | None
    unreadable: bool = False


async def platform_logins(session: AsyncSession, box: SecretBox) -> list[PlatformLogin]:
    """Each prescriber's configured platform login email (active ones first), so an admin
    can see which account is in use; passwords and PINs are never read."""
    found = []
    for prescriber in await session.scalars(
        select(Prescriber).order_by(Prescriber.active.desc(), Prescriber.full_name, Prescriber.id)
    ):
        encrypted = prescriber.platform_email_encrypted
        if encrypted is None:
            found.append(PlatformLogin(prescriber, None))
            continue
        try:
            found.append(PlatformLogin(prescriber, box.decrypt(encrypted)))
        except DecryptionError:
            found.append(PlatformLogin(prescriber, None, unreadable=True))
    return found
