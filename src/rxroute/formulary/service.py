"""Formulary rules: what a line must hold, the all-or-nothing CSV import, deactivation.

Services add and flush; the request (or the seed's transaction) owns the commit. Every admin
change is recorded in the audit trail (:mod:`rxroute.admin.audit`) in the same transaction.

Lines are never edited in place: a prescription copies the description, codes, quantity and
directions it was written with, and an admin changes a line by deactivating it and importing
the corrected one. The description is unique (case-insensitive) among active lines - it is
what the prescriber reads and picks - and a partial unique index in the database holds that
rule even against two imports at once; the import also takes a table lock first, so the
second of two concurrent imports sees the first's lines and reports them as duplicates
instead of failing on the index.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.admin import audit
from rxroute.admin.csv_import import (
    ImportReport,
    RejectedRow,
    decode_upload,
    parse_rows,
    width_reason,
)
from rxroute.admin.service import parse_active
from rxroute.models import AuditAction, FormularyItem

#: The CSV columns, in the order the sample file and the page show them.
FIELDS = (
    "description",
    "dmd_vpid",
    "dmd_apid",
    "default_quantity",
    "default_directions",
    "active",
)
#: The same limits as a prescription item's columns (a line is copied onto one).
LENGTHS = {"description": 500, "default_quantity": 100, "default_directions": 1000}
_REQUIRED = {
    "description": "Enter the medicine's description.",
    "default_quantity": "Enter the default quantity (e.g. 1 pen).",
    "default_directions": "Enter the default directions.",
}
#: A dm+d identifier is a SNOMED CT concept id: 6 to 18 digits.
_DMD_ID = re.compile(r"^[0-9]{6,18}$")


def _clean(value: object) -> str:
    """Printable text with runs of whitespace made one space (a pasted tab or NUL goes)."""
    text_value = "" if value is None else str(value)
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text_value).split())


@dataclass
class LineInput:
    """A formulary line as typed (a CSV row), cleaned and checked."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    active: bool = True

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def key(self) -> str:
        """What must be unique among active lines."""
        return self.values["description"].lower()


def check_line(raw: Mapping[str, object]) -> LineInput:
    values = {name: _clean(raw.get(name)) for name in FIELDS}
    result = LineInput(values=values)
    errors = result.errors
    for name, message in _REQUIRED.items():
        if not values[name]:
            errors[name] = message
    for name, limit in LENGTHS.items():
        if len(values[name]) > limit and name not in errors:
            errors[name] = f"At most {limit} characters."
    for name in ("dmd_vpid", "dmd_apid"):
        code = values[name].replace(" ", "")
        values[name] = code
        if code and not _DMD_ID.match(code):
            label = "VPID" if name == "dmd_vpid" else "APID"
            errors[name] = f"A dm+d {label} is 6 to 18 digits."
    if values["dmd_apid"] and not values["dmd_vpid"] and "dmd_apid" not in errors:
        errors["dmd_vpid"] = "An APID belongs to a VPID: enter the VPID too."
    active = parse_active(values["active"])
    if active is None:
        errors["active"] = "Use yes or no (or true/false, 1/0)."
    else:
        result.active = active
    return result


def new_item(checked: LineInput) -> FormularyItem:
    values = checked.values
    return FormularyItem(
        description=values["description"],
        dmd_vpid=values["dmd_vpid"] or None,
        dmd_apid=values["dmd_apid"] or None,
        default_quantity=values["default_quantity"],
        default_directions=values["default_directions"],
        active=checked.active,
    )


def check_file(data: bytes, active_descriptions: set[str]) -> tuple[ImportReport, list[LineInput]]:
    """Every row checked against the rules, each other and the active lines' descriptions
    (lowercased). Raises :class:`~rxroute.admin.csv_import.ImportFileError` on a bad file."""
    rows = parse_rows(decode_upload(data), FIELDS, noun="formulary lines")
    report = ImportReport(rows=len(rows))
    accepted: list[LineInput] = []
    seen: dict[str, int] = {}
    for line, raw in rows:
        wrong_width = width_reason(raw, FIELDS)
        if wrong_width is not None:
            report.rejected.append(RejectedRow(line, "", [wrong_width]))
            continue
        checked = check_line(raw)
        reasons = [f"{name}: {message}" for name, message in checked.errors.items()]
        if checked.active and "description" not in checked.errors:
            if checked.key in active_descriptions:
                reasons.append(
                    "description: already in the formulary (deactivate that line first to "
                    "replace it)"
                )
            elif checked.key in seen:
                reasons.append(f"description: same medicine as line {seen[checked.key]}")
            else:
                seen[checked.key] = line
        if reasons:
            name = checked.values["description"][:200]
            report.rejected.append(RejectedRow(line, name, reasons))
        else:
            accepted.append(checked)
    return report, accepted


async def import_lines(session: AsyncSession, data: bytes, *, actor_id: uuid.UUID) -> ImportReport:
    """Check every row, then add all of them, or none if any row is rejected.

    Each added line gets its own "imported" audit event.
    """
    # Writers wait for each other here (readers do not): the checks below then see every
    # line a concurrent import committed.
    await session.execute(text("LOCK TABLE formulary_items IN EXCLUSIVE MODE"))
    active = set(
        await session.scalars(
            select(func.lower(FormularyItem.description)).where(FormularyItem.active.is_(True))
        )
    )
    report, accepted = check_file(data, active)
    if not report.ok:
        return report
    items = [new_item(checked) for checked in accepted]
    session.add_all(items)
    await session.flush()
    for item in items:
        audit.record(session, actor_id, item, None, action=AuditAction.IMPORTED)
    await session.flush()
    report.imported = len(items)
    return report


async def deactivate(session: AsyncSession, item: FormularyItem, *, actor_id: uuid.UUID) -> bool:
    """Take a line off the prescribers' list; False (and no audit event) if it already was.

    Prescriptions already written keep what they copied from it.
    """
    if not item.active:
        return False
    before = audit.snapshot(item)
    item.active = False
    audit.record(session, actor_id, item, before, action=AuditAction.DEACTIVATED)
    await session.flush()
    return True


async def get_line(
    session: AsyncSession, item_id: uuid.UUID, *, for_update: bool = False
) -> FormularyItem | None:
    statement = select(FormularyItem).where(FormularyItem.id == item_id)
    if for_update:
        statement = statement.with_for_update()
    return (await session.scalars(statement)).one_or_none()


async def list_lines(session: AsyncSession, *, active_only: bool = False) -> list[FormularyItem]:
    """Active lines first, each group by description."""
    statement = select(FormularyItem)
    if active_only:
        statement = statement.where(FormularyItem.active.is_(True))
    statement = statement.order_by(
        FormularyItem.active.desc(), func.lower(FormularyItem.description), FormularyItem.id
    )
    return list(await session.scalars(statement))
