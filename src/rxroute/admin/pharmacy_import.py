"""Importing the accepted-pharmacy list from CSV: a plan first, then all of it or nothing.

Re-uploading an updated list must update the pharmacies already there, not reject them as
duplicates. Each row is matched to a stored pharmacy by a stable key:

1. its ``code`` (the pharmacy's own code, e.g. the NHS ODS code) when the row has one and
   a stored pharmacy has it;
2. else by region, name and postcode (how a list without codes, or the first upload that
   adds codes, finds its pharmacies).

A matched row whose values differ is a *change*; an unmatched row an *addition*; and, when
the admin says the file is the whole list, each active pharmacy of the file's regions that
no row matched is a *deactivation*. The admin sees that plan (:func:`plan_import`) before
anything is written; applying (:func:`apply_plan`) plans again from the same file in the
applying transaction and refuses if the plan's fingerprint differs from the one previewed
(the list changed in between), so what is applied is exactly what was shown.

The file checks and the rejected-row report are shared with the formulary's import
(:mod:`rxroute.admin.csv_import`); the export (:mod:`rxroute.admin.pharmacy_csv`) writes
the same columns, so an export imports back unchanged.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.admin import audit
from rxroute.admin.csv_import import (
    RejectedRow,
    decode_upload,
    header_names,
    parse_rows,
    width_reason,
)
from rxroute.admin.pharmacy_csv import as_text, values_of
from rxroute.admin.service import (
    OPTIONAL_FIELDS,
    PHARMACY_FIELDS,
    PharmacyInput,
    apply_input,
    check_pharmacy,
)
from rxroute.config import Settings
from rxroute.models import AuditAction, Pharmacy

#: Columns a file may leave out: a list without codes is matched by name and postcode, and a
#: stored pharmacy keeps its value of each column the file does not have.
OPTIONAL_COLUMNS = OPTIONAL_FIELDS
#: The fields compared to tell a change from an unchanged row (all the file's columns).
COMPARED = PHARMACY_FIELDS
_BATCH = 1000

NaturalKey = tuple[str, str, str]


@dataclass(frozen=True)
class FieldChange:
    field: str
    before: str
    after: str


@dataclass
class PlannedRow:
    line: int
    checked: PharmacyInput
    #: The stored pharmacy it updates; None for an addition.
    pharmacy_id: uuid.UUID | None = None
    changes: list[FieldChange] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.checked.values["name"]


@dataclass(frozen=True)
class Deactivation:
    pharmacy_id: uuid.UUID
    name: str
    region: str
    postcode: str


@dataclass
class ImportPlan:
    rows: int = 0
    additions: list[PlannedRow] = field(default_factory=list)
    changes: list[PlannedRow] = field(default_factory=list)
    deactivations: list[Deactivation] = field(default_factory=list)
    unchanged: int = 0
    rejected: list[RejectedRow] = field(default_factory=list)
    deactivate_missing: bool = False
    #: The regions of the file's accepted rows (deactivations stay within them).
    regions: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return not self.rejected

    @property
    def empty(self) -> bool:
        return not (self.additions or self.changes or self.deactivations)

    @property
    def fingerprint(self) -> str:
        """What the plan would do, as a hash: equal plans, equal fingerprints."""
        described: list[Any] = [
            ["add", row.checked.values, row.checked.active] for row in self.additions
        ]
        described += [
            ["change", str(row.pharmacy_id), [[c.field, c.before, c.after] for c in row.changes]]
            for row in self.changes
        ]
        described += [["deactivate", str(gone.pharmacy_id)] for gone in self.deactivations]
        text = json.dumps(described, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


# --- planning --------------------------------------------------------------------------


@dataclass
class _Stored:
    """Every stored pharmacy's keys (a few columns each: the list may be long)."""

    by_code: dict[str, uuid.UUID] = field(default_factory=dict)
    by_natural: dict[NaturalKey, uuid.UUID] = field(default_factory=dict)
    code_of: dict[uuid.UUID, str | None] = field(default_factory=dict)
    natural_of: dict[uuid.UUID, NaturalKey] = field(default_factory=dict)
    contact_of: dict[uuid.UUID, tuple[str, int] | None] = field(default_factory=dict)
    name_of: dict[uuid.UUID, str] = field(default_factory=dict)


async def _stored(session: AsyncSession) -> _Stored:
    found = _Stored()
    for pharmacy_id, code, region, name, postcode, contact in await session.execute(
        select(
            Pharmacy.id,
            Pharmacy.code,
            Pharmacy.region,
            Pharmacy.name,
            Pharmacy.postcode,
            Pharmacy.platform_contact_id,
        )
    ):
        natural = (region, name.lower(), postcode)
        found.natural_of[pharmacy_id] = natural
        found.by_natural[natural] = pharmacy_id
        found.code_of[pharmacy_id] = code
        found.name_of[pharmacy_id] = name
        found.contact_of[pharmacy_id] = (region, contact) if contact is not None else None
        if code:
            found.by_code[code] = pharmacy_id
    return found


