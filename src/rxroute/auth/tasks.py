"""The set-password email: a job deferred with its link (:mod:`rxroute.auth.invitations`).

The job reads the link's state first and sends nothing for a link that was used, replaced
or has expired since (an older email's job running late must not deliver a dead link);
the database transaction is over before the SMTP exchange starts. Subject and body come
from template files (``web/templates/email/invitation*``) and name no one: the recipient's
own address is the only personal detail in the message. Sent through the one SMTP client
(:mod:`rxroute.channels.email.smtp`) with the same settings as Region A. Temporary SMTP
failures are retried by the queue; a permanent refusal is logged (ids only) and stops.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import procrastinate
import structlog
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.auth.invitations import LinkState, email_role_label, state_of, welcome_url
from rxroute.channels.email.errors import EmailRejected, EmailRetryable
from rxroute.channels.email.smtp import send_configured
from rxroute.config import Settings
from rxroute.jobs import defer_in_session, queue
from rxroute.models import Invitation, Role, User
from rxroute.runtime import Runtime, get_runtime
from rxroute.timezones import format_display

log = structlog.get_logger(__name__)

EMAIL_TEMPLATES = Path(__file__).resolve().parent.parent / "web" / "templates" / "email"
_emails = Environment(
    loader=FileSystemLoader(str(EMAIL_TEMPLATES)),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)

INVITATION_MAX_ATTEMPTS = 6


def build_invitation_email(
    settings: Settings,
    *,
    to: str,
    purpose: str,
    role: str,
    url: str,
    expires_at: datetime,
) -> EmailMessage:
    context = {
        "purpose": purpose,
        "role": email_role_label(role),
        "is_patient": role == Role.PATIENT.value,
        "url": url,
        "expires": format_display(expires_at, settings),
    }
    message = EmailMessage()
    message["Subject"] = _emails.get_template("invitation_subject.txt").render(context).strip()
    message["From"] = settings.smtp_from
    message["To"] = to
    message["Date"] = format_datetime(datetime.now(UTC))
    domain = settings.smtp_from.rpartition("@")[2].strip(" >") or None
    message["Message-ID"] = make_msgid(idstring="invite", domain=domain)
    message.set_content(_emails.get_template("invitation.txt").render(context))
    message.add_alternative(_emails.get_template("invitation.html").render(context), subtype="html")
    return message


@queue.task(
    name="send_invitation_email",
    retry=procrastinate.RetryStrategy(
        max_attempts=INVITATION_MAX_ATTEMPTS, exponential_wait=2, retry_exceptions={EmailRetryable}
    ),
)
async def send_invitation_email(invitation_id: str, sealed_token: str) -> str:
    return await send_invitation(get_runtime(), uuid.UUID(invitation_id), sealed_token)


async def send_invitation(runtime: Runtime, invitation_id: uuid.UUID, sealed_token: str) -> str:
    """One try: "sent", "skipped" (the link is no longer live) or "rejected"; raises
    :class:`EmailRetryable` for the queue to retry."""
    settings = runtime.settings
    async with runtime.sessionmaker() as session, session.begin():
        invitation = await session.get(Invitation, invitation_id)
        state = state_of(invitation)
        user = await session.get(User, invitation.user_id) if invitation else None
        if invitation is None or user is None or state is not LinkState.LIVE:
            log.info("invitation_email_skipped", invitation_id=str(invitation_id), state=state)
            return "skipped"
        token = runtime.secret_box.decrypt(sealed_token)
        message = build_invitation_email(
            settings,
            to=user.email,
            purpose=invitation.purpose,
            role=user.role,
            url=welcome_url(settings.public_url, token),
            expires_at=invitation.expires_at,
        )
    try:
        await send_configured(message, settings)
    except EmailRejected as exc:
        log.warning(
            "invitation_email_rejected",
            invitation_id=str(invitation_id),
            stage=exc.stage,
            smtp_code=exc.smtp_code,
        )
        return "rejected"
    log.info("invitation_email_sent", invitation_id=str(invitation_id))
    return "sent"


async def defer_invitation_email(
    session: AsyncSession, invitation_id: uuid.UUID, sealed_token: str
) -> int:
    return await defer_in_session(
        session,
        send_invitation_email,
        invitation_id=str(invitation_id),
        sealed_token=sealed_token,
    )
