"""Plain-function factories for test data. Everything synthetic."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.auth.passwords import hash_password
from rxroute.crypto import SecretBox
from rxroute.deliveries import ledger
from rxroute.models import (
    Clinic,
    Delivery,
    Patient,
    Pharmacy,
    Prescriber,
    Prescription,
    PrescriptionItem,
    Role,
    User,
)
from rxroute.prescriptions.history import lock_prescription
from rxroute.prescriptions.lifecycle import Source, Status

PASSWORD = "correct horse battery"


async def make_patient(session: AsyncSession, **overrides: object) -> Patient:
    n = uuid.uuid4().hex[:6]
    values: dict[str, object] = {
        "first_name": "Test",
        "last_name": f"Patient{n}",
        "date_of_birth": date(1985, 3, 7),
        "gender": "Female",
        "email": f"patient-{n}@example.com",
        "phone": "+44 7700 900123",
        "address_line1": "1 Example Street",
        "address_line2": "",
        "town": "Leeds",
        "postcode": "LS1 4AP",
        "country": "GB",
        "region": "B",
        "nhs_number": "9990000018",
    }
    values.update(overrides)
    patient = Patient(**values)
    session.add(patient)
    await session.flush()
    return patient


async def make_user(
    session: AsyncSession,
    role: Role = Role.PATIENT,
    *,
    patient: Patient | None = None,
    email: str | None = None,
    password: str = PASSWORD,
) -> User:
    user = User(
        email=email or f"{role.value}-{uuid.uuid4().hex[:6]}@example.com",
        password_hash=hash_password(password),
        role=role.value,
        patient_id=patient.id if patient else None,
    )
    session.add(user)
    await session.flush()
    return user


async def make_clinic(session: AsyncSession, **overrides: object) -> Clinic:
    values: dict[str, object] = {
        "provider": "signaturerx",
        "name": "Test Clinic",
        "api_internal_id": 994,
        "dashboard_display_id": "201334",
    }
    values.update(overrides)
    clinic = Clinic(**values)
    session.add(clinic)
    await session.flush()
    return clinic


async def make_prescriber(
    session: AsyncSession,
    box: SecretBox,
    *,
    email: str = "dr.alice.hartfield@example.com",
    password: str = "sandbox-prescriber-alice",
    pin: str = "123456",
    **overrides: object,
) -> Prescriber:
    n = uuid.uuid4().hex[:6]
    values: dict[str, object] = {
        "full_name": "Dr Test Prescriber",
        "email": f"prescriber-{n}@example.com",
        "registration_number": "GMC-7999999",
        "platform_email_encrypted": box.encrypt(email),
        "platform_password_encrypted": box.encrypt(password),
        "signing_pin_encrypted": box.encrypt(pin),
    }
    values.update(overrides)
    prescriber = Prescriber(**values)
    session.add(prescriber)
    await session.flush()
    return prescriber


async def make_pharmacy(session: AsyncSession, region: str = "B", **overrides: object) -> Pharmacy:
    n = uuid.uuid4().hex[:6]
    values: dict[str, object] = {
        "name": f"Test Pharmacy {n}",
        "address_line1": "2 High Street",
        "address_line2": "",
        "town": "Leeds",
        "postcode": "LS1 5AB",
        "region": region,
        "email": f"pharmacy-{n}@example.com",
        "platform_contact_id": 5001 if region == "B" else None,
    }
    values.update(overrides)
    pharmacy = Pharmacy(**values)
    session.add(pharmacy)
    await session.flush()
    return pharmacy


async def make_prescription(
    session: AsyncSession,
    patient: Patient,
    prescriber: Prescriber,
    *,
    clinic: Clinic | None = None,
    items: int = 1,
    **overrides: object,
) -> Prescription:
    values: dict[str, object] = {
        "patient_id": patient.id,
        "prescriber_id": prescriber.id,
        "clinic_id": clinic.id if clinic else None,
    }
    values.update(overrides)
    prescription = Prescription(**values)
    prescription.items = [
        PrescriptionItem(
            position=i,
            description=f"Semaglutide 0.25mg pen {i}",
            quantity="1 pen",
            directions="Inject once weekly",
        )
        for i in range(items)
    ]
    session.add(prescription)
    await session.flush()
    return prescription


async def queue_delivery(
    session: AsyncSession,
    prescription_id: uuid.UUID,
    *,
    source: Source = Source.PATIENT,
    actor: str | None = None,
) -> Delivery:
    """What a send request records: a delivery to the prescription's chosen pharmacy, queued.

    Uses the prescription's ``region``, ``channel`` and ``pharmacy_id`` as the factory set them.
    """
    prescription = await lock_prescription(session, prescription_id)
    assert prescription.pharmacy_id is not None and prescription.channel and prescription.region
    pharmacy = await session.get(Pharmacy, prescription.pharmacy_id)
    assert pharmacy is not None
    return await ledger.open_delivery(
        session,
        prescription,
        pharmacy=pharmacy,
        region=prescription.region,
        channel=prescription.channel,
        source=source,
        actor=actor,
        reason=None,
    )


async def observe_current(
    session: AsyncSession,
    prescription_id: uuid.UUID,
    status: Status,
    *,
    source: Source = Source.WORKER,
    ref: str | None = None,
    **kwargs: Any,
) -> None:
    """Record a far-side fact about the current delivery, as the send job or a webhook would."""
    prescription = await lock_prescription(session, prescription_id)
    assert prescription.current_delivery_id is not None
    delivery = await ledger.get_delivery(session, prescription.current_delivery_id)
    await ledger.observe(
        session,
        prescription,
        delivery,
        status,
        source=source,
        ref=ref,
        mirror_ref=delivery.channel == "erx",
        implies=Status.ISSUED if delivery.channel == "erx" else None,
        **kwargs,
    )
