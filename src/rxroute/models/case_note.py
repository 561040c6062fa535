from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Identity, Index, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from rxroute.db.base import Base, IdMixin


class CaseNote(IdMixin, Base):
    """A support agent's note on a prescription's case: who wrote it, when, and what.

    Append-only, like the status history: a database trigger (migration 0016) refuses UPDATE
    and DELETE, so a note cannot be reworded after the fact; a correction is a new note.
    ``body`` is free text that may name the patient or their medicines: it is PHI, shown on
    the case page only and never logged (log lines carry the note's id).
    """

    __tablename__ = "case_notes"
    __table_args__ = (Index("ix_case_notes_prescription_seq", "prescription_id", "seq"),)

    #: The order notes were written in (ids are random).
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)
    prescription_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("prescriptions.id"))
    author_user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
