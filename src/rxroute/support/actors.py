"""Who did it, in words: the history and the ledger store an actor as an id; support reads a name.

An actor is a user id (patients, support, admins, prescribers), ``api:<client name>`` (an
integrating platform's key, see :func:`rxroute.deliveries.commands.actor_for`) or empty (the
worker, a webhook). A user is shown by what identifies them to a colleague: a staff account
by its email and role, a patient by their name, a prescriber by theirs. An id that names no
user is shown as "unknown user", never as the bare UUID.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.models import Patient, Prescriber, Role, User

API_PREFIX = "api:"


def _as_uuid(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


async def actor_labels(
    session: AsyncSession, actors: Iterable[str | uuid.UUID | None]
) -> dict[str, str]:
    """Each distinct actor (as stored, a string) -> the words to show for it."""
    raw = {str(actor) for actor in actors if actor}
    ids = {found for actor in raw if (found := _as_uuid(actor)) is not None}
    labels: dict[str, str] = {}
    if ids:
        rows = await session.execute(
            select(
                User.id,
                User.email,
                User.role,
                Patient.first_name,
                Patient.last_name,
                Prescriber.full_name,
            )
            .outerjoin(Patient, Patient.id == User.patient_id)
            .outerjoin(Prescriber, Prescriber.id == User.prescriber_id)
            .where(User.id.in_(ids))
        )
        for user_id, email, role, first, last, prescriber_name in rows:
            if role == Role.PATIENT.value and first is not None:
                label = f"{first} {last} (patient)"
            elif role == Role.PRESCRIBER.value and prescriber_name:
                label = f"{prescriber_name} (prescriber)"
            else:
                label = f"{email} ({role})"
            labels[str(user_id)] = label
    for actor in raw:
        if actor in labels:
            continue
        if actor.startswith(API_PREFIX):
            labels[actor] = f"{actor[len(API_PREFIX) :]} (API client)"
        elif _as_uuid(actor) is not None:
            labels[actor] = "unknown user"
        else:
            labels[actor] = actor
    return labels
