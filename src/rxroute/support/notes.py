"""Support's case notes: what an agent learned or promised, kept with the prescription.

A note is added, never edited or deleted (the table refuses both, migration 0016): a
correction is a later note. Its body is free text that may name the patient or a medicine,
so it is PHI: shown on the case page only, never logged (a log line carries the ids), never
put in an error message. Services add and flush; the request commits.
"""

from __future__ import annotations

import uuid

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.models import CaseNote, Prescription, User
from rxroute.prescriptions.errors import InvalidChoice, NotFound

log = structlog.get_logger(__name__)

MAX_NOTE = 4000


def clean_body(raw: str) -> str:
    """The note as it will be kept: trimmed, control characters other than newlines removed.

    Raises :class:`InvalidChoice` (field ``body``) when nothing is left or it is too long.
    """
    lines = ["".join(ch for ch in line if ch.isprintable()).rstrip() for line in raw.splitlines()]
    body = "\n".join(lines).strip()
    if not body:
        raise InvalidChoice("body: write the note", field="body")
    if len(body) > MAX_NOTE:
        raise InvalidChoice(f"body: at most {MAX_NOTE} characters", field="body")
    return body


async def add_note(
    session: AsyncSession, author: User, prescription_id: uuid.UUID, raw: str
) -> CaseNote:
    if await session.get(Prescription, prescription_id) is None:
        raise NotFound("prescription not found")
    note = CaseNote(prescription_id=prescription_id, author_user_id=author.id, body=clean_body(raw))
    session.add(note)
    await session.flush()
    log.info(
        "case_note_added",
        note_id=str(note.id),
        prescription_id=str(prescription_id),
        actor=str(author.id),
    )
    return note


async def notes_of(session: AsyncSession, prescription_id: uuid.UUID) -> list[CaseNote]:
    """Oldest first, in the order they were written."""
    return list(
        await session.scalars(
            select(CaseNote)
            .where(CaseNote.prescription_id == prescription_id)
            .order_by(CaseNote.seq)
        )
    )