def _natural(values: dict[str, str]) -> NaturalKey:
    return (values["region"], values["name"].lower(), values["postcode"])


def _match(stored: _Stored, values: dict[str, str]) -> tuple[uuid.UUID | None, str | None]:
    """The stored pharmacy a row updates (or None: an addition), or why it cannot match."""
    code = values["code"]
    if code and code in stored.by_code:
        return stored.by_code[code], None
    by_name = stored.by_natural.get(_natural(values))
    if by_name is None:
        return None, None
    other = stored.code_of.get(by_name)
    if code and other and other != code:
        return None, (
            f"code: the stored pharmacy with this name and postcode has code {other}; "
            "use that code, or change the name or postcode"
        )
    return by_name, None


async def _load(
    session: AsyncSession, ids: list[uuid.UUID], *, for_update: bool
) -> dict[uuid.UUID, Pharmacy]:
    loaded: dict[uuid.UUID, Pharmacy] = {}
    for start in range(0, len(ids), _BATCH):
        statement = select(Pharmacy).where(Pharmacy.id.in_(ids[start : start + _BATCH]))
        if for_update:
            statement = statement.with_for_update()
        for pharmacy in await session.scalars(statement):
            loaded[pharmacy.id] = pharmacy
    return loaded


class _Clashes:
    """Each key (code, name and postcode, contact ID) held by at most one pharmacy after the
    import: the stored pharmacies the file does not touch, then the file's rows in order."""

    def __init__(self, stored: _Stored, touched: set[uuid.UUID]) -> None:
        self.holders: dict[tuple[str, object], str] = {}
        for pharmacy_id, natural in stored.natural_of.items():
            if pharmacy_id in touched:
                continue
            label = f"{stored.name_of[pharmacy_id]!r} in the list"
            self.holders[("name", natural)] = label
            if stored.code_of[pharmacy_id]:
                self.holders[("code", stored.code_of[pharmacy_id])] = label
            if stored.contact_of[pharmacy_id] is not None:
                self.holders[("contact", stored.contact_of[pharmacy_id])] = label

    def clashes(self, checked: PharmacyInput) -> list[str]:
        """Why the row's keys clash with a pharmacy kept or an earlier row (valid keys only)."""
        values, errors = checked.values, checked.errors
        reasons = []
        if not {"name", "region", "postcode"} & set(errors):
            holder = self.holders.get(("name", _natural(values)))
            if holder is not None:
                reasons.append(f"name: same pharmacy (name and postcode) as {holder}")
        if values["code"] and "code" not in errors:
            holder = self.holders.get(("code", values["code"]))
            if holder is not None:
                reasons.append(f"code: already used by {holder}")
        if checked.platform_contact_id is not None and "region" not in errors:
            holder = self.holders.get(("contact", (values["region"], checked.platform_contact_id)))
            if holder is not None:
                reasons.append(f"platform_contact_id: already used by {holder}")
        return reasons

    def claim(self, line: int, checked: PharmacyInput) -> None:
        """The row's keys are taken from here on."""
        values = checked.values
        label = f"line {line}"
        self.holders[("name", _natural(values))] = label
        if values["code"]:
            self.holders[("code", values["code"])] = label
        if checked.platform_contact_id is not None:
            self.holders[("contact", (values["region"], checked.platform_contact_id))] = label


