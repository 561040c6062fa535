"""Compose a patient email from its template file: plain text, short, no medicines.

Each kind has one file under ``web/templates/notifications/email/`` holding its subject
(the ``subject`` block) and its body; ``_base.txt`` adds the greeting, the prescription
number, the link to the prescription page and the unsubscribe link. Subjects never name a
medicine or the patient: they show in previews and on lock screens. The pieces come in as
plain values, so composing needs neither the database nor the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from rxroute.notifications.kinds import Kind

TEMPLATE_DIR = Path(__file__).resolve().parents[1] / "web" / "templates" / "notifications" / "email"

_env = Environment(
    loader=FileSystemLoader(str(TEMPLATE_DIR)),
    # Plain text: nothing to escape, and an escaped "&amp;" in a pharmacy's name would show.
    autoescape=False,  # noqa: S701
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


@dataclass(frozen=True)
class PharmacyLines:
    name: str
    address_lines: tuple[str, ...]


@dataclass(frozen=True)
class NotificationContent:
    """What one email says, as plain values chosen by the caller."""

    kind: Kind
    first_name: str
    prescription_id: str
    #: The reference the pharmacy sees (:func:`rxroute.prescriptions.reference.patient_reference`).
    reference: str
    prescription_url: str
    unsubscribe_url: str
    #: The pharmacy the email is about (sent, dispensed, re-routed: the delivery's pharmacy).
    pharmacy: PharmacyLines | None = None
    #: Action needed: the page's words (headline, next step) and the cause in plain words.
    headline: str = ""
    cause: str = ""
    next_step: str = ""
    #: Cancelled: who cancelled it (a status source: patient, support, webhook...).
    source: str = ""


def render(content: NotificationContent) -> tuple[str, str]:
    """``(subject, body)`` of the kind's template."""
    template = _env.get_template(f"{content.kind.value}.txt")
    values = {
        "first_name": content.first_name,
        "prescription_id": content.prescription_id,
        "reference": content.reference,
        "prescription_url": content.prescription_url,
        "unsubscribe_url": content.unsubscribe_url,
        "pharmacy": content.pharmacy,
        "headline": content.headline,
        "cause": content.cause,
        "next_step": content.next_step,
        "source": content.source,
    }
    subject = "".join(template.blocks["subject"](template.new_context(values)))
    body = template.render(values)
    # One line, whatever a template says: a newline in a header would start another one.
    subject = " ".join(subject.split())
    return subject, _tidy(body)


def _tidy(body: str) -> str:
    """At most one blank line in a row, and one newline at the end."""
    lines: list[str] = []
    for line in body.splitlines():
        line = line.rstrip()
        if not line and (not lines or not lines[-1]):
            continue
        lines.append(line)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines) + "\n"


def build_notification_email(*, sender: str, to: str, content: NotificationContent) -> EmailMessage:
    """The message, with ``List-Unsubscribe`` (and RFC 8058 one-click) headers.

    Raises ``ValueError`` on an unsubscribe URL that is not http(s): mail clients show it as
    a button, so anything else would be an injection.
    """
    if not content.unsubscribe_url.startswith(("https://", "http://")):
        raise ValueError("the unsubscribe URL must be an http(s) URL")
    subject, body = render(content)
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = to
    message["Date"] = format_datetime(datetime.now(UTC))
    domain = sender.rpartition("@")[2].strip(" >") or None
    message["Message-ID"] = make_msgid(idstring="rx-notify", domain=domain)
    message["List-Unsubscribe"] = f"<{content.unsubscribe_url}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    # An automatic message: out-of-office replies and the like should not answer it.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Rxroute-Prescription-Id"] = content.prescription_id
    message["X-Rxroute-Notification"] = content.kind.value
    message.set_content(body)
    return message
