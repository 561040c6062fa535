"""Hand a message to the SMTP relay, classifying failures as retryable or permanent.

Uses the standard library's blocking ``smtplib`` in a worker thread: it is always present,
and one prescription email per job does not need an async SMTP client. The classification
follows the SMTP reply classes (4xx transient, 5xx permanent) so the job queue can decide
between a back-off and a failed send without knowing SMTP.
"""

from __future__ import annotations

import asyncio
import logging
import re
import smtplib
import ssl
from email.message import EmailMessage
from typing import TYPE_CHECKING

from rxroute.channels.email.errors import EmailRejected, EmailRetryable, EmailSendError

if TYPE_CHECKING:
    from rxroute.config import Settings

__all__ = ["send_configured", "send_email"]

log = logging.getLogger(__name__)

_ENHANCED_STATUS = re.compile(rb"^\s*([245]\.\d{1,3}\.\d{1,3})\b")


async def send_email(
    message: EmailMessage,
    *,
    host: str,
    port: int,
    username: str = "",
    password: str = "",
    starttls: bool = False,
    timeout: float = 30,  # noqa: ASYNC109 - smtplib's per-socket timeout, not a deadline
) -> None:
    """Deliver ``message`` to the relay at ``host:port``.

    Raises :class:`EmailRetryable` or :class:`EmailRejected`. ``timeout`` bounds each
    socket operation, not the whole exchange. Cancelling the awaiting task does not stop a
    send already in progress in its thread; the message may still go out.
    """
    await asyncio.to_thread(
        _send_blocking,
        message,
        host=host,
        port=port,
        username=username,
        password=password,
        starttls=starttls,
        timeout=timeout,
    )


async def send_configured(message: EmailMessage, settings: Settings) -> None:
    """Deliver ``message`` through the relay the ``RXROUTE_SMTP_*`` settings name.

    Every email rxroute sends (Region A's prescriptions and cancellations, the patients'
    status emails) goes through here, so they always share one relay and its login.
    Raises :class:`EmailRetryable` or :class:`EmailRejected`.
    """
    await send_email(
        message,
        host=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value(),
        starttls=settings.smtp_starttls,
    )


def _send_blocking(
    message: EmailMessage,
    *,
    host: str,
    port: int,
    username: str,
    password: str,
    starttls: bool,
    timeout: float,
) -> None:
    where = f"SMTP server {host}:{port}"
    stage = "connect"
    try:
        with smtplib.SMTP(host, port, timeout=timeout) as client:
            client.ehlo()
            if starttls:
                stage = "tls"
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            if username:
                stage = "auth"
                client.login(username, password)
            stage = "data"
            refused = client.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        # Raised only when every recipient was refused; the reply texts name the addresses.
        raise _from_codes(
            f"{where} refused every recipient",
            "recipient",
            list(exc.recipients.values()),
        ) from None
    except smtplib.SMTPResponseException as exc:
        raise _from_reply(
            f"{where} refused the message at the {_stage_name(exc, stage)} stage",
            _stage_name(exc, stage),
            exc.smtp_code,
            exc.smtp_error,
        ) from None
    except smtplib.SMTPNotSupportedError:
        reason = "STARTTLS" if stage == "tls" else "a required extension"
        if stage == "auth":
            reason = "authentication"
        raise EmailRejected(f"{where} does not support {reason}", stage=stage) from None
    except smtplib.SMTPServerDisconnected as exc:
        # smtplib reports a read timeout as a disconnect; the timeout is its context.
        what = "timed out" if isinstance(exc.__context__, TimeoutError) else "closed the connection"
        raise EmailRetryable(f"{where} {what}", stage=stage) from exc
    except smtplib.SMTPException as exc:
        if stage == "auth":
            raise EmailRejected(f"{where} offered no usable login method", stage=stage) from exc
        raise EmailRetryable(f"{where} failed during {stage}", stage=stage) from exc
    except ssl.SSLCertVerificationError as exc:
        raise EmailRejected(
            f"{where} presented a certificate that does not verify", stage="tls"
        ) from exc
    except TimeoutError as exc:
        raise EmailRetryable(f"{where} timed out", stage=stage) from exc
    except ConnectionRefusedError as exc:
        raise EmailRetryable(f"{where} refused the connection", stage=stage) from exc
    except OSError as exc:
        raise EmailRetryable(
            f"{where} could not be reached ({type(exc).__name__})", stage=stage
        ) from exc

    if refused:
        # Some recipients took it and some did not: retrying would duplicate it for the
        # ones that accepted, so the caller must see this as a failure to decide on.
        raise _from_codes(
            f"{where} refused {len(refused)} of the recipients",
            "recipient",
            list(refused.values()),
        )
    log.info("email handed to SMTP relay", extra={"smtp_host": host, "smtp_port": port})


def _stage_name(exc: smtplib.SMTPResponseException, current: str) -> str:
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return "sender"
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return "auth"
    if isinstance(exc, smtplib.SMTPConnectError | smtplib.SMTPHeloError):
        return "connect"
    return current


def _enhanced_status(reply: bytes | str) -> str | None:
    raw = reply.encode("utf-8", "replace") if isinstance(reply, str) else reply
    match = _ENHANCED_STATUS.match(raw)
    return match.group(1).decode("ascii") if match else None


def _from_reply(reason: str, stage: str, code: int, reply: bytes | str) -> EmailSendError:
    enhanced = _enhanced_status(reply)
    if 500 <= code <= 599:
        return EmailRejected(reason, stage=stage, smtp_code=code, enhanced_status=enhanced)
    # 4xx, and anything outside the reply classes (smtplib uses -1 for "no reply"), is
    # treated as transient: a later attempt may meet a healthier server.
    return EmailRetryable(reason, stage=stage, smtp_code=code, enhanced_status=enhanced)


def _from_codes(reason: str, stage: str, replies: list[tuple[int, bytes]]) -> EmailSendError:
    """One error for several recipient replies: permanent if any of them was permanent."""
    permanent = [(code, reply) for code, reply in replies if 500 <= code <= 599]
    code, reply = (permanent or replies or [(-1, b"")])[0]
    return _from_reply(reason, stage, code, reply)
