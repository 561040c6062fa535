"""Admin rules for prescribers: their details and write-only platform credentials, and
which platform login each one uses.

Services add and flush; the request owns the transaction. Platform credentials are
encrypted on the way in and never read back out to a form (only whether each is set); the
regions page shows the login *email* in use (:func:`platform_logins`), never the password or
PIN. Every change is recorded in the admin audit trail in the same transaction.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.admin import audit
from rxroute.admin.service import TRUE_WORDS, clean_text, valid_email
from rxroute.crypto import DecryptionError, SecretBox
from rxroute.models import Prescriber

_PIN = re.compile(r"^[0-9]{6}$")
PASSWORD_MESSAGE = "Enter the platform password (at most 500 characters)."  # noqa: S105


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
    values = {name: clean_text(form.get(name)) for name in PRESCRIBER_FIELDS}
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
    result.active = values["active"].lower() in TRUE_WORDS
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
    if str(form.get("clear_credentials") or "").lower() in TRUE_WORDS:
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
