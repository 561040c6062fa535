"""Shared fixtures for the Region A email channel, plus a tiny PDF text reader.

The reader understands exactly what fpdf2 writes (Flate streams, ``Tj`` strings, core fonts
in Latin-1 and embedded fonts in Identity-H with a ToUnicode CMap), so the tests can check
what a pharmacist would read without a PDF library in the dependencies.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from datetime import date

import pytest

from rxroute.channels.email.document import (
    PatientDetails,
    PharmacyDetails,
    PrescriberDetails,
    PrescriptionDocument,
    PrescriptionItem,
)

_OBJECT = re.compile(rb"(\d+) 0 obj\s*(.*?)endobj", re.S)
_STREAM = re.compile(rb">>\s*stream\r?\n")
_LENGTH = re.compile(rb"/Length (\d+)\b(?! 0 R)")
_REF = rb"(\d+) 0 R"


def _objects(pdf: bytes) -> dict[int, bytes]:
    return {int(m.group(1)): m.group(2) for m in _OBJECT.finditer(pdf)}


def read_stream(body: bytes) -> bytes:
    """The stream's data: exactly ``/Length`` bytes after the ``stream`` keyword's line end.

    Not up to the next line end before ``endstream``: compressed data may itself end in a
    carriage return (one stream in 256), which a pattern takes for the line end, leaving
    the data a byte short (zlib: "incomplete or truncated stream").
    """
    start, length = _STREAM.search(body), _LENGTH.search(body)
    assert start and length, "object has no stream with a direct /Length"
    end = start.end() + int(length.group(1))
    data = body[start.end() : end]
    assert body[end:].lstrip(b"\r\n").startswith(b"endstream"), "/Length does not end the data"
    return zlib.decompress(data) if b"/FlateDecode" in body else data


def _pdf_string(raw: bytes) -> bytes:
    out = bytearray()
    i = 0
    escapes = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("b"): b"\b", ord("f"): b"\f"}
    while i < len(raw):
        byte = raw[i]
        if byte != 0x5C:  # backslash
            out.append(byte)
            i += 1
            continue
        nxt = raw[i + 1]
        if nxt in escapes:
            out += escapes[nxt]
            i += 2
        elif 0x30 <= nxt <= 0x37:
            digits = re.match(rb"[0-7]{1,3}", raw[i + 1 : i + 4])
            assert digits
            out.append(int(digits.group(0), 8) & 0xFF)
            i += 1 + len(digits.group(0))
        else:
            out.append(nxt)
            i += 2
    return bytes(out)


def _to_unicode(cmap: bytes) -> dict[int, str]:
    mapping: dict[int, str] = {}
    for block in re.findall(rb"beginbfchar(.*?)endbfchar", cmap, re.S):
        for src, dst in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            mapping[int(src, 16)] = bytes.fromhex(dst.decode()).decode("utf-16-be")
    for block in re.findall(rb"beginbfrange(.*?)endbfrange", cmap, re.S):
        for lo, hi, dst in re.findall(
            rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block
        ):
            start = int(dst, 16)
            for offset, code in enumerate(range(int(lo, 16), int(hi, 16) + 1)):
                mapping[code] = chr(start + offset)
    return mapping


def extract_pages(pdf: bytes) -> list[str]:
    """The text of each page in drawing order, whitespace collapsed so wrapped lines read on."""
    objects = _objects(pdf)
    pages: list[str] = []
    for body in objects.values():
        if not re.search(rb"/Type /Page\b(?!s)", body):
            continue
        contents = re.search(rb"/Contents " + _REF, body)
        resources_ref = re.search(rb"/Resources " + _REF, body)
        assert contents and resources_ref
        resources = objects[int(resources_ref.group(1))]
        fonts: dict[bytes, dict[int, str] | None] = {}
        for name, ref in re.findall(rb"/(F\d+) " + _REF, resources):
            font = objects[int(ref)]
            to_unicode = re.search(rb"/ToUnicode " + _REF, font)
            fonts[name] = (
                _to_unicode(read_stream(objects[int(to_unicode.group(1))])) if to_unicode else None
            )
        content = read_stream(objects[int(contents.group(1))])
        current: dict[int, str] | None = None
        lines: list[str] = []
        for token in re.finditer(rb"/(F\d+) [\d.]+ Tf|\(((?:\\.|[^\\)])*)\) Tj", content, re.S):
            if token.group(1):
                current = fonts[token.group(1)]
                continue
            data = _pdf_string(token.group(2))
            if current is None:
                lines.append(data.decode("latin-1"))
            else:
                codes = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
                lines.append("".join(current.get(code, "\ufffd") for code in codes))
        pages.append(" ".join(" ".join(lines).split()))
    return pages


@pytest.fixture
def pdf_pages() -> Callable[[bytes], list[str]]:
    return extract_pages


def make_document(
    *,
    patient_name: str = "Jane Example",
    items: int = 2,
    notes: str | None = "Patient counselled on injection technique.",
    confirm_url: str | None = "http://127.0.0.1:8000/pharmacy/confirm/abc",
    prescription_id: str = "RX-2026-000123",
) -> PrescriptionDocument:
    return PrescriptionDocument(
        prescription_id=prescription_id,
        issued_on=date(2026, 3, 5),
        prescriber=PrescriberDetails("Dr Amelia Hart", "GMC 7012345", "a.hart@example.com"),
        patient=PatientDetails(
            full_name=patient_name,
            date_of_birth=date(1985, 7, 14),
            address_lines=("12 Rose Lane", "Flat 3"),
            town="Leeds",
            postcode="LS1 4AB",
            nhs_number="999 123 4567",
        ),
        pharmacy=PharmacyDetails("Riverside Pharmacy", ("1 High Street", "Leeds"), "LS2 9ZZ"),
        items=tuple(
            PrescriptionItem(
                description=f"Semaglutide 0.25mg/0.19ml solution for injection pen, item {n}",
                quantity="1 pre-filled pen (4 doses)",
                directions="Inject 0.25mg once weekly, on the same day each week.",
                dmd_code="37434411000001108" if n % 2 else None,
            )
            for n in range(1, items + 1)
        ),
        notes=notes,
        confirm_url=confirm_url,
    )


@pytest.fixture
def document() -> PrescriptionDocument:
    return make_document()


@pytest.fixture
def document_factory() -> Callable[..., PrescriptionDocument]:
    return make_document
