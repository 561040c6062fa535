"""Writing a prescription: the one way a draft comes to exist outside the seed.

Both doors use it: a prescriber's page and ``POST /api/v1/prescriptions`` from an
integrating platform. A draft has no history yet (its status is ``draft``, the start of the
lifecycle); the patient, or the platform on their behalf, sends it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from rxroute.models import Patient, Prescriber, Prescription, PrescriptionItem
from rxroute.prescriptions.errors import Conflict, InvalidChoice

#: More lines than any real prescription has; the platform's own limit is not documented.
MAX_ITEMS = 20


@dataclass(frozen=True)
class DraftItem:
    """One medicine line as written (lengths are checked by the caller's schema or form)."""

    description: str
    quantity: str
    directions: str
    dmd_vpid: str | None = None
    dmd_apid: str | None = None


async def create_draft(
    session: AsyncSession,
    *,
    patient: Patient,
    prescriber: Prescriber,
    items: Sequence[DraftItem],
    external_id: str | None = None,
    notes: str = "",
) -> Prescription:
    """A new draft for ``patient`` signed by ``prescriber``, flushed, items loaded."""
    if not prescriber.active:
        raise InvalidChoice(
            "this prescriber is deactivated and cannot write prescriptions", field="prescriber"
        )
    if not items:
        raise InvalidChoice("a prescription needs at least one item", field="items")
    if len(items) > MAX_ITEMS:
        raise InvalidChoice(f"at most {MAX_ITEMS} items per prescription", field="items")
    if external_id is not None:
        taken = await session.scalar(
            select(Prescription.id).where(Prescription.external_id == external_id)
        )
        if taken is not None:
            raise Conflict(
                f"a prescription with external_id {external_id!r} already exists ({taken})",
                field="external_id",
            )
    prescription = Prescription(
        patient_id=patient.id,
        prescriber_id=prescriber.id,
        region=patient.region or None,
        external_id=external_id,
        notes=notes,
    )
    prescription.items = [
        PrescriptionItem(
            position=position,
            description=item.description,
            quantity=item.quantity,
            directions=item.directions,
            dmd_vpid=item.dmd_vpid,
            dmd_apid=item.dmd_apid,
        )
        for position, item in enumerate(items)
    ]
    session.add(prescription)
    await session.flush()
    return (
        await session.scalars(
            select(Prescription)
            .where(Prescription.id == prescription.id)
            .options(selectinload(Prescription.items), selectinload(Prescription.pharmacy))
        )
    ).one()
