"""The Region A prescription as a one-page A4 PDF.

The pharmacy dispenses from this page, so names must print as written: the renderer embeds
DejaVu Sans (bundled next to this module) and only falls back to the PDF core fonts, with
a visible transliteration, when no Unicode font can be found. Whatever the input, rendering
never raises on text: characters no font can show become ``?`` rather than failing the send.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, Literal

from fpdf import FPDF, FontFace
from fpdf.enums import Align, TableCellFillMode, WrapMode, XPos, YPos
from fpdf.fonts import TTFFont

from rxroute.channels.email.document import PrescriptionDocument

__all__ = ["FontFiles", "find_unicode_font", "render_prescription_pdf"]

_BUNDLED_FONT_DIR = Path(__file__).with_name("fonts")

#: Where common distributions install DejaVu, tried when the bundled copy is missing.
_SYSTEM_FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/dejavu-sans-fonts"),
    Path("/usr/share/fonts/dejavu"),
    Path("/usr/share/fonts/TTF"),
    Path("/Library/Fonts"),
)

#: Body font sizes tried in turn until everything fits on one page.
_FONT_SIZES = (10.0, 9.0, 8.0, 7.0, 6.0)

_MARGIN_MM = 15.0
_FOOTER_MM = 22.0

#: Letters and punctuation that NFKD does not reduce to something a core font can print.
_TRANSLITERATIONS = {
    "\u0141": "L",
    "\u0142": "l",
    "\u0110": "D",
    "\u0111": "d",
    "\u0126": "H",
    "\u0127": "h",
    "\u0131": "i",
    "\u0152": "OE",
    "\u0153": "oe",
    "\u017f": "s",
    "\u0149": "'n",
    "\u2018": "'",
    "\u2019": "'",
    "\u201a": ",",
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u2013": "-",
    "\u2014": "-",
    "\u2010": "-",
    "\u2011": "-",
    "\u2212": "-",
    "\u2026": "...",
    "\u2022": "*",
    "\u20ac": "EUR",
    "\u2122": "(TM)",
    "\u00a0": " ",
    "\u202f": " ",
}


@dataclass(frozen=True, slots=True)
class FontFiles:
    regular: Path
    bold: Path


def find_unicode_font() -> FontFiles | None:
    """The bundled DejaVu Sans, else a system copy, else ``None`` (core fonts, Latin-1)."""
    for directory in (_BUNDLED_FONT_DIR, *_SYSTEM_FONT_DIRS):
        regular = directory / "DejaVuSans.ttf"
        bold = directory / "DejaVuSans-Bold.ttf"
        if regular.is_file() and bold.is_file():
            return FontFiles(regular=regular, bold=bold)
    return None


def render_prescription_pdf(
    doc: PrescriptionDocument,
    *,
    fonts: FontFiles | Literal["auto"] | None = "auto",
) -> bytes:
    """Render ``doc`` as PDF bytes.

    ``fonts="auto"`` uses :func:`find_unicode_font`; ``None`` forces the Latin-1 core fonts
    (the path taken on a host with no Unicode font, exercised directly by the tests).
    The body shrinks step by step to keep a long prescription on one page; only when even
    the smallest size overflows does it continue onto further pages, each carrying the
    prescription ID and a page count so no page can be mistaken for a whole prescription.
    """
    chosen = find_unicode_font() if fonts == "auto" else fonts
    for size in _FONT_SIZES:
        pdf = _PrescriptionPDF(doc, chosen, size)
        try:
            pdf.render()
            if pdf.pages_count == 1 or size == _FONT_SIZES[-1]:
                return bytes(pdf.output())
        finally:
            pdf.close_fonts()
    raise AssertionError("unreachable: the last font size always returns")


class _PrescriptionPDF(FPDF):
    """One rendering attempt at one body font size."""

    def __init__(self, doc: PrescriptionDocument, fonts: FontFiles | None, size: float) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self._doc = doc
        self._size = size
        if fonts is not None:
            self.add_font("RxSans", "", str(fonts.regular))
            self.add_font("RxSans", "B", str(fonts.bold))
            self._family = "RxSans"
            font = self.fonts["rxsans"]
            assert isinstance(font, TTFFont)
            cmap: dict[int, Any] = font.cmap
            self._clean: Callable[[str], str] = _cleaner(lambda ch: ord(ch) in cmap)
        else:
            self._family = "Helvetica"
            self._clean = _cleaner(_is_latin1)
        self.set_margins(_MARGIN_MM, _MARGIN_MM, _MARGIN_MM)
        self.set_auto_page_break(auto=True, margin=_FOOTER_MM + 4)
        self.alias_nb_pages()
        self.set_title(self._clean(f"Private prescription {doc.quoted}"))
        self.set_creator("rxroute")
        # A fixed creation date keeps the bytes reproducible for the same prescription.
        self.set_creation_date(datetime.combine(doc.issued_on, time(0, 0), tzinfo=UTC))

    def close_fonts(self) -> None:
        """fpdf2 keeps embedded font files open; close them rather than leak a handle per PDF."""
        for font in self.fonts.values():
            if isinstance(font, TTFFont):
                font.close()

    # --- page furniture ---------------------------------------------------------------

    def header(self) -> None:
        if self.page_no() == 1:
            return
        self.set_font(self._family, "B", 9)
        self.cell(
            0,
            5,
            self._clean(f"Private prescription {self._doc.quoted} (continued)"),
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
        self.ln(2)

    def footer(self) -> None:
        doc = self._doc
        self.set_y(-_FOOTER_MM)
        self.set_draw_color(160, 160, 160)
        self.line(self.l_margin, self.get_y(), self.w - self.r_margin, self.get_y())
        self.ln(1.5)
        self.set_font(self._family, "", 7.5)
        self.set_text_color(60, 60, 60)
        self.cell(
            0,
            4,
            self._clean(
                f"rxroute prescription ID: {doc.prescription_id}"
                f"    Issued {_long_date(doc.issued_on)}"
            ),
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
        if doc.confirm_url:
            self.multi_cell(
                0,
                3.5,
                self._clean(f"Pharmacy: confirm dispensing at {doc.confirm_url}"),
                align=Align.L,
                wrapmode=WrapMode.CHAR,
                new_x=XPos.LMARGIN,
                new_y=YPos.NEXT,
                max_line_height=3.5,
            )
        self.set_y(-_FOOTER_MM + 13.5)
        self.cell(0, 4, f"Page {self.page_no()} of {{nb}}", align=Align.R)
        self.set_text_color(0, 0, 0)

    # --- body -------------------------------------------------------------------------

    def render(self) -> None:
        self.add_page()
        self._header_block()
        self._parties()
        self._items()
        self._notes()
        self._issued_by()

    def _line_h(self, factor: float = 1.0) -> float:
        return self._size * 0.45 * factor

    def _header_block(self) -> None:
        doc = self._doc
        self.set_font(self._family, "B", 18)
        self.cell(0, 9, "Private prescription", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        if doc.copy_notice:
            self.set_font(self._family, "B", self._size + 2)
            self.multi_cell(
                0,
                self._line_h(1.3),
                self._clean(doc.copy_notice),
                align=Align.L,
                new_x=XPos.LMARGIN,
            )
        self.set_font(self._family, "", self._size)
        self.cell(
            0,
            self._line_h(),
            self._clean(
                f"Reference: {doc.reference}    Prescription ID: {doc.prescription_id}"
                if doc.reference
                else f"Prescription ID: {doc.prescription_id}"
            ),
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
        self.cell(
            0,
            self._line_h(),
            f"Date of issue: {_long_date(doc.issued_on)}",
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
        self.ln(2)
        self._rule()

    def _parties(self) -> None:
        doc = self._doc
        prescriber = doc.prescriber
        patient = doc.patient
        pharmacy = doc.pharmacy
        gap = 6.0
        col_w = (self.epw - gap) / 2
        top = self.get_y()

        patient_lines = [
            patient.full_name,
            f"Date of birth: {_long_date(patient.date_of_birth)}",
        ]
        if patient.nhs_number:
            patient_lines.append(f"NHS number: {patient.nhs_number}")
        patient_lines.extend(patient.address_lines)
        patient_lines.extend([patient.town, patient.postcode])

        left_end = self._block(
            "Prescriber",
            [
                prescriber.name,
                f"Registration number: {prescriber.registration_number}",
                prescriber.email,
            ],
            x=self.l_margin,
            y=top,
            w=col_w,
        )
        left_end = self._block("Patient", patient_lines, x=self.l_margin, y=left_end + 2, w=col_w)
        right_end = self._block(
            "Dispensing pharmacy",
            [pharmacy.name, *pharmacy.address_lines, pharmacy.postcode],
            x=self.l_margin + col_w + gap,
            y=top,
            w=col_w,
        )
        self.set_xy(self.l_margin, max(left_end, right_end) + 2)
        self._rule()

    def _block(self, title: str, lines: Iterable[str], *, x: float, y: float, w: float) -> float:
        """A titled block of wrapped lines at (x, y); returns the y below it."""
        self.set_xy(x, y)
        self.set_font(self._family, "B", self._size)
        self.cell(w, self._line_h(1.2), title, new_x=XPos.LEFT, new_y=YPos.NEXT)
        self.set_font(self._family, "", self._size)
        for line in lines:
            text = self._clean(line).strip()
            if not text:
                continue
            self.multi_cell(
                w,
                self._line_h(),
                text,
                align=Align.L,
                new_x=XPos.LEFT,
                new_y=YPos.NEXT,
            )
        end: float = self.get_y()
        return end

    def _items(self) -> None:
        doc = self._doc
        self.ln(1)
        self.set_font(self._family, "B", self._size + 1)
        self.cell(
            0,
            self._line_h(1.3),
            f"Items ({len(doc.items)})",
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
        self.ln(1)
        self.set_font(self._family, "", self._size)
        if not doc.items:
            self.cell(0, self._line_h(), "No items.", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            return
        headings = FontFace(emphasis="BOLD", fill_color=(225, 230, 236))
        with self.table(
            col_widths=(7, 63, 28, 82),
            text_align=(Align.R, Align.L, Align.L, Align.L),
            line_height=self._line_h(),
            headings_style=headings,
            cell_fill_color=(246, 247, 249),
            cell_fill_mode=TableCellFillMode.ROWS,
            padding=min(1.2, self._size * 0.15),
            wrapmode=WrapMode.WORD,
        ) as table:
            heading = table.row()
            for text in ("#", "Medicine", "Quantity", "Directions"):
                heading.cell(text)
            for number, item in enumerate(doc.items, start=1):
                description = self._clean(item.description)
                if item.dmd_code:
                    description += self._clean(f"\ndm+d: {item.dmd_code}")
                row = table.row()
                row.cell(str(number))
                row.cell(description)
                row.cell(self._clean(item.quantity))
                row.cell(self._clean(item.directions))
        self.ln(2)

    def _notes(self) -> None:
        notes = self._clean(self._doc.notes or "").strip()
        if not notes:
            return
        self.set_font(self._family, "B", self._size)
        self.cell(0, self._line_h(1.2), "Notes", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_font(self._family, "", self._size)
        self.multi_cell(
            0,
            self._line_h(),
            notes,
            align=Align.L,
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
        self.ln(2)

    def _issued_by(self) -> None:
        doc = self._doc
        self._rule()
        self.set_font(self._family, "", self._size)
        self.multi_cell(
            0,
            self._line_h(),
            self._clean(
                f"Issued electronically by {doc.prescriber.name} "
                f"(registration number {doc.prescriber.registration_number}) "
                f"on {_long_date(doc.issued_on)}."
            ),
            align=Align.L,
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )

    def _rule(self) -> None:
        self.set_draw_color(120, 120, 120)
        y = self.get_y()
        self.line(self.l_margin, y, self.w - self.r_margin, y)
        self.ln(2)


def _long_date(value: date) -> str:
    return f"{value.day} {value:%B %Y}"


def _is_latin1(ch: str) -> bool:
    return ord(ch) < 256


def _cleaner(supported: Callable[[str], bool]) -> Callable[[str], str]:
    """Make every character printable in the chosen font, never raising.

    Control characters would corrupt the layout (or the PDF text operators), so they go;
    a character the font lacks is transliterated where that keeps it readable (``Ł`` to
    ``L``, ``é`` to ``e`` on a core font) and otherwise shown as ``?`` so the gap is visible.
    """

    def clean(text: str) -> str:
        out: list[str] = []
        for ch in text:
            if ch in "\r\n":
                out.append("\n")
                continue
            if ch == "\t":
                out.append(" ")
                continue
            category = unicodedata.category(ch)
            if category in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
                continue
            if supported(ch):
                out.append(ch)
                continue
            out.append(_fallback(ch, supported))
        return "".join(out)

    return clean


def _fallback(ch: str, supported: Callable[[str], bool]) -> str:
    replacement = _TRANSLITERATIONS.get(ch)
    if replacement is None:
        decomposed = unicodedata.normalize("NFKD", ch)
        replacement = "".join(c for c in decomposed if not unicodedata.combining(c))
    if replacement and all(supported(c) for c in replacement):
        return replacement
    return "?"
