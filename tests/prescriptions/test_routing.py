"""Which channel serves a region is configuration: a new region needs no code change."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.config import Settings
from rxroute.models import Role
from rxroute.prescriptions.errors import InvalidChoice
from rxroute.prescriptions.lifecycle import Status
from rxroute.prescriptions.service import request_send
from rxroute.runtime import Runtime
from tests.factories import (
    make_patient,
    make_pharmacy,
    make_prescriber,
    make_prescription,
    make_user,
)


async def test_a_new_region_served_by_email_routes_by_configuration_alone(
    db: Runtime, session: AsyncSession
) -> None:
    settings = Settings(
        database_url=db.settings.database_url,
        region_channels={"A": "email", "B": "erx", "C": "email"},
        _env_file=None,  # type: ignore[call-arg]
    )
    patient = await make_patient(session, region="C")
    user = await make_user(session, Role.PATIENT, patient=patient)
    prescriber = await make_prescriber(session, db.secret_box)
    prescription = await make_prescription(session, patient, prescriber)
    pharmacy = await make_pharmacy(session, region="C", platform_contact_id=None)

    sent = await request_send(
        session,
        dataclasses.replace(db, settings=settings),
        user,
        prescription.id,
        region="c",
        pharmacy_id=pharmacy.id,
    )

    assert (sent.region, sent.channel, sent.status) == ("C", "email", Status.QUEUED.value)


async def test_a_region_nobody_configured_is_refused_naming_the_field(
    db: Runtime, session: AsyncSession
) -> None:
    patient = await make_patient(session)
    user = await make_user(session, Role.PATIENT, patient=patient)
    prescriber = await make_prescriber(session, db.secret_box)
    prescription = await make_prescription(session, patient, prescriber)
    pharmacy = await make_pharmacy(session, region="C")

    with pytest.raises(InvalidChoice) as refused:
        await request_send(session, db, user, prescription.id, region="C", pharmacy_id=pharmacy.id)

    assert refused.value.field == "region"
    assert "not served" in refused.value.message
