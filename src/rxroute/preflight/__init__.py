"""``rxroute preflight``: what must exist before the first Region B call, checked live.

The case study's "What needs to exist before the first call" lists things on both sides of
the wire. Each becomes a :class:`Check` against the configured platform (the sandbox in the
demo): rxroute's API client, each prescriber's login and PIN, the clinic's *internal* ID
(catching the dashboard display ID), each Region B pharmacy's contact ID, the webhook
settings, and the pending Region B prescriptions' patient profiles and items.

Messages name pharmacies (not PHI), prescribers by their rxroute id and name, and
prescriptions by id only: never a patient's details.

:func:`run_preflight` runs them in the order a person would fix them: the checks that ask
the platform are in :mod:`.live`, those of rxroute's own settings and data in :mod:`.local`,
and :mod:`.checks` is the :class:`Check` they (and the admin's health checks) all return.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.channels.erx.base import Clinic as PlatformClinic
from rxroute.channels.erx.base import Contact
from rxroute.channels.erx.signaturerx import SignatureRxClient
from rxroute.config import Settings
from rxroute.crypto import SecretBox
from rxroute.preflight.checks import Check
from rxroute.preflight.live import (
    check_client_credentials,
    check_clinic_ids,
    check_pharmacies,
    check_prescribers,
    platform_lists,
)
from rxroute.preflight.local import check_pending, check_webhook


async def run_preflight(
    session: AsyncSession, settings: Settings, box: SecretBox, client: SignatureRxClient
) -> list[Check]:
    """Every check, in the order a person would fix them. Never raises for a failed check."""
    checks: list[Check] = []
    platform_up = await check_client_credentials(settings, client, checks)
    prescribers = await check_prescribers(session, box, client, checks, platform_up=platform_up)
    ready = [p for p in prescribers if p.logged_in and p.credentials is not None]
    clinics: list[PlatformClinic] | None = None
    contacts: list[Contact] | None = None
    if ready:
        clinics, contacts = await platform_lists(client, ready[0], checks)
    await check_clinic_ids(session, settings, clinics, checks, platform_up=platform_up)
    await check_pharmacies(session, settings, contacts, checks)
    check_webhook(settings, checks)
    await check_pending(session, settings, box, checks)
    return checks
