"""``rxroute preflight``'s checks that need no platform call: rxroute's own settings and data.

The webhook settings the platform must be given, and the pending Region B prescriptions:
each is built into the payload it would be sent as, so a patient profile or an item the
platform would refuse is found now, naming the field, instead of at send time.

Prescriptions are named by id only: never a patient's details.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from rxroute.channels.erx.channel import build_payload
from rxroute.channels.erx.errors import LocalValidationError, RejectedError, RetryableError
from rxroute.config import Environment, Settings
from rxroute.config_secrets import is_placeholder
from rxroute.crypto import DecryptionError, SecretBox
from rxroute.models import Prescription
from rxroute.preflight.checks import SIGNING_PIN, Check, erx_regions, fail, ok, warn
from rxroute.prescriptions.lifecycle import Status

#: Statuses of prescriptions that will still be sent (or re-sent by support).
PENDING_STATUSES = (Status.DRAFT.value, Status.QUEUED.value, Status.FAILED.value)
#: At most this many failing prescriptions are listed one by one; the rest are counted.
MAX_LISTED_PRESCRIPTIONS = 20
#: A stand-in PIN for checking a prescription's own fields when the prescriber's PIN is
#: unreadable (the prescriber check reports that problem once).
_STAND_IN_PIN = "000000"
#: Fields the prescription checks leave to other checks (or to the patient's later choice).
_CHECKED_ELSEWHERE = {"secure_pin", "clinic_id", "prescriber_ip"}


def check_webhook(settings: Settings, checks: list[Check]) -> None:
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
    elif is_placeholder(secret):
        checks.append(
            warn(
                "webhook secret",
                "set, but a development placeholder or a value rxroute publishes",
                "use the platform's webhook secret outside the demo",
            )
        )
    else:
        checks.append(ok("webhook secret", "set"))


async def check_pending(
    session: AsyncSession, settings: Settings, box: SecretBox, checks: list[Check]
) -> None:
    regions = erx_regions(settings)
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
        pin = decrypted if SIGNING_PIN.match(decrypted) else _STAND_IN_PIN
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
