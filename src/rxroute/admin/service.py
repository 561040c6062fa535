"""Admin rules: accepted pharmacies (forms), the shared field checks, the regions overview.

The pharmacies' CSV import is :mod:`rxroute.admin.pharmacy_import`; prescribers are
:mod:`rxroute.admin.prescriber_service`.

Services add and flush; the request owns the transaction. Validation returns field-level
messages keyed by form field, so a page can show each next to its input. Every change is
recorded in the admin audit trail (:mod:`rxroute.admin.audit`) with the acting admin, in
the same transaction.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.admin import audit
from rxroute.channels.erx.payload import normalise_phone
from rxroute.config import Settings
from rxroute.emails import normalise_email
from rxroute.models import AuditAction, Pharmacy, Prescription
from rxroute.pharmacies.repository import normalise_query

# --- shared field checks ----------------------------------------------------------------

#: UK postcode: outward code (A9, A99, A9A, AA9, AA99, AA9A), then inward code (9AA).
_POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?) ?([0-9][A-Z]{2})$")
_CODE = re.compile(r"^[A-Z0-9]{3,20}$")
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
    "phone",
    "opening_hours",
)
#: Columns a CSV file may leave out: a stored pharmacy keeps its value for them.
OPTIONAL_FIELDS = ("code", "phone", "opening_hours")
_LENGTHS = {
    "name": 200,
    "address_line1": 200,
    "address_line2": 200,
    "town": 100,
    "email": 320,
    "phone": 40,
    "opening_hours": 300,
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
    """The one email rule (:mod:`rxroute.emails`), as a yes or no for the admin forms."""
    return normalise_email(raw) is not None


def clean_text(value: object) -> str:
    """Trimmed text without control characters (a pasted tab or NUL goes no further)."""
    text = "" if value is None else str(value)
    return "".join(ch for ch in text if ch.isprintable()).strip()


TRUE_WORDS = {"1", "true", "yes", "y", "on", "active"}
_FALSE = {"0", "false", "no", "n", "off", "inactive"}


def parse_active(raw: str, *, default: bool = True) -> bool | None:
    value = raw.strip().lower()
    if not value:
        return default
    if value in TRUE_WORDS:
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
    values = {name: clean_text(raw.get(name)) for name in PHARMACY_FIELDS}
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
    phone = values["phone"]
    if phone and normalise_phone(phone, "GB") is None and "phone" not in errors:
        errors["phone"] = "Enter a UK phone number, like 0113 496 0000 or +44 113 496 0000."
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
    pharmacy.phone = values["phone"] or None
    pharmacy.opening_hours = values["opening_hours"] or None


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
