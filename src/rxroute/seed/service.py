"""Write the demo data set (and bulk test prescriptions) into the database.

``seed_demo`` is idempotent: once the demo accounts exist it only adds what later versions
of the demo brought (the sample formulary, the demo prescriber's login) where missing, so
``rxroute demo`` can call it on every start. ``add_prescriptions`` bulk-inserts fresh draft
prescriptions with set-based INSERTs (thousands per second), for the case study's "always have
fresh ones to test with". ``add_patient_drafts`` gives a few to one named patient (the one who
signs in with that email), through the same ``create_draft`` a prescriber's page uses, so the
demo patient never runs out of prescriptions to send.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.auth.passwords import hash_password
from rxroute.crypto import SecretBox
from rxroute.formulary.sample import add_sample, sample_medicines
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
from rxroute.prescriptions.writing import DraftItem, create_draft
from rxroute.seed import data

DEMO_UNSENT_PER_REGION = 3
BULK_CHUNK = 1000
#: The demo's prescriptions: the sample formulary's medicines (not its pen needles).
_PRESCRIBED = sample_medicines()[:6]


@dataclass(frozen=True)
class SeedSummary:
    created: bool
    pharmacies: int
    patients: int
    prescriptions: int


async def is_seeded(session: AsyncSession) -> bool:
    found = await session.scalar(select(User.id).where(User.email == data.DEMO_ADMIN_EMAIL))
    return found is not None


def _patient_row(seed: data.PatientSeed) -> Patient:
    return Patient(
        first_name=seed.first_name,
        last_name=seed.last_name,
        date_of_birth=seed.date_of_birth,
        gender=seed.gender,
        email=seed.email,
        phone=seed.phone,
        address_line1=seed.address_line1,
        address_line2=seed.address_line2,
        town=seed.town,
        postcode=seed.postcode,
        country=seed.country,
        region=seed.region,
        nhs_number=seed.nhs_number,
    )


async def _add_later_parts(session: AsyncSession) -> None:
    """What the demo gained after databases were first seeded: the sample formulary and
    the demo prescriber's login. Each is added only where missing, so an existing demo
    database gets them on its next ``rxroute seed`` or ``rxroute demo``."""
    await add_sample(session)
    if await session.scalar(select(User.id).where(User.email == data.DEMO_PRESCRIBER_EMAIL)):
        return
    prescriber_id = await session.scalar(
        select(Prescriber.id).where(Prescriber.email == data.prescribers()[0].email)
    )
    if prescriber_id is None:
        return
    session.add(
        User(
            email=data.DEMO_PRESCRIBER_EMAIL,
            password_hash=hash_password(data.DEMO_PASSWORD),
            role=Role.PRESCRIBER.value,
            prescriber_id=prescriber_id,
        )
    )
    await session.flush()


async def seed_demo(session: AsyncSession, box: SecretBox) -> SeedSummary:
    if await is_seeded(session):
        await _add_later_parts(session)
        return SeedSummary(created=False, pharmacies=0, patients=0, prescriptions=0)

    clinic = Clinic(
        provider="signaturerx",
        name=data.CLINIC_NAME,
        api_internal_id=data.CLINIC_INTERNAL_ID,
        dashboard_display_id=data.CLINIC_DISPLAY_ID,
    )
    session.add(clinic)

    prescribers = [
        Prescriber(
            full_name=p.full_name,
            email=p.email,
            registration_number=p.registration_number,
            platform_email_encrypted=box.encrypt(p.platform_email),
            platform_password_encrypted=box.encrypt(p.platform_password),
            signing_pin_encrypted=box.encrypt(p.signing_pin),
            platform_prescriber_id=p.platform_prescriber_id,
            # The integrating platform's ids for them, as README's API examples use.
            external_id=f"dr_{number}",
        )
        for number, p in enumerate(data.prescribers(), start=1)
    ]
    session.add_all(prescribers)

    pharmacy_count = 0
    for region in ("A", "B"):
        for ph in data.pharmacies(region):
            session.add(
                Pharmacy(
                    name=ph.name,
                    address_line1=ph.address_line1,
                    address_line2=ph.address_line2,
                    town=ph.town,
                    postcode=ph.postcode,
                    region=ph.region,
                    email=ph.email,
                    platform_contact_id=ph.contact_id,
                    phone=ph.phone,
                    opening_hours=ph.opening_hours,
                )
            )
            pharmacy_count += 1

    demo_patient = _patient_row(data.demo_patient())
    others = [_patient_row(p) for p in data.patients()]
    session.add_all([demo_patient, *others])
    await session.flush()

    password = hash_password(data.DEMO_PASSWORD)
    session.add_all(
        [
            User(
                email=data.DEMO_PATIENT_EMAIL,
                password_hash=password,
                role=Role.PATIENT.value,
                patient_id=demo_patient.id,
            ),
            User(email=data.DEMO_SUPPORT_EMAIL, password_hash=password, role=Role.SUPPORT.value),
            User(email=data.DEMO_ADMIN_EMAIL, password_hash=password, role=Role.ADMIN.value),
        ]
    )

    rng = random.Random("demo-prescriptions")
    count = 0
    for region in ("A", "B"):
        for index in range(DEMO_UNSENT_PER_REGION):
            _add_prescription(
                session,
                demo_patient.id,
                prescribers[index % len(prescribers)].id,
                clinic.id,
                region,
                rng,
            )
            count += 1
    for index, patient in enumerate(others):
        _add_prescription(
            session,
            patient.id,
            prescribers[index % len(prescribers)].id,
            clinic.id,
            patient.region,
            rng,
        )
        count += 1
    await session.flush()
    await _add_later_parts(session)
    return SeedSummary(
        created=True, pharmacies=pharmacy_count, patients=1 + len(others), prescriptions=count
    )


def _add_prescription(
    session: AsyncSession,
    patient_id: uuid.UUID,
    prescriber_id: uuid.UUID,
    clinic_id: uuid.UUID,
    region: str,
    rng: random.Random,
) -> None:
    medicines = rng.sample(_PRESCRIBED, k=rng.randint(1, 2))
    prescription = Prescription(
        patient_id=patient_id,
        prescriber_id=prescriber_id,
        clinic_id=clinic_id,
        region=region,
        notes="Synthetic demo prescription",
    )
    prescription.items = [
        PrescriptionItem(
            position=position,
            description=med.description,
            quantity=med.quantity,
            directions=med.directions,
            dmd_vpid=med.dmd_vpid,
            dmd_apid=med.dmd_apid,
        )
        for position, med in enumerate(medicines)
    ]
    session.add(prescription)


#: The notes of every prescription :func:`add_prescriptions` writes (benches pick them by it).
BULK_NOTES = "Bulk test prescription"


async def add_prescriptions(
    session: AsyncSession,
    count: int,
    *,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Bulk-add ``count`` draft prescriptions spread over the seeded patients."""
    patients = (await session.execute(select(Patient.id, Patient.region))).all()
    prescriber_ids = list(await session.scalars(select(Prescriber.id)))
    clinic_id = await session.scalar(select(Clinic.id).order_by(Clinic.created_at).limit(1))
    if not patients or not prescriber_ids:
        raise LookupError(
            "no patients or prescribers yet: run `rxroute seed` without options first"
        )
    offset = await session.scalar(select(func.count()).select_from(Prescription)) or 0
    rng = random.Random(f"bulk-{offset}")
    done = 0
    while done < count:
        size = min(BULK_CHUNK, count - done)
        rows = []
        items = []
        for index in range(size):
            patient_id, _home_region = patients[(offset + done + index) % len(patients)]
            # Alternate regions so fresh test prescriptions exist for both channels.
            region = "AB"[(offset + done + index) % 2]
            prescription_id = uuid.uuid4()
            rows.append(
                {
                    "id": prescription_id,
                    "patient_id": patient_id,
                    "prescriber_id": prescriber_ids[index % len(prescriber_ids)],
                    "clinic_id": clinic_id,
                    "region": region,
                    "status": "draft",
                    "notes": BULK_NOTES,
                }
            )
            for position, med in enumerate(rng.sample(_PRESCRIBED, k=rng.randint(1, 2))):
                items.append(
                    {
                        "id": uuid.uuid4(),
                        "prescription_id": prescription_id,
                        "position": position,
                        "description": med.description,
                        "quantity": med.quantity,
                        "directions": med.directions,
                        "dmd_vpid": med.dmd_vpid,
                        "dmd_apid": med.dmd_apid,
                    }
                )
        await session.execute(insert(Prescription), rows)
        await session.execute(insert(PrescriptionItem), items)
        done += size
        if progress is not None:
            progress(size)
    return done


