"""The email a Region A pharmacy receives: a short note, the PDF, the confirmation link.

Email crosses servers we do not control and subjects show up in notification previews and
logs, so the subject carries only rxroute's prescription ID and the body names the
prescriber and the pharmacy but no patient details: those live in the attached PDF alone.
"""

from __future__ import annotations

import html
from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from rxroute.channels.email.document import PrescriptionDocument

__all__ = [
    "attachment_filename",
    "build_cancellation_email",
    "build_prescription_email",
    "copy_notice",
    "prescription_subject",
]


def copy_notice(reference: str) -> str:
    """The words that mark a resend: same prescription, same reference, dispense once."""
    return f"COPY - same prescription, reference {reference}; do not dispense twice"


def prescription_subject(prescription_id: str) -> str:
    return f"Private prescription {prescription_id}"


def attachment_filename(prescription_id: str) -> str:
    safe = "".join(
        ch if ch.isascii() and (ch.isalnum() or ch in "-_") else "-" for ch in prescription_id
    )
    return f"prescription-{safe}.pdf"


def build_prescription_email(
    *,
    sender: str,
    to: str,
    doc: PrescriptionDocument,
    pdf: bytes,
    confirm_url: str,
    reply_to: str | None = None,
    link_expires_at: datetime | None = None,
    link_expiry_text: str | None = None,
) -> EmailMessage:
    """Compose the message; raises ``ValueError`` on a confirmation URL that is not http(s).

    A non-web URL (``javascript:``, ``data:``) in the one link a pharmacist is asked to
    click would be an injection, so it is refused here rather than escaped into the HTML.
    """
    if not confirm_url.startswith(("https://", "http://")):
        raise ValueError("confirm_url must be an http(s) URL")
    if not pdf.startswith(b"%PDF-"):
        raise ValueError("pdf is not a PDF document")

    message = EmailMessage()
    subject = prescription_subject(doc.quoted)
    message["Subject"] = f"COPY: {subject}" if doc.copy_notice else subject
    message["From"] = sender
    message["To"] = to
    if reply_to:
        message["Reply-To"] = reply_to
    message["Date"] = format_datetime(datetime.now(UTC))
    domain = sender.rpartition("@")[2].strip(" >") or None
    message["Message-ID"] = make_msgid(idstring="rx", domain=domain)
    # Lets a reply or bounce be matched back to the prescription without parsing bodies.
    message["X-Rxroute-Prescription-Id"] = doc.prescription_id

    filename = attachment_filename(doc.prescription_id)
    expiry = _expiry_sentence(link_expires_at, link_expiry_text)
    message.set_content(_text_body(doc, confirm_url, filename, expiry))
    message.add_alternative(_html_body(doc, confirm_url, filename, expiry), subtype="html")
    message.add_attachment(pdf, maintype="application", subtype="pdf", filename=filename)
    return message


def _long_date(value: date) -> str:
    return f"{value.day} {value:%B %Y}"


def _expiry_sentence(link_expires_at: datetime | None, shown_as: str | None) -> str:
    """``shown_as``: the expiry in the reader's display zone, zone named; else UTC."""
    if link_expires_at is None:
        return "The link is unique to this prescription; please do not forward it."
    when = shown_as or link_expires_at.astimezone(UTC).strftime("%d %B %Y %H:%M UTC")
    return (
        f"The link is unique to this prescription and works until {when}; please do not forward it."
    )


def _text_body(
    doc: PrescriptionDocument,
    confirm_url: str,
    filename: str,
    expiry: str,
) -> str:
    prescriber = doc.prescriber
    return (
        f"Hello {doc.pharmacy.name},\n"
        "\n"
        + (f"{doc.copy_notice}.\n\n" if doc.copy_notice else "")
        + f"Private prescription {doc.quoted} is attached as {filename}. It was issued "
        f"by {prescriber.name} (registration number {prescriber.registration_number}) on "
        f"{_long_date(doc.issued_on)}.\n"
        "\n"
        "When you have dispensed it, please confirm by opening this link:\n"
        f"{confirm_url}\n"
        "\n"
        f"{expiry}\n"
        "\n"
        f"Questions about the prescription: contact the prescriber at {prescriber.email}.\n"
        "\n"
        "-- \n"
        "Sent by rxroute on behalf of the prescriber.\n"
    )


