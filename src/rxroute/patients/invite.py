"""``POST /api/v1/patients/{external_id}/invite``: email a patient a set-password link.

The platform knows the patient by its own ID (``patients.external_id``). Their
``role=patient`` account is created on the first invitation (inactive, with an unusable
password, linked to the patient, signing in with the patient's email) and the link itself
is the shared one (:mod:`rxroute.auth.invitations`): one-time, expiring after
``RXROUTE_INVITATION_HOURS``, and a new invitation cancels the earlier link. Answers 202:
the email is a job deferred with the link, sent after the answer.

Its own router (the patients' upsert lives in :mod:`rxroute.patients.endpoints`), for an
API key with the ``patients:write`` scope. Answers and logs carry ids only: no names and
no addresses.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Path, status
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.api_docs import bearer_auth
from rxroute.api_errors import ApiError, error_responses
from rxroute.apiclients.dependencies import require_scope
from rxroute.apiclients.scopes import Scope
from rxroute.auth.dependencies import RuntimeDep, SessionDep
from rxroute.auth.invitations import IssuedLink, issue_link, pending_invitations
from rxroute.auth.passwords import unusable_password_hash
from rxroute.models import ApiClient, InvitationPurpose, Patient, Role, User
from rxroute.runtime import Runtime

log = structlog.get_logger(__name__)

router = APIRouter(
    prefix="/api/v1/patients",
    tags=["patients"],
    dependencies=[Depends(bearer_auth)],
    responses=error_responses(401, 403, 422, 503),
)

PatientsWriter = Annotated[ApiClient, Depends(require_scope(Scope.PATIENTS_WRITE))]


class InviteAccepted(BaseModel):
    """The invitation email is queued."""

    invited: bool = Field(description="Always true: a new link was issued and its email queued.")
    expires_at: datetime = Field(description="When the link stops working (UTC).")


class InviteRefused(Exception):
    def __init__(self, status_code: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.field = field


async def invite_patient(session: AsyncSession, runtime: Runtime, patient: Patient) -> IssuedLink:
    """Issue the patient's set-password link, creating their account when they have none.

    Raises :class:`InviteRefused`: 422 without an email address, 409 when their account is
    deactivated or another account already signs in with their email.
    """
    user = await session.scalar(
        select(User).where(User.patient_id == patient.id).order_by(User.created_at).limit(1)
    )
    if user is None:
        email = (patient.email or "").strip().lower()
        if not email:
            raise InviteRefused(422, "the patient has no email address to invite", "email")
        taken = await session.scalar(
            select(func.count()).select_from(User).where(func.lower(User.email) == email)
        )
        if taken:
            raise InviteRefused(
                409,
                "another rxroute account already signs in with this patient's email address; "
                "change the patient's email or ask an rxroute administrator",
            )
        user = User(
            id=uuid.uuid4(),
            email=email,
            role=Role.PATIENT.value,
            patient_id=patient.id,
            password_hash=unusable_password_hash(),
            active=False,
        )
        session.add(user)
        await session.flush()
    elif not user.active and not await _never_set_up(session, user):
        raise InviteRefused(
            409, "the patient's rxroute account is deactivated; ask an rxroute administrator"
        )
    return await issue_link(session, runtime, user, InvitationPurpose.INVITE, created_by=None)


async def _never_set_up(session: AsyncSession, user: User) -> bool:
    """An inactive account that never set a password (invited, link not used yet)."""
    return user.id in await pending_invitations(session, [user.id])


@router.post(
    "/{external_id}/invite",
    name="invite",
    summary="Invite a patient to set a password",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=InviteAccepted,
    responses=error_responses(404, 409),
)
async def invite(
    session: SessionDep,
    runtime: RuntimeDep,
    client: PatientsWriter,
    external_id: Annotated[
        str, Path(min_length=1, max_length=200, description="The platform's own patient ID.")
    ],
) -> InviteAccepted:
    """Emails the patient a one-time link to set their password and sign in (needs an API
    key with the `patients:write` scope). Creates their patient account on the first call;
    each call issues a new link and cancels the earlier one."""
    patient = await session.scalar(select(Patient).where(Patient.external_id == external_id))
    if patient is None:
        raise ApiError(404, "no patient with this external_id", field="external_id")
    try:
        link = await invite_patient(session, runtime, patient)
    except InviteRefused as exc:
        raise ApiError(exc.status_code, exc.message, field=exc.field) from None
    log.info(
        "patient_invited",
        patient_id=str(patient.id),
        invitation_id=str(link.invitation_id),
        api_client_id=str(client.id),
    )
    return InviteAccepted(invited=True, expires_at=link.expires_at)
