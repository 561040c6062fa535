from __future__ import annotations

import zlib
from collections.abc import Callable

import pytest

from rxroute.channels.email.document import PrescriptionDocument, PrescriptionItem
from rxroute.channels.email.pdf import FontFiles, find_unicode_font, render_prescription_pdf
from tests.channels.email.conftest import read_stream

PagesReader = Callable[[bytes], list[str]]
DocFactory = Callable[..., PrescriptionDocument]

FONT_CHOICES = [pytest.param("auto", id="unicode-font"), pytest.param(None, id="core-font")]


def _content_compressing_to_a_final_carriage_return() -> bytes:
    for line in range(1000):
        content = b"BT /F1 10 Tf (line %d of the page) Tj ET" % line * 3
        if zlib.compress(content)[-1] == 0x0D:
            return content
    raise AssertionError("no content in range compresses to a final carriage return")


def test_the_pdf_reader_takes_a_stream_by_its_length() -> None:
    """Flate data ending in a carriage return is read whole. The reader once took that byte
    for the line end before ``endstream`` and cut the data short: one stream in 256, which
    made a Region A test fail now and then."""
    content = _content_compressing_to_a_final_carriage_return()
    data = zlib.compress(content)
    body = b"<<\n/Filter /FlateDecode\n/Length %d\n>>\nstream\n%s\nendstream\n" % (
        len(data),
        data,
    )
    assert read_stream(body) == content


def test_bundled_unicode_font_is_found() -> None:
    fonts = find_unicode_font()
    assert isinstance(fonts, FontFiles)
    assert fonts.regular.is_file() and fonts.bold.is_file()


@pytest.mark.parametrize("fonts", FONT_CHOICES)
def test_one_page_with_everything_a_pharmacist_needs(
    document: PrescriptionDocument, pdf_pages: PagesReader, fonts: FontFiles | str | None
) -> None:
    pdf = render_prescription_pdf(document, fonts=fonts)  # type: ignore[arg-type]

    assert pdf.startswith(b"%PDF-")
    pages = pdf_pages(pdf)
    assert len(pages) == 1
    text = pages[0]
    for expected in (
        "Private prescription",
        "RX-2026-000123",
        "5 March 2026",
        "Dr Amelia Hart",
        "Registration number: GMC 7012345",
        "Jane Example",
        "Date of birth: 14 July 1985",
        "NHS number: 999 123 4567",
        "LS1 4AB",
        "Riverside Pharmacy",
        "Quantity",
        "Directions",
        "1 pre-filled pen (4 doses)",
        "Inject 0.25mg once weekly",
        "dm+d: 37434411000001108",
        "Patient counselled",
        "http://127.0.0.1:8000/pharmacy/confirm/abc",
    ):
        assert expected in text, expected


def test_unicode_names_print_as_written_with_the_bundled_font(
    document_factory: DocFactory, pdf_pages: PagesReader
) -> None:
    doc = document_factory(patient_name="Zoë Łukasz-Núñez Ωμέγα Жанна")
    text = pdf_pages(render_prescription_pdf(doc))[0]
    assert "Zoë Łukasz-Núñez Ωμέγα Жанна" in text


def test_characters_the_font_lacks_become_visible_placeholders(
    document_factory: DocFactory, pdf_pages: PagesReader
) -> None:
    # DejaVu Sans has no CJK glyphs; the name must still render, gap marked, no crash.
    doc = document_factory(patient_name="李小龍 Lee\x00\u200b")
    text = pdf_pages(render_prescription_pdf(doc))[0]
    assert "??? Lee" in text


def test_core_font_fallback_transliterates_instead_of_crashing(
    document_factory: DocFactory, pdf_pages: PagesReader
) -> None:
    doc = document_factory(
        patient_name="Zoë Łukasz \u201c\u03a9\u03bc\u03ad\u03b3\u03b1\u201d \u2013 李"
    )
    pdf = render_prescription_pdf(doc, fonts=None)
    text = pdf_pages(pdf)[0]
    assert 'Zoë Lukasz "?????" - ?' in text


@pytest.mark.parametrize("fonts", FONT_CHOICES)
def test_twenty_items_stay_on_one_page(
    document_factory: DocFactory, pdf_pages: PagesReader, fonts: str | None
) -> None:
    doc = document_factory(items=20)
    pages = pdf_pages(render_prescription_pdf(doc, fonts=fonts))  # type: ignore[arg-type]
    assert len(pages) == 1
    assert "item 20" in pages[0]


def test_overflow_continues_on_pages_that_each_carry_the_id(
    document_factory: DocFactory, pdf_pages: PagesReader
) -> None:
    base = document_factory(items=0)
    long_directions = "Inject once weekly; increase the dose every four weeks as tolerated. " * 6
    items = tuple(
        PrescriptionItem(f"Medicine {n}", f"{n} packs", long_directions) for n in range(1, 61)
    )
    doc = PrescriptionDocument(
        prescription_id=base.prescription_id,
        issued_on=base.issued_on,
        prescriber=base.prescriber,
        patient=base.patient,
        pharmacy=base.pharmacy,
        items=items,
        confirm_url="https://rx.example.com/pharmacy/confirm/" + "t" * 300,
    )
    pages = pdf_pages(render_prescription_pdf(doc))
    assert len(pages) > 1
    total = len(pages)
    for number, page in enumerate(pages, start=1):
        assert "rxroute prescription ID: RX-2026-000123" in page
        assert f"Page {number} of {total}" in page
    assert "Medicine 60" in pages[-1]


def test_long_unbroken_text_and_no_optional_fields(
    document_factory: DocFactory, pdf_pages: PagesReader
) -> None:
    doc = document_factory(patient_name="X" * 300, notes=None, confirm_url=None, items=1)
    pages = pdf_pages(render_prescription_pdf(doc))
    assert len(pages) == 1
    assert "confirm dispensing" not in pages[0]
    assert "Notes" not in pages[0]


def test_same_prescription_renders_identical_bytes(document: PrescriptionDocument) -> None:
    assert render_prescription_pdf(document) == render_prescription_pdf(document)
