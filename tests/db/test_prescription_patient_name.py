"""Each prescription's copy of its patient's name (migration 0019) stays the patient's.

Support's search by a common name walks prescriptions checking that copy
(``rxroute.support.search``), so a copy that lagged behind a rename would hide the
patient's prescriptions from support. Triggers keep it, whatever statement writes: these
tests write the ways the app and an operator could.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.deliveries import send_graph
from rxroute.models import Patient, Prescriber, Prescription
from rxroute.runtime import Runtime
from tests import factories

RENAME = text("UPDATE patients SET last_name = 'King' WHERE id = :id")


async def _copies(session: AsyncSession, *prescriptions: Prescription) -> list[str]:
    rows = await session.execute(
        text("SELECT id, patient_name_search FROM prescriptions WHERE id = ANY(:ids)"),
        {"ids": [p.id for p in prescriptions]},
    )
    by_id: dict[uuid.UUID, str] = {row.id: row.patient_name_search for row in rows}
    return [by_id[p.id] for p in prescriptions]


async def _two_patients(
    session: AsyncSession, db: Runtime
) -> tuple[Prescription, Prescription, Patient]:
    ada = await factories.make_patient(session, first_name="Ada", last_name="Lovelace")
    grace = await factories.make_patient(session, first_name="Grace", last_name="Hopper")
    prescriber = await factories.make_prescriber(session, db.secret_box)
    mine = await factories.make_prescription(session, ada, prescriber)
    theirs = await factories.make_prescription(session, grace, prescriber)
    return mine, theirs, ada


async def test_a_new_prescription_carries_its_patients_name(
    session: AsyncSession, db: Runtime
) -> None:
    mine, theirs, _ada = await _two_patients(session, db)
    assert await _copies(session, mine, theirs) == ["ada lovelace", "grace hopper"]


async def test_a_rename_reaches_the_patients_prescriptions_only(
    session: AsyncSession, db: Runtime
) -> None:
    mine, theirs, ada = await _two_patients(session, db)
    ada.last_name = "King"
    await session.flush()
    assert await _copies(session, mine, theirs) == ["ada king", "grace hopper"]


async def test_the_copy_cannot_be_written_apart_from_the_patient(
    session: AsyncSession, db: Runtime
) -> None:
    mine, theirs, _ada = await _two_patients(session, db)
    await session.execute(
        text("UPDATE prescriptions SET patient_name_search = 'someone else' WHERE id = :id"),
        {"id": mine.id},
    )
    await session.execute(
        text("UPDATE prescriptions SET patient_id = :patient WHERE id = :id"),
        {"patient": theirs.patient_id, "id": mine.id},
    )
    assert await _copies(session, mine, theirs) == ["grace hopper", "grace hopper"]


async def test_the_copy_is_never_loaded(session: AsyncSession) -> None:
    """PHI the pages take from the patient: neither the ORM nor the send job reads it."""
    assert "patient_name_search" not in str(select(Prescription))
    assert "patient_name_search" not in send_graph.LOAD


async def test_an_unknown_patient_is_still_refused_by_the_foreign_key(
    session: AsyncSession, db: Runtime
) -> None:
    mine, _theirs, _ada = await _two_patients(session, db)
    with pytest.raises(IntegrityError, match="fk_prescriptions_patient_id_patients"):
        async with session.begin_nested():
            await session.execute(
                text("UPDATE prescriptions SET patient_id = :patient WHERE id = :id"),
                {"patient": uuid.uuid4(), "id": mine.id},
            )


async def _ada_and_prescriber(db: Runtime) -> tuple[Patient, Prescriber]:
    async with db.sessionmaker() as session, session.begin():
        ada = await factories.make_patient(session, first_name="Ada", last_name="Lovelace")
        prescriber = await factories.make_prescriber(session, db.secret_box)
    return ada, prescriber


async def _committed_copies(db: Runtime, patient: Patient) -> list[str]:
    async with db.sessionmaker() as session:
        rows = await session.scalars(
            text("SELECT patient_name_search FROM prescriptions WHERE patient_id = :id"),
            {"id": patient.id},
        )
        return list(rows)


async def _new_prescription(db: Runtime, patient: Patient, prescriber: Prescriber) -> None:
    async with db.sessionmaker() as session, session.begin():
        await factories.make_prescription(session, patient, prescriber)


async def test_a_new_prescription_waits_for_an_open_rename(db: Runtime) -> None:
    """Renamed, not yet committed, while a prescription is written: it gets the new name."""
    ada, prescriber = await _ada_and_prescriber(db)
    async with db.sessionmaker() as renaming, renaming.begin():
        await renaming.execute(RENAME, {"id": ada.id})
        writing = asyncio.create_task(_new_prescription(db, ada, prescriber))
        await asyncio.sleep(0.3)
        assert not writing.done()  # waiting for the rename
    await writing
    assert await _committed_copies(db, ada) == ["ada king"]


async def test_a_rename_waits_for_an_open_new_prescription(db: Runtime) -> None:
    """A prescription written, not yet committed, while the patient is renamed: the rename
    waits for it and reaches it too."""
    ada, prescriber = await _ada_and_prescriber(db)

    async def rename() -> None:
        async with db.sessionmaker() as renaming, renaming.begin():
            await renaming.execute(RENAME, {"id": ada.id})

    async with db.sessionmaker() as writing, writing.begin():
        await factories.make_prescription(writing, ada, prescriber)
        renamed = asyncio.create_task(rename())
        await asyncio.sleep(0.3)
        assert not renamed.done()  # waiting for the new prescription
    await renamed
    assert await _committed_copies(db, ada) == ["ada king"]
