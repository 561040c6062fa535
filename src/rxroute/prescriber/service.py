"""What a prescriber's pages read and check: their record, patient search, the written form.

The draft itself is written by :func:`rxroute.prescriptions.writing.create_draft`, the one
way a draft comes to exist; this module only turns the form into its items. Which
prescriptions a prescriber sees is :func:`rxroute.prescriptions.repository.visible_to`'s
rule (the ones they wrote). Services flush at most; the request owns the transaction.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import zip_longest

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from rxroute.formulary.service import LENGTHS
from rxroute.models import FormularyItem, Patient, Prescriber, Prescription, User
from rxroute.prescriptions.repository import visible_to
from rxroute.prescriptions.writing import MAX_ITEMS, DraftItem

NOT_LINKED = (
    "Your account is not linked to a prescriber record, so it cannot write prescriptions. "
    "Ask an admin to link it to your prescriber record."
)
INACTIVE = (
    "Your prescriber record is deactivated, so you cannot write prescriptions. "
    "Ask an admin if this is a mistake."
)

# --- who is writing -----------------------------------------------------------------------


@dataclass(frozen=True)
class Writer:
    """The prescriber a signed-in prescriber user writes as, or why they cannot write."""

    prescriber: Prescriber | None
    blocked: str | None

    @property
    def can_write(self) -> bool:
        return self.prescriber is not None and self.blocked is None


async def writer_of(session: AsyncSession, user: User) -> Writer:
    if user.prescriber_id is None:
        return Writer(None, NOT_LINKED)
    prescriber = await session.get(Prescriber, user.prescriber_id)
    if prescriber is None:
        return Writer(None, NOT_LINKED)
    if not prescriber.active:
        return Writer(prescriber, INACTIVE)
    return Writer(prescriber, None)


async def written_by(session: AsyncSession, user: User, *, limit: int = 100) -> list[Prescription]:
    """The prescriptions the user wrote, newest first, with their patients."""
    statement = (
        visible_to(user)
        .options(selectinload(Prescription.patient), selectinload(Prescription.items))
        .order_by(Prescription.created_at.desc(), Prescription.id)
        .limit(limit)
    )
    return list(await session.scalars(statement))


async def written_one(
    session: AsyncSession, user: User, prescription_id: uuid.UUID
) -> Prescription | None:
    statement = (
        visible_to(user)
        .where(Prescription.id == prescription_id)
        .options(selectinload(Prescription.patient), selectinload(Prescription.items))
    )
    return (await session.scalars(statement)).one_or_none()


# --- patient search -----------------------------------------------------------------------

MAX_QUERY_LENGTH = 320
MIN_NAME_LENGTH = 2
SEARCH_LIMIT = 50
_NHS_NUMBER = re.compile(r"^[0-9]{10}$")


@dataclass(frozen=True)
class PatientSearch:
    query: str
    patients: list[Patient] = field(default_factory=list)
    message: str = ""


def _name_matches(word: str) -> ColumnElement[bool]:
    return or_(
        func.lower(Patient.first_name).startswith(word, autoescape=True),
        func.lower(Patient.last_name).startswith(word, autoescape=True),
    )


async def search_patients(session: AsyncSession, raw: str) -> PatientSearch:
    """By email (exact), NHS number, the platform's external id, or the start of names.

    A name search needs every word to start the first or last name ("jam test" finds
    Jamie Testpatient).
    """
    query = " ".join("".join(ch for ch in raw if ch.isprintable()).split())[:MAX_QUERY_LENGTH]
    if not query:
        return PatientSearch(query="", message="Enter a name, email, NHS number or patient ID.")
    compact = query.replace(" ", "")
    statement = select(Patient)
    if "@" in query:
        statement = statement.where(func.lower(Patient.email) == query.lower())
    elif _NHS_NUMBER.match(compact):
        statement = statement.where(
            or_(Patient.nhs_number == compact, Patient.external_id == query)
        )
    else:
        if len(compact) < MIN_NAME_LENGTH:
            return PatientSearch(
                query=query, message=f"Enter at least {MIN_NAME_LENGTH} letters of a name."
            )
        words = query.lower().split(" ")[:4]
        every_word = and_(*[_name_matches(word) for word in words])
        statement = statement.where(or_(Patient.external_id == query, every_word))
    found = list(
        await session.scalars(
            statement.order_by(
                func.lower(Patient.last_name), func.lower(Patient.first_name), Patient.id
            ).limit(SEARCH_LIMIT + 1)
        )
    )
    if not found:
        return PatientSearch(query=query, message="No patient matches.")
    if len(found) > SEARCH_LIMIT:
        return PatientSearch(
            query=query,
            patients=found[:SEARCH_LIMIT],
            message=f"More than {SEARCH_LIMIT} patients match: the first {SEARCH_LIMIT} "
            "are shown; type more of the name.",
        )
    return PatientSearch(query=query, patients=found)


# --- the form -----------------------------------------------------------------------------


@dataclass
class LineForm:
    """One medicine line as typed, kept as typed to re-render it; errors by field."""

    medicine: str = ""
    quantity: str = ""
    directions: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def blank(self) -> bool:
        return not (self.medicine or self.quantity or self.directions)


def _clean(value: str, limit: int) -> str:
    """Printable text, trimmed; at most a little over ``limit`` kept (to say it is long)."""
    text = "".join(ch for ch in value if ch.isprintable() or ch in "\r\n").strip()
    return text[: limit + 1]


def lines_from(
    medicines: Sequence[str], quantities: Sequence[str], directions: Sequence[str]
) -> tuple[list[LineForm], str | None]:
    """The form's repeated fields, line by line (at most MAX_ITEMS, else an error)."""
    lines = [
        LineForm(
            medicine=_clean(medicine or "", 36),
            quantity=_clean(quantity or "", LENGTHS["default_quantity"]),
            directions=_clean(direction or "", LENGTHS["default_directions"]),
        )
        for medicine, quantity, direction in zip_longest(medicines, quantities, directions)
    ]
    if len(lines) > MAX_ITEMS:
        return lines[:MAX_ITEMS], f"At most {MAX_ITEMS} medicines per prescription."
    return lines or [LineForm()], None


