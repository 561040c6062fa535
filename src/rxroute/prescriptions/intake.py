"""Prescriptions written on an integrating platform: who they are for and by, then a draft.

Resolves the patient by the platform's id and the prescriber by rxroute's or the platform's
id, then writes the draft through :func:`rxroute.prescriptions.writing.create_draft`, the one
way a draft comes to exist. Adds and flushes; the request owns the transaction.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.models import Patient, Prescriber, Prescription
from rxroute.prescriptions.errors import Conflict, InvalidChoice
from rxroute.prescriptions.schemas import PrescriptionCreate
from rxroute.prescriptions.writing import DraftItem, create_draft


async def _prescriber(session: AsyncSession, body: PrescriptionCreate) -> Prescriber:
    if (body.prescriber_id is None) == (body.prescriber_external_id is None):
        raise InvalidChoice(
            "prescriber_id: give exactly one of prescriber_id and prescriber_external_id",
            field="prescriber_id",
        )
    if body.prescriber_id is not None:
        found = await session.get(Prescriber, body.prescriber_id)
        field = "prescriber_id"
    else:
        found = await session.scalar(
            select(Prescriber).where(Prescriber.external_id == body.prescriber_external_id)
        )
        field = "prescriber_external_id"
    if found is None:
        raise InvalidChoice(
            f"{field}: no such prescriber (GET /api/v1/prescribers lists them)", field=field
        )
    return found


async def create_from_platform(session: AsyncSession, body: PrescriptionCreate) -> Prescription:
    """A draft for the platform's patient; 422 naming the field that names nobody."""
    patient = await session.scalar(
        select(Patient).where(Patient.external_id == body.patient_external_id)
    )
    if patient is None:
        raise InvalidChoice(
            "patient_external_id: no such patient; create them first with "
            "PUT /api/v1/patients/{external_id}",
            field="patient_external_id",
        )
    prescriber = await _prescriber(session, body)
    items = [
        DraftItem(
            description=item.description,
            quantity=item.quantity,
            directions=item.directions,
            dmd_vpid=item.dmd_vpid,
            dmd_apid=item.dmd_apid,
        )
        for item in body.items
    ]
    try:
        return await create_draft(
            session,
            patient=patient,
            prescriber=prescriber,
            items=items,
            external_id=body.external_id,
        )
    except IntegrityError as exc:
        # Another request took the same external_id between create_draft's check and its
        # insert: the same answer the check gives.
        constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", None)
        if constraint != "uq_prescriptions_external_id":
            raise
        raise Conflict(
            "external_id: a prescription with this external_id already exists",
            field="external_id",
        ) from exc
