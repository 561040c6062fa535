from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser

import pytest

from rxroute.channels.email.document import PrescriptionDocument
from rxroute.channels.email.message import build_prescription_email
from rxroute.channels.email.pdf import render_prescription_pdf

CONFIRM = "http://127.0.0.1:8000/pharmacy/confirm/tok.en-value"


def test_subject_has_only_the_prescription_id(document: PrescriptionDocument) -> None:
    message = build_prescription_email(
        sender="prescriptions@rxroute.example.com",
        to="riverside@example.com",
        doc=document,
        pdf=render_prescription_pdf(document),
        confirm_url=CONFIRM,
    )
    assert message["Subject"] == "Private prescription RX-2026-000123"
    assert message["To"] == "riverside@example.com"
    assert message["Message-ID"].endswith("@rxroute.example.com>")


def test_bodies_link_but_do_not_carry_patient_details(document: PrescriptionDocument) -> None:
    pdf = render_prescription_pdf(document)
    message = build_prescription_email(
        sender="prescriptions@rxroute.example.com",
        to="riverside@example.com",
        doc=document,
        pdf=pdf,
        confirm_url=CONFIRM,
        link_expires_at=datetime(2026, 4, 2, 12, 0, tzinfo=UTC),
    )
    # Round-trip through the wire format, as the pharmacy's mail client would see it.
    parsed = BytesParser(policy=policy.default).parsebytes(message.as_bytes())
    text = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert text is not None and html is not None
    text_body, html_body = text.get_content(), html.get_content()
    assert CONFIRM in text_body
    assert f'href="{CONFIRM}"' in html_body
    assert "02 April 2026 12:00 UTC" in text_body
    patient = document.patient
    for phi in (patient.full_name, "999 123 4567", patient.postcode, "1985"):
        assert phi not in text_body
        assert phi not in html_body
        assert phi not in str(parsed["Subject"])

    attachments = list(parsed.iter_attachments())
    assert len(attachments) == 1
    assert attachments[0].get_filename() == "prescription-RX-2026-000123.pdf"
    assert attachments[0].get_content_type() == "application/pdf"
    assert attachments[0].get_content() == pdf


def test_html_body_escapes_values(document_factory: Callable[..., PrescriptionDocument]) -> None:
    doc = document_factory()
    evil = type(doc.pharmacy)("<script>alert(1)</script> & Co", ("x",), "LS2")
    doc = type(doc)(**{**{f: getattr(doc, f) for f in doc.__slots__}, "pharmacy": evil})
    message = build_prescription_email(
        sender="prescriptions@rxroute.example.com",
        to="riverside@example.com",
        doc=doc,
        pdf=render_prescription_pdf(doc),
        confirm_url=CONFIRM + "?a=1&b=<2>",
    )
    html = message.get_body(("html",))
    assert html is not None
    body = html.get_content()
    assert "<script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in body
    assert "?a=1&amp;b=&lt;2&gt;" in body


@pytest.mark.parametrize("url", ["javascript:alert(1)", "data:text/html,x", "/relative"])
def test_refuses_non_web_confirmation_urls(document: PrescriptionDocument, url: str) -> None:
    with pytest.raises(ValueError):
        build_prescription_email(
            sender="a@example.com",
            to="b@example.com",
            doc=document,
            pdf=render_prescription_pdf(document),
            confirm_url=url,
        )


def test_refuses_bytes_that_are_not_a_pdf(document: PrescriptionDocument) -> None:
    with pytest.raises(ValueError):
        build_prescription_email(
            sender="a@example.com", to="b@example.com", doc=document, pdf=b"hi", confirm_url=CONFIRM
        )
