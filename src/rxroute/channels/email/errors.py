"""Why an email could not be sent, split by what the caller should do next.

Messages carry the SMTP host, the stage and the reply code (and RFC 3463 enhanced status when
the server gave one), never the server's reply text or any address: replies often echo the
recipient, and these errors end up in logs and job records.
"""

from __future__ import annotations

__all__ = ["EmailRejected", "EmailRetryable", "EmailSendError"]


class EmailSendError(Exception):
    """The message was not handed over to the SMTP server."""

    def __init__(
        self,
        reason: str,
        *,
        stage: str,
        smtp_code: int | None = None,
        enhanced_status: str | None = None,
    ) -> None:
        self.reason = reason
        #: ``connect``, ``tls``, ``auth``, ``sender``, ``recipient`` or ``data``.
        self.stage = stage
        self.smtp_code = smtp_code
        self.enhanced_status = enhanced_status
        detail = reason
        if smtp_code is not None:
            detail += f" (SMTP {smtp_code}"
            detail += f" {enhanced_status})" if enhanced_status else ")"
        super().__init__(detail)


class EmailRetryable(EmailSendError):
    """A transient failure: the server was unreachable, timed out or answered 4xx.

    Sending the same message again later may succeed; nothing was delivered.
    """


class EmailRejected(EmailSendError):
    """A permanent failure (5xx, bad credentials, no TLS): resending unchanged will not help.

    Someone has to fix the recipient address or the SMTP settings first.
    """