class UnknownPatient(LookupError):
    """No patient to give drafts to; ``field`` names the option or form field that said who.

    The message never repeats the email: an error line is no place for a patient's address.
    """

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


async def find_patient(session: AsyncSession, email: str, *, field: str = "patient") -> Patient:
    """The patient who signs in with ``email`` or, with no such login, the one patient on
    record with it (any case). Several without a login is refused: which one is a guess."""
    wanted = email.strip().lower()
    signs_in = await session.scalar(
        select(Patient)
        .join(User, User.patient_id == Patient.id)
        .where(func.lower(User.email) == wanted)
        .limit(1)
    )
    if signs_in is not None:
        return signs_in
    found = list(
        await session.scalars(select(Patient).where(func.lower(Patient.email) == wanted).limit(2))
    )
    if len(found) == 1:
        return found[0]
    if found:
        raise UnknownPatient(
            f"{field}: more than one patient has that email and none signs in with it; "
            "give a patient's sign-in email",
            field=field,
        )
    raise UnknownPatient(
        f"{field}: no patient has that email (the demo patient is {data.DEMO_PATIENT_EMAIL})",
        field=field,
    )


async def add_patient_drafts(session: AsyncSession, patient: Patient, count: int) -> int:
    """``count`` fresh drafts for ``patient``, written by the demo prescriber (or, if that
    one is deactivated, the first active one).

    Each goes through :func:`create_draft`, the one way a draft is written. Their region
    alternates, starting with the patient's own, so a demo patient can try both channels
    (the region is only the send form's preset; the patient may change it there).
    """
    if not 1 <= count <= data.MAX_PATIENT_DRAFTS:
        raise ValueError(f"count must be from 1 to {data.MAX_PATIENT_DRAFTS}")
    prescriber = await session.scalar(
        select(Prescriber)
        .where(Prescriber.active.is_(True))
        # The demo prescriber (Dr Alice Hartfield) when active: the one the demo signs in as.
        .order_by(
            (Prescriber.email == data.prescribers()[0].email).desc(),
            Prescriber.created_at,
            Prescriber.id,
        )
        .limit(1)
    )
    if prescriber is None:
        raise LookupError("no active prescriber yet: run `rxroute seed` without options first")
    existing = await session.scalar(
        select(func.count()).select_from(Prescription).where(Prescription.patient_id == patient.id)
    )
    rng = random.Random(f"patient-drafts-{patient.id}-{existing or 0}")
    own = patient.region if patient.region in ("A", "B") else "B"
    regions = (own, "B" if own == "A" else "A")
    for index in range(count):
        medicines = rng.sample(_PRESCRIBED, k=rng.randint(1, 2))
        draft = await create_draft(
            session,
            patient=patient,
            prescriber=prescriber,
            items=[
                DraftItem(
                    description=med.description,
                    quantity=med.quantity,
                    directions=med.directions,
                    dmd_vpid=med.dmd_vpid,
                    dmd_apid=med.dmd_apid,
                )
                for med in medicines
            ],
            notes="Synthetic demo prescription",
        )
        draft.region = regions[index % 2]
    await session.flush()
    return count