def _html_body(
    doc: PrescriptionDocument,
    confirm_url: str,
    filename: str,
    expiry: str,
) -> str:
    e = html.escape
    prescriber = doc.prescriber
    return (
        "<!DOCTYPE html>\n"
        '<html><body style="font-family: Arial, sans-serif; font-size: 15px; color: #1b1b1b;">\n'
        f"<p>Hello {e(doc.pharmacy.name)},</p>\n"
        + (f"<p><strong>{e(doc.copy_notice)}.</strong></p>\n" if doc.copy_notice else "")
        + f"<p>Private prescription <strong>{e(doc.quoted)}</strong> is attached as "
        f"<code>{e(filename)}</code>. It was issued by {e(prescriber.name)} (registration "
        f"number {e(prescriber.registration_number)}) on {e(_long_date(doc.issued_on))}.</p>\n"
        "<p>When you have dispensed it, please confirm:</p>\n"
        f'<p><a href="{e(confirm_url)}" style="display: inline-block; padding: 10px 16px; '
        'background: #1d5fa8; color: #ffffff; text-decoration: none; border-radius: 4px;">'
        "Confirm dispensed</a></p>\n"
        f'<p style="font-size: 13px;">Or copy this address into your browser:<br>'
        f"{e(confirm_url)}</p>\n"
        f'<p style="font-size: 13px;">{e(expiry)}</p>\n'
        f"<p>Questions about the prescription: contact the prescriber at "
        f"{e(prescriber.email)}.</p>\n"
        '<p style="color: #666666; font-size: 12px;">Sent by rxroute on behalf of the '
        "prescriber.</p>\n"
        "</body></html>\n"
    )


def build_cancellation_email(
    *, sender: str, to: str, pharmacy_name: str, reference: str, reason: str
) -> EmailMessage:
    """Tell a pharmacy not to dispense a prescription it was emailed.

    Like the prescription email, it names only rxroute's reference: no patient details.
    """
    message = EmailMessage()
    message["Subject"] = f"CANCELLED - do not dispense: {prescription_subject(reference)}"
    message["From"] = sender
    message["To"] = to
    message["Date"] = format_datetime(datetime.now(UTC))
    domain = sender.rpartition("@")[2].strip(" >") or None
    message["Message-ID"] = make_msgid(idstring="rx-cancel", domain=domain)
    message["X-Rxroute-Prescription-Id"] = reference
    text = (
        f"Hello {pharmacy_name},\n"
        "\n"
        f"Private prescription {reference} has been cancelled - do not dispense it.\n"
        f"Reason: {reason}\n"
        "\n"
        "If you have already dispensed it, please contact the prescriber. The confirmation "
        "link in the earlier email no longer works.\n"
        "\n"
        "-- \n"
        "Sent by rxroute on behalf of the prescriber.\n"
    )
    message.set_content(text)
    e = html.escape
    message.add_alternative(
        '<!DOCTYPE html>\n<html><body style="font-family: Arial, sans-serif;">\n'
        f"<p>Hello {e(pharmacy_name)},</p>\n"
        f"<p><strong>Private prescription {e(reference)} has been cancelled - do not "
        "dispense it.</strong></p>\n"
        f"<p>Reason: {e(reason)}</p>\n"
        "<p>If you have already dispensed it, please contact the prescriber. The confirmation "
        "link in the earlier email no longer works.</p>\n"
        "</body></html>\n",
        subtype="html",
    )
    return message
