"""CSV imports on the admin pages: reading the upload, the file checks, the report.

Shared by every list an admin imports (accepted pharmacies, the formulary), so each import
refuses the same bad files with the same words and reports rejected rows the same way: by
line number, each reason starting with the column it is about. Every import is
all-or-nothing: its service checks every row first and adds none if any is rejected.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

from fastapi import Request
from starlette.datastructures import UploadFile

MAX_IMPORT_BYTES = 2 * 1024 * 1024
MAX_IMPORT_ROWS = 20_000
#: Rejected rows listed in full; beyond this the report says how many more.
MAX_REPORTED_ROWS = 500
#: Multipart overhead allowed on top of the CSV size cap before the body is refused unread.
UPLOAD_SLACK = 64 * 1024
#: What a page says when the declared body is over the cap (before reading it).
TOO_LARGE = (
    f"The file is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB; "
    "split it into smaller files. Nothing was imported."
)
#: The key :func:`parse_rows` puts in a row whose width differs from the header's.
WIDTH = "__width__"
#: ...and the header's width beside it.
HEADER_WIDTH = "__header_width__"


class ImportFileError(ValueError):
    """The file as a whole cannot be read; nothing was imported."""


@dataclass(frozen=True)
class RejectedRow:
    line: int
    name: str
    reasons: list[str]


@dataclass
class ImportReport:
    rows: int = 0
    imported: int = 0
    rejected: list[RejectedRow] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.rejected


def write_csv(fields: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A CSV file (header, then rows) that :func:`parse_rows` reads back as written.

    UTF-8 with a byte-order mark, so Excel opens names with accents correctly; every value
    is text (``None`` as empty)."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(fields)
    for row in rows:
        writer.writerow(["" if value is None else value for value in row])
    return "\ufeff" + out.getvalue()


def decode_upload(data: bytes) -> str:
    if not data.strip():
        raise ImportFileError("The file is empty.")
    if len(data) > MAX_IMPORT_BYTES:
        raise ImportFileError(
            f"The file is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB; split it into "
            "smaller files."
        )
    if data.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):
        raise ImportFileError(
            "This looks like a spreadsheet file (.xlsx/.xls), not CSV; save it as "
            "'CSV UTF-8' and upload that."
        )
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ImportFileError("The file is UTF-16; save it as 'CSV UTF-8' and upload again.")
    if b"\x00" in data:
        raise ImportFileError("The file contains binary data (NUL bytes); it is not a CSV file.")
    try:
        # utf-8-sig drops the byte-order mark Excel puts at the start.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ImportFileError(
            f"Line {line} is not valid UTF-8 text; save the file as 'CSV UTF-8' and upload again."
        ) from exc


def _semicolons(header: list[str], fields: Sequence[str]) -> bool:
    """Whether the header is the column names separated by semicolons (one cell holding
    them all), as Excel saves "CSV" where the decimal separator is a comma."""
    joined = ",".join(header)
    if ";" not in joined:
        return False
    names = {cell.strip().strip('"').lower() for cell in joined.split(";")}
    return len(names & set(fields)) >= 2


def _check_header(
    header: list[str] | None, fields: Sequence[str], optional: Sequence[str] = ()
) -> list[str]:
    if header is None or not any(cell.strip() for cell in header):
        raise ImportFileError("The file is empty: the first line must name the columns.")
    if _semicolons(header, fields):
        raise ImportFileError(
            "The columns are separated by semicolons (;), not commas: this is how Excel "
            "saves CSV in some languages. Save it as 'CSV UTF-8 (Comma delimited)', or "
            "replace the semicolons with commas, and upload it again."
        )
    columns = [cell.strip().lower() for cell in header]
    missing = [name for name in fields if name not in columns and name not in optional]
    unknown = [name for name in columns if name not in fields]
    duplicated = sorted({name for name in columns if columns.count(name) > 1})
    problems = []
    if missing:
        problems.append(f"missing columns: {', '.join(missing)}")
    if unknown:
        shown = ", ".join(repr(name[:40]) for name in unknown[:10])
        problems.append(f"unknown columns: {shown}")
    if duplicated:
        problems.append(f"repeated columns: {', '.join(duplicated)}")
    if problems:
        raise ImportFileError(
            f"The first line must be the column names {','.join(fields)} ({'; '.join(problems)})."
        )
    return columns


def header_names(text: str) -> set[str]:
    """The column names the file's first line gives (as :func:`parse_rows` reads them), so an
    import can tell a column left out from a cell left empty."""
    try:
        header = next(csv.reader(io.StringIO(text, newline=""), strict=True), None)
    except csv.Error:
        return set()
    return {cell.strip().lower() for cell in header or []}


def parse_rows(
    text: str, fields: Sequence[str], *, noun: str, optional: Sequence[str] = ()
) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) for each data row; raises :class:`ImportFileError` on bad files.

    The header must name exactly ``fields`` (any order), except that the ``optional`` ones
    may be left out (their cells then read as empty). A row of another width comes back as
    ``{WIDTH: "<its width>"}`` for the service to reject with :func:`width_reason`. ``noun``
    names what the rows are, for "the file has the column names but no <noun>". A file
    separated by semicolons is refused with a message that says so.
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise ImportFileError(f"Line 1 is not valid CSV: {exc}.") from exc
    columns = _check_header(header, fields, optional)
    absent = {name: "" for name in optional if name not in columns}
    rows: list[tuple[int, dict[str, str]]] = []
    line = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise ImportFileError(
                f"Line {line} is not valid CSV ({exc}); check its quotes. Nothing was imported."
            ) from exc
        start, line = line, reader.line_num + 1
        if not any(cell.strip() for cell in cells):
            continue
        if len(rows) >= MAX_IMPORT_ROWS:
            raise ImportFileError(
                f"The file has more than {MAX_IMPORT_ROWS:,} rows; split it into smaller files."
            )
        if len(cells) != len(columns):
            rows.append((start, {WIDTH: f"{len(cells)}", HEADER_WIDTH: f"{len(columns)}"}))
            continue
        rows.append((start, {**absent, **dict(zip(columns, cells, strict=True))}))
    if not rows:
        raise ImportFileError(f"The file has the column names but no {noun}.")
    return rows


def width_reason(raw: dict[str, str], fields: Sequence[str]) -> str | None:
    """The reason a row of the wrong width is rejected, or None for a row of the right one."""
    if WIDTH not in raw:
        return None
    return (
        f"has {raw[WIDTH]} columns, the header has {raw.get(HEADER_WIDTH, len(fields))} "
        "(a comma inside a value needs quotes)"
    )


async def uploaded_file(request: Request) -> tuple[bytes, str] | None:
    """The uploaded file's bytes (at most one more than the cap) and name, or None.

    The router's CSRF guard has already read the form, refusing a body over the cap unread.
    """
    form = await request.form(max_files=1, max_fields=5)
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return None
    return await upload.read(MAX_IMPORT_BYTES + 1), upload.filename[:200]
