"""Fresh drafts for one named patient: the one who signs in with the email, through the one
``create_draft``, so the demo patient never runs out of prescriptions to send."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.models import Patient, Prescriber, Prescription, User
from rxroute.runtime import Runtime
from rxroute.seed import data
from rxroute.seed.service import UnknownPatient, add_patient_drafts, find_patient, seed_demo


async def _ids(session: AsyncSession, patient: Patient) -> set[object]:
    found = await session.scalars(
        select(Prescription.id).where(Prescription.patient_id == patient.id)
    )
    return set(found)


async def _drafts(session: AsyncSession, patient: Patient) -> dict[str | None, int]:
    rows = await session.execute(
        select(Prescription.region, func.count())
        .where(Prescription.patient_id == patient.id, Prescription.status == "draft")
        .group_by(Prescription.region)
    )
    return {region: count for region, count in rows.all()}


async def test_the_demo_patient_gets_drafts_in_both_regions(
    session: AsyncSession, db: Runtime
) -> None:
    await seed_demo(session, db.secret_box)
    patient = await find_patient(session, "Patient@Example.com ")
    user = await session.scalar(select(User).where(User.email == data.DEMO_PATIENT_EMAIL))
    assert user is not None and patient.id == user.patient_id
    before = await _drafts(session, patient)
    old = await _ids(session, patient)
    assert await add_patient_drafts(session, patient, 5) == 5
    after = await _drafts(session, patient)
    # Alternating, starting with the patient's own region (B): three B and two A.
    assert (after["B"] - before["B"], after["A"] - before["A"]) == (3, 2)
    new = await _ids(session, patient) - old
    written = list(await session.scalars(select(Prescription).where(Prescription.id.in_(new))))
    assert len(written) == 5
    alice = await session.scalar(
        select(Prescriber).where(Prescriber.email == data.prescribers()[0].email)
    )
    assert alice is not None
    assert {p.prescriber_id for p in written} == {alice.id}
    for prescription in written:
        await session.refresh(prescription, ["items"])
        assert 1 <= len(prescription.items) <= 2


async def test_a_deactivated_demo_prescriber_is_passed_over(
    session: AsyncSession, db: Runtime
) -> None:
    await seed_demo(session, db.secret_box)
    alice = await session.scalar(
        select(Prescriber).where(Prescriber.email == data.prescribers()[0].email)
    )
    assert alice is not None
    alice.active = False
    patient = await find_patient(session, data.DEMO_PATIENT_EMAIL)
    old = await _ids(session, patient)
    await add_patient_drafts(session, patient, 1)
    (new,) = await _ids(session, patient) - old
    written = await session.get(Prescription, new)
    assert written is not None
    assert written.prescriber_id != alice.id


async def test_unknown_email_names_the_field_and_not_the_email(
    session: AsyncSession, db: Runtime
) -> None:
    await seed_demo(session, db.secret_box)
    with pytest.raises(UnknownPatient) as raised:
        await find_patient(session, "nobody.here@example.com", field="--patient")
    assert raised.value.field == "--patient"
    assert str(raised.value).startswith("--patient: no patient has that email")
    assert "nobody.here" not in str(raised.value)


async def test_a_patient_without_a_login_is_found_by_their_record(
    session: AsyncSession, db: Runtime
) -> None:
    await seed_demo(session, db.secret_box)
    other = data.patients()[0]
    patient = await find_patient(session, other.email)
    assert patient.email == other.email
    assert await add_patient_drafts(session, patient, 2) == 2


async def test_count_is_bounded(session: AsyncSession, db: Runtime) -> None:
    await seed_demo(session, db.secret_box)
    patient = await find_patient(session, data.DEMO_PATIENT_EMAIL)
    for count in (0, data.MAX_PATIENT_DRAFTS + 1):
        with pytest.raises(ValueError, match="count"):
            await add_patient_drafts(session, patient, count)
