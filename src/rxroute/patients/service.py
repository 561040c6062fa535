"""Upserting a patient by the platform's ID. Adds and flushes; the request owns the transaction.

The patient keeps their rxroute id across updates, so their prescriptions (which point at
it) are untouched: a prescription keeps the region it was written or sent with, and a draft
is sent with the details current when it is sent. Concurrent first PUTs of one external id
cannot make two patients: the insert is ``ON CONFLICT DO NOTHING`` on the unique index,
and the loser updates the winner's row.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.config import Settings
from rxroute.models import Patient
from rxroute.patients.schemas import PatientIn

log = structlog.get_logger(__name__)

MAX_EXTERNAL_ID = 200


class PatientError(ValueError):
    """A refused patient, naming the field (never its value)."""

    def __init__(self, message: str, *, field: str, status_code: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status_code = status_code


@dataclass(frozen=True)
class Upserted:
    patient: Patient
    created: bool


def check_external_id(raw: str) -> str:
    """The platform's id as given: 1 to 200 printable characters (ids are not trimmed)."""
    if not 1 <= len(raw) <= MAX_EXTERNAL_ID or not raw.isprintable() or raw != raw.strip():
        raise PatientError(
            f"external_id: 1 to {MAX_EXTERNAL_ID} printable characters, without leading or "
            "trailing spaces",
            field="external_id",
        )
    return raw


def check_region(settings: Settings, region: str) -> str:
    if settings.channel_for_region(region) is None:
        served = ", ".join(sorted(settings.region_channels))
        raise PatientError(
            f"region: not a region rxroute serves; use one of {served}", field="region"
        )
    return region


async def upsert_patient(
    session: AsyncSession, settings: Settings, external_id: str, body: PatientIn
) -> Upserted:
    """Create the patient with this external id, or replace their details."""
    check_external_id(external_id)
    values = body.columns()
    if "region" in values:
        check_region(settings, values["region"])
    created_id = await session.scalar(
        insert(Patient)
        .values(
            id=uuid.uuid4(),
            external_id=external_id,
            **{"region": "", "nhs_number": None, **values},
        )
        .on_conflict_do_nothing(
            index_elements=[Patient.external_id],
            index_where=Patient.external_id.is_not(None),
        )
        .returning(Patient.id)
    )
    if created_id is not None:
        patient = await _load(session, external_id)
        log.info("patient_created", patient_id=str(patient.id))
        return Upserted(patient, created=True)
    patient = await _load(session, external_id, for_update=True)
    _apply(patient, values)
    await session.flush()
    await session.refresh(patient)
    log.info("patient_updated", patient_id=str(patient.id))
    return Upserted(patient, created=False)


def _apply(patient: Patient, values: dict[str, Any]) -> None:
    for column, value in values.items():
        setattr(patient, column, value)


async def _load(session: AsyncSession, external_id: str, *, for_update: bool = False) -> Patient:
    statement = select(Patient).where(Patient.external_id == external_id)
    if for_update:
        statement = statement.with_for_update()
    found = await session.scalars(statement.execution_options(populate_existing=True))
    return found.one()