async def plan_import(
    session: AsyncSession,
    settings: Settings,
    data: bytes,
    *,
    deactivate_missing: bool,
    for_update: bool = False,
) -> ImportPlan:
    """What importing ``data`` would do; raises :class:`ImportFileError` for a bad file.

    ``for_update`` locks the stored pharmacies the plan changes (when applying it).
    """
    text = decode_upload(data)
    rows = parse_rows(text, PHARMACY_FIELDS, noun="pharmacies", optional=OPTIONAL_COLUMNS)
    left_out = [name for name in OPTIONAL_COLUMNS if name not in header_names(text)]
    plan = ImportPlan(rows=len(rows), deactivate_missing=deactivate_missing)
    stored = await _stored(session)
    matched: list[tuple[int, dict[str, str], uuid.UUID | None]] = []
    for line, raw in rows:
        wrong_width = width_reason(raw, PHARMACY_FIELDS)
        if wrong_width is not None:
            plan.rejected.append(RejectedRow(line, "", [wrong_width]))
            continue
        preliminary = check_pharmacy(settings, raw)
        if not {"code", "name", "region", "postcode"} & set(preliminary.errors):
            pharmacy_id, problem = _match(stored, preliminary.values)
            if problem is not None:
                name = preliminary.values["name"][:200]
                plan.rejected.append(RejectedRow(line, name, [problem]))
                continue
        else:
            pharmacy_id = None
        matched.append((line, raw, pharmacy_id))
    ids = [pharmacy_id for _, _, pharmacy_id in matched if pharmacy_id is not None]
    seen: dict[uuid.UUID, int] = {}
    loaded = await _load(session, ids, for_update=for_update)
    clashes = _Clashes(stored, set(ids))
    for line, raw, pharmacy_id in matched:
        current = loaded.get(pharmacy_id) if pharmacy_id is not None else None
        if current is not None and left_out:
            kept = values_of(current)
            raw = {**raw, **{name: kept[name] for name in left_out}}
        checked = check_pharmacy(
            settings, raw, active_default=current.active if current is not None else True
        )
        reasons = [f"{name}: {message}" for name, message in checked.errors.items()]
        if pharmacy_id is not None and pharmacy_id in seen:
            reasons.append(f"name: same pharmacy as line {seen[pharmacy_id]}")
        elif pharmacy_id is not None:
            seen[pharmacy_id] = line
        reasons += clashes.clashes(checked)
        if not reasons:
            clashes.claim(line, checked)
        if reasons:
            plan.rejected.append(RejectedRow(line, checked.values["name"][:200], reasons))
            continue
        planned = PlannedRow(line, checked, pharmacy_id)
        plan.regions.add(checked.values["region"])
        if current is None:
            plan.additions.append(planned)
            continue
        before = values_of(current)
        after = {**checked.values, "active": as_text(checked.active)}
        planned.changes = [
            FieldChange(name, before[name], after[name])
            for name in COMPARED
            if before[name] != after[name]
        ]
        if planned.changes:
            plan.changes.append(planned)
        else:
            plan.unchanged += 1
    if deactivate_missing and plan.ok:
        await _plan_deactivations(session, plan, set(seen))
    return plan


async def _plan_deactivations(
    session: AsyncSession, plan: ImportPlan, kept: set[uuid.UUID]
) -> None:
    """Each active pharmacy of the file's regions that no row matched."""
    if not plan.regions:
        return
    for pharmacy_id, name, region, postcode in await session.execute(
        select(Pharmacy.id, Pharmacy.name, Pharmacy.region, Pharmacy.postcode)
        .where(Pharmacy.active.is_(True), Pharmacy.region.in_(sorted(plan.regions)))
        .order_by(Pharmacy.region, Pharmacy.name, Pharmacy.id)
    ):
        if pharmacy_id not in kept:
            plan.deactivations.append(Deactivation(pharmacy_id, name, region, postcode))


# --- applying --------------------------------------------------------------------------


@dataclass(frozen=True)
class Applied:
    added: int
    changed: int
    deactivated: int


async def apply_plan(session: AsyncSession, plan: ImportPlan, *, actor_id: uuid.UUID) -> Applied:
    """Write the plan (made with ``for_update=True`` in this transaction), each pharmacy
    with its audit event; the caller's transaction makes it all or nothing."""
    assert plan.ok
    added = []
    for row in plan.additions:
        pharmacy = Pharmacy()
        apply_input(pharmacy, row.checked)
        session.add(pharmacy)
        added.append(pharmacy)
    ids = [row.pharmacy_id for row in plan.changes if row.pharmacy_id is not None]
    ids += [gone.pharmacy_id for gone in plan.deactivations]
    loaded = await _load(session, ids, for_update=True)
    for row in plan.changes:
        assert row.pharmacy_id is not None
        pharmacy = loaded[row.pharmacy_id]
        before = audit.snapshot(pharmacy)
        apply_input(pharmacy, row.checked)
        audit.record(session, actor_id, pharmacy, before, action=AuditAction.IMPORTED)
    for gone in plan.deactivations:
        pharmacy = loaded[gone.pharmacy_id]
        before = audit.snapshot(pharmacy)
        pharmacy.active = False
        audit.record(
            session,
            actor_id,
            pharmacy,
            before,
            action=AuditAction.DEACTIVATED,
            extra={"reason": {"before": None, "after": "not in the imported list"}},
        )
    # Rows changing keys (a code or contact ID moving between pharmacies) are flushed
    # together; the plan checked that the end state has no clash.
    await session.flush()
    for pharmacy in added:
        audit.record(session, actor_id, pharmacy, None, action=AuditAction.IMPORTED)
    await session.flush()
    return Applied(len(plan.additions), len(plan.changes), len(plan.deactivations))
