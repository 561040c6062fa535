"""``GET /api/v1/prescriptions/{id}``: current status and the whole history, to who may see it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.models import Role
from rxroute.prescriptions.history import record_status
from rxroute.prescriptions.lifecycle import Source, Status
from rxroute.runtime import Runtime
from tests.factories import PASSWORD, make_patient, make_prescriber, make_prescription, make_user

SIGNED_AT = datetime(2030, 5, 1, 9, 0, tzinfo=UTC)
DISPENSED_AT = SIGNED_AT + timedelta(hours=5)


async def _login(client: httpx.AsyncClient, email: str) -> dict[str, str]:
    response = await client.post("/api/v1/auth/token", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def _setup(session: AsyncSession, runtime: Runtime) -> tuple[uuid.UUID, dict[str, str]]:
    """A dispensed prescription with a history from every source; users by role."""
    patient = await make_patient(session)
    other = await make_patient(session)
    prescriber = await make_prescriber(session, runtime.secret_box)
    prescription = await make_prescription(session, patient, prescriber, region="B")
    pid = prescription.id
    await record_status(session, pid, Status.QUEUED, source=Source.PATIENT, actor="patient")
    await record_status(session, pid, Status.SENDING, source=Source.WORKER)
    await record_status(session, pid, Status.ISSUED, source=Source.WORKER, provider_status="issued")
    await record_status(
        session,
        pid,
        Status.DISPENSED,
        source=Source.POLL,
        occurred_at=DISPENSED_AT,
        provider_status="dispensed",
    )
    await record_status(  # late: recorded at its true time, status stays dispensed
        session,
        pid,
        Status.SIGNED,
        source=Source.WEBHOOK,
        occurred_at=SIGNED_AT,
        provider_status="signed",
        provider_event_id="evt_late_signed",
    )
    users = {
        "patient": await make_user(session, Role.PATIENT, patient=patient),
        "other_patient": await make_user(session, Role.PATIENT, patient=other),
        "patient_without_profile": await make_user(session, Role.PATIENT),
        "support": await make_user(session, Role.SUPPORT),
        "admin": await make_user(session, Role.ADMIN),
    }
    await session.commit()
    return pid, {name: user.email for name, user in users.items()}


@pytest.mark.parametrize("who", ["patient", "support", "admin"])
async def test_status_and_whole_history(
    client: httpx.AsyncClient, session: AsyncSession, db: Runtime, who: str
) -> None:
    pid, emails = await _setup(session, db)
    response = await client.get(
        f"/api/v1/prescriptions/{pid}", headers=await _login(client, emails[who])
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == str(pid)
    assert body["status"] == "dispensed"
    assert body["is_final"] is True
    history = body["history"]
    assert [(h["status"], h["source"]) for h in history] == [
        ("queued", "patient"),
        ("sending", "worker"),
        ("issued", "worker"),
        ("dispensed", "poll"),
        ("signed", "webhook"),
    ]
    for entry in history:
        assert datetime.fromisoformat(entry["occurred_at"]).tzinfo is not None
        assert datetime.fromisoformat(entry["recorded_at"]).tzinfo is not None
        assert entry["label"]
    assert datetime.fromisoformat(history[3]["occurred_at"]) == DISPENSED_AT
    late = history[4]
    assert datetime.fromisoformat(late["occurred_at"]) == SIGNED_AT
    assert datetime.fromisoformat(late["recorded_at"]) > SIGNED_AT - timedelta(days=3650)
    assert (late["provider_status"], late["provider_event_id"]) == ("signed", "evt_late_signed")
    # Recorded after dispensed though it happened before: both times are shown.
    assert datetime.fromisoformat(late["recorded_at"]) >= datetime.fromisoformat(
        history[3]["recorded_at"]
    )


@pytest.mark.parametrize("who", ["other_patient", "patient_without_profile"])
async def test_other_patients_get_404(
    client: httpx.AsyncClient, session: AsyncSession, db: Runtime, who: str
) -> None:
    pid, emails = await _setup(session, db)
    headers = await _login(client, emails[who])
    response = await client.get(f"/api/v1/prescriptions/{pid}", headers=headers)
    assert response.status_code == 404
    assert response.json() == {"detail": "prescription not found"}
    unknown = await client.get(f"/api/v1/prescriptions/{uuid.uuid4()}", headers=headers)
    assert unknown.status_code == 404
    assert unknown.json() == response.json(), "must not tell 'exists' from 'not yours'"


async def test_anonymous_gets_401_and_bad_id_422(
    client: httpx.AsyncClient, session: AsyncSession, db: Runtime
) -> None:
    pid, emails = await _setup(session, db)
    assert (await client.get(f"/api/v1/prescriptions/{pid}")).status_code == 401
    headers = await _login(client, emails["support"])
    assert (
        await client.get("/api/v1/prescriptions/not-a-uuid", headers=headers)
    ).status_code == 422
