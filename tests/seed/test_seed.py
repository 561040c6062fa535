"""The deterministic synthetic demo data, as values and as written to the database."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.auth.passwords import verify_password
from rxroute.crypto import SecretBox
from rxroute.db import migrate
from rxroute.db.engine import create_engine, create_sessionmaker
from rxroute.models import (
    Clinic,
    Patient,
    Pharmacy,
    Prescriber,
    Prescription,
    PrescriptionItem,
    Role,
    User,
)
from rxroute.runtime import Runtime
from rxroute.seed import data
from rxroute.seed.service import add_prescriptions, is_seeded, seed_demo
from tests.conftest import create_test_database, drop_test_database

# --- plain values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: data.pharmacies("A"),
        lambda: data.pharmacies("B"),
        data.region_b_pharmacies,
        data.prescribers,
        data.demo_patient,
        data.patients,
    ],
    ids=["pharmacies-A", "pharmacies-B", "region-b", "prescribers", "demo-patient", "patients"],
)
def test_data_is_deterministic(make: Callable[[], Any]) -> None:
    assert make() == make()


@pytest.mark.parametrize("region", ["A", "B"])
def test_at_least_30_pharmacies_per_region(region: str) -> None:
    pharmacies = data.pharmacies(region)
    assert len(pharmacies) >= 30
    assert all(p.region == region for p in pharmacies)
    # Names repeat (same chain, town and street); name and postcode tell them apart.
    assert len({(p.name, p.postcode) for p in pharmacies}) == len(pharmacies)
    assert len({p.email for p in pharmacies}) == len(pharmacies)
    if region == "B":
        ids = [p.contact_id for p in pharmacies]
        assert all(isinstance(i, int) for i in ids)
        assert len(set(ids)) == len(ids)
    else:
        assert all(p.contact_id is None for p in pharmacies)


def test_regions_differ() -> None:
    assert {p.town for p in data.pharmacies("A")}.isdisjoint({p.town for p in data.pharmacies("B")})


def _all_emails() -> list[str]:
    emails = [p.email for region in ("A", "B") for p in data.pharmacies(region)]
    for prescriber in data.prescribers():
        emails += [prescriber.email, prescriber.platform_email]
    emails += [p.email for p in (data.demo_patient(), *data.patients())]
    emails += [
        data.DEMO_PATIENT_EMAIL,
        data.DEMO_SUPPORT_EMAIL,
        data.DEMO_ADMIN_EMAIL,
        data.DEMO_PRESCRIBER_EMAIL,
    ]
    return emails


def test_everything_is_obviously_fake() -> None:
    emails = _all_emails()
    assert emails
    assert all(email.endswith("example.com") for email in emails), emails
    people = [data.demo_patient(), *data.patients()]
    assert all(p.phone.startswith("+44 7700 900") for p in people)
    assert all(p.nhs_number is not None and p.nhs_number.startswith("999") for p in people)
    assert all(p.nhs_number is not None and len(p.nhs_number) == 10 for p in people)


def test_patients_cover_both_regions() -> None:
    assert {p.region for p in data.patients()} == {"A", "B"}


# --- the database ------------------------------------------------------------------------


async def _count(session: AsyncSession, model: type[Any]) -> int:
    return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def _counts(session: AsyncSession) -> dict[str, int]:
    models = (Clinic, Patient, Pharmacy, Prescriber, Prescription, PrescriptionItem, User)
    return {model.__tablename__: await _count(session, model) for model in models}


async def test_seed_demo_creates_logins_clinic_and_prescriptions(
    session: AsyncSession, db: Runtime
) -> None:
    assert not await is_seeded(session)
    summary = await seed_demo(session, db.secret_box)
    assert summary.created
    assert await is_seeded(session)

    users = {u.email: u for u in await session.scalars(select(User))}
    expected_roles = {
        data.DEMO_PATIENT_EMAIL: Role.PATIENT,
        data.DEMO_SUPPORT_EMAIL: Role.SUPPORT,
        data.DEMO_ADMIN_EMAIL: Role.ADMIN,
        data.DEMO_PRESCRIBER_EMAIL: Role.PRESCRIBER,
    }
    assert set(users) == set(expected_roles)
    for email, role in expected_roles.items():
        assert users[email].role == role.value
        assert users[email].active
        assert verify_password(users[email].password_hash, "rxroute-demo")
        assert not verify_password(users[email].password_hash, "wrong")

    clinics = list(await session.scalars(select(Clinic)))
    assert [(c.api_internal_id, c.dashboard_display_id) for c in clinics] == [(994, "201334")]

    demo_patient_id = users[data.DEMO_PATIENT_EMAIL].patient_id
    assert demo_patient_id is not None
    rows = (
        await session.execute(
            select(Prescription.region, func.count())
            .where(Prescription.patient_id == demo_patient_id, Prescription.status == "draft")
            .group_by(Prescription.region)
        )
    ).all()
    unsent = {region: count for region, count in rows}
    assert unsent.get("A", 0) >= 3
    assert unsent.get("B", 0) >= 3

    counts = await _counts(session)
    assert counts["pharmacies"] == summary.pharmacies >= 60
    assert counts["patients"] == summary.patients
    assert counts["prescriptions"] == summary.prescriptions
    assert counts["prescription_items"] >= counts["prescriptions"]


async def test_seeded_prescribers_credentials_are_encrypted(
    session: AsyncSession, db: Runtime
) -> None:
    await seed_demo(session, db.secret_box)
    stored = {p.email: p for p in await session.scalars(select(Prescriber))}
    for seed in data.prescribers():
        prescriber = stored[seed.email]
        assert prescriber.has_platform_credentials
        assert prescriber.platform_password_encrypted != seed.platform_password
        assert prescriber.signing_pin_encrypted is not None
        assert seed.signing_pin not in prescriber.signing_pin_encrypted
        assert db.secret_box.decrypt(prescriber.signing_pin_encrypted) == seed.signing_pin
        assert prescriber.platform_email_encrypted is not None
        assert db.secret_box.decrypt(prescriber.platform_email_encrypted) == seed.platform_email


async def test_seeded_prescribers_have_the_external_ids_the_readme_uses(
    session: AsyncSession, db: Runtime
) -> None:
    await seed_demo(session, db.secret_box)
    stored = {p.email: p.external_id for p in await session.scalars(select(Prescriber))}
    assert [stored[seed.email] for seed in data.prescribers()][:2] == ["dr_1", "dr_2"]


async def test_seed_demo_is_idempotent(session: AsyncSession, db: Runtime) -> None:
    await seed_demo(session, db.secret_box)
    before = await _counts(session)
    again = await seed_demo(session, db.secret_box)
    assert not again.created
    assert (again.pharmacies, again.patients, again.prescriptions) == (0, 0, 0)
    assert await _counts(session) == before


async def test_add_prescriptions_adds_exactly_that_many_drafts(
    session: AsyncSession, db: Runtime
) -> None:
    await seed_demo(session, db.secret_box)
    before = await _count(session, Prescription)
    progress: list[int] = []
    added = await add_prescriptions(session, 500, progress=progress.append)
    assert added == 500
    assert sum(progress) == 500
    assert await _count(session, Prescription) == before + 500
    bulk = Prescription.notes == "Bulk test prescription"
    assert await session.scalar(select(func.count()).where(bulk)) == 500
    assert (
        await session.scalar(select(func.count()).where(bulk, Prescription.status != "draft")) == 0
    )
    without_items = await session.scalar(
        select(func.count()).where(
            bulk,
            ~select(PrescriptionItem.id)
            .where(PrescriptionItem.prescription_id == Prescription.id)
            .exists(),
        )
    )
    assert without_items == 0


async def test_add_prescriptions_needs_a_seeded_database(session: AsyncSession) -> None:
    with pytest.raises(LookupError, match="rxroute seed"):
        await add_prescriptions(session, 10)


async def _seed_fresh_database(box: SecretBox) -> list[tuple[str, str, str, int | None]]:
    url, admin = create_test_database("rxroute_seedtwin")
    engine = create_engine(url, pool_size=1)
    try:
        migrate.upgrade(url)
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session, session.begin():
            await seed_demo(session, box)
        async with sessionmaker() as session:
            rows = await session.execute(
                select(
                    Pharmacy.name, Pharmacy.postcode, Pharmacy.region, Pharmacy.platform_contact_id
                ).order_by(Pharmacy.region, Pharmacy.name)
            )
            return [tuple(row) for row in rows]  # type: ignore[misc]
    finally:
        await engine.dispose()
        drop_test_database(url, admin)


async def test_two_fresh_databases_get_the_same_pharmacies(db: Runtime) -> None:
    first = await _seed_fresh_database(db.secret_box)
    second = await _seed_fresh_database(db.secret_box)
    assert first == second
    expected = sorted(
        (p.name, p.postcode, p.region, p.contact_id)
        for region in ("A", "B")
        for p in data.pharmacies(region)
    )
    assert sorted(first) == expected


def test_seeded_pharmacies_show_phone_and_hours_mostly_but_not_always() -> None:
    """The demo shows a pharmacy's phone and hours, and also one whose are unknown."""
    from rxroute.seed import data

    seeded = data.pharmacies("A") + data.pharmacies("B")
    phones = [ph.phone for ph in seeded if ph.phone]
    assert phones and len(phones) < len(seeded)
    assert all(phone.startswith("+44 7700 900") for phone in phones)  # Ofcom's drama range
    assert len(set(phones)) == len(phones)
    assert any(ph.opening_hours for ph in seeded) and any(not ph.opening_hours for ph in seeded)