async def active_formulary(session: AsyncSession) -> list[FormularyItem]:
    return list(
        await session.scalars(
            select(FormularyItem)
            .where(FormularyItem.active.is_(True))
            .order_by(func.lower(FormularyItem.description), FormularyItem.id)
        )
    )


def _chosen(line: LineForm, formulary: dict[str, FormularyItem]) -> FormularyItem | None:
    return formulary.get(line.medicine.lower()) if line.medicine else None


def fill_defaults(lines: Sequence[LineForm], formulary: Sequence[FormularyItem]) -> list[int]:
    """Blank quantity or directions of a chosen medicine get its defaults (what the page's
    script does as soon as a medicine is picked). Returns the lines filled in."""
    by_id = {str(item.id): item for item in formulary}
    filled = []
    for index, line in enumerate(lines):
        item = _chosen(line, by_id)
        if item is None:
            continue
        if not line.quantity or not line.directions:
            filled.append(index)
        line.quantity = line.quantity or item.default_quantity
        line.directions = line.directions or item.default_directions
    return filled


def check_lines(
    lines: Sequence[LineForm], formulary: Sequence[FormularyItem]
) -> tuple[list[DraftItem], str | None]:
    """The draft's items, or field errors on the lines (and a message for the whole form).

    Wholly blank lines are skipped. A blank quantity or directions is an error even where
    the formulary has a default: the prescriber sees what is written before it is written
    (the page fills the default in for them to check).
    """
    by_id = {str(item.id): item for item in formulary}
    items: list[DraftItem] = []
    for line in lines:
        line.errors.clear()
        if line.blank:
            continue
        item = _chosen(line, by_id)
        if not line.medicine:
            line.errors["medicine"] = "Choose a medicine from the formulary."
        elif item is None:
            line.errors["medicine"] = (
                "That medicine is not in the formulary (any more): choose another."
            )
        if not line.quantity:
            line.errors["quantity"] = "Enter the quantity."
        elif len(line.quantity) > LENGTHS["default_quantity"]:
            line.errors["quantity"] = f"At most {LENGTHS['default_quantity']} characters."
        if not line.directions:
            line.errors["directions"] = "Enter the directions."
        elif len(line.directions) > LENGTHS["default_directions"]:
            line.errors["directions"] = f"At most {LENGTHS['default_directions']} characters."
        if item is not None and not line.errors:
            items.append(
                DraftItem(
                    description=item.description,
                    quantity=line.quantity,
                    directions=line.directions,
                    dmd_vpid=item.dmd_vpid,
                    dmd_apid=item.dmd_apid,
                )
            )
    if any(line.errors for line in lines):
        return [], "Check the medicines marked below."
    if not items:
        return [], "Add at least one medicine."
    return items, None
