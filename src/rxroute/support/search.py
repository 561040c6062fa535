"""Support's prescription search: by ID, part of one, the platform's ID, the patient, the
pharmacy, the status and when it was written. Reads only; nothing here writes.

Every field narrows the search (they are combined with AND) and each one reads an index at
volume (migrations 0013 and 0016; checked by ``tests/db/test_query_plans.py``):

* rxroute's ID, whole or its first characters (at least :data:`MIN_ID_PREFIX` hex digits,
  dashes ignored): the primary key, the prefix read as a range of UUIDs. The short reference
  a pharmacy and the patient see (``RX-1A2B-3C4D``) is the ID's beginning, so it is found the
  same way;
* the platform's prescription ID (``SRX...``): the current one on the prescription, and every
  earlier delivery's (``deliveries.provider_ref``), so a re-routed prescription is found by
  the ID the first pharmacy was given;
* the patient's email (case-insensitive, whole), part of their name (each word, anywhere in
  "first last", at least :data:`MIN_TEXT` characters: trigram index), date of birth;
* part of the pharmacy's name, town or postcode; the status; a range of creation dates, in
  the display time zone.

What support typed is PHI (a name, an email, a date of birth): it is never logged, and the
pages take it by POST so it lands in no URL.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from sqlalchemy import ARRAY, ColumnElement, Select, and_, any_, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from rxroute.db.planning import in_index_order, plan_with_these_values
from rxroute.models import Delivery, Patient, Pharmacy, Prescription
from rxroute.prescriptions.lifecycle import Status
from rxroute.prescriptions.reference import id_prefix_of
from rxroute.timezones import ZoneSource, zone_of

MAX_QUERY_LENGTH = 320
MAX_TEXT_LENGTH = 100
#: Results shown; one more is read to say "the first 50 are shown".
SEARCH_LIMIT = 50
#: Fewer hex digits than this match too many prescriptions to be an ID.
MIN_ID_PREFIX = 6
#: Trigram search needs three characters to read its index.
MIN_TEXT = 3
#: Up to this many patients matching the patient fields are passed on by id; more, and the
#: search walks prescriptions newest first instead (see :func:`_of_patients`).
PATIENT_IDS = 500

_PLATFORM_ID = re.compile(r"^SRX[A-Z0-9]{1,61}$")
_HEX = re.compile(r"^[0-9a-f]+$")
_EMAILISH = re.compile(r"^[^@\s]+@[^@\s]+$")

ID_HINT = (
    "Give rxroute's prescription ID (or at least its first 6 characters), the platform's ID "
    "(SRX…) or the patient's email address."
)


@dataclass(frozen=True)
class Criteria:
    """A search, cleaned: what each field means is decided in :func:`parse_criteria`."""

    #: One of "", "uuid", "id_prefix", "platform_id", "email".
    kind: str = ""
    value: str = ""
    name: str = ""
    date_of_birth: date | None = None
    pharmacy: str = ""
    status: str = ""
    created_from: date | None = None
    created_to: date | None = None

    @property
    def empty(self) -> bool:
        return not (
            self.kind
            or self.name
            or self.date_of_birth
            or self.pharmacy
            or self.status
            or self.created_from
            or self.created_to
        )


@dataclass(frozen=True)
class SearchResult:
    criteria: Criteria
    prescriptions: list[Prescription] = field(default_factory=list)
    #: More matched than are shown.
    more: bool = False
    message: str = ""
    #: Field name -> what is wrong with it (the search did not run).
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.criteria.kind


def _printable(raw: str, limit: int) -> str:
    return "".join(ch for ch in raw if ch.isprintable()).strip()[:limit]


def classify_query(raw: str) -> tuple[str, str]:
    """(kind, normalised value) of the ID-or-email box; ("unknown", text) if neither."""
    query = _printable(raw, MAX_QUERY_LENGTH)
    if not query:
        return "", ""
    try:
        return "uuid", str(uuid.UUID(query))
    except ValueError:
        pass
    if _PLATFORM_ID.match(query.upper()):
        return "platform_id", query.upper()
    if _EMAILISH.match(query):
        return "email", query.lower()
    referenced = id_prefix_of(query)
    if referenced is not None:
        return "id_prefix", referenced
    compact = query.lower().replace("-", "")
    if _HEX.match(compact) and MIN_ID_PREFIX <= len(compact) < 32:
        return "id_prefix", compact
    return "unknown", query


def _date(raw: str, label: str, errors: dict[str, str], key: str) -> date | None:
    text = raw.strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        errors[key] = f"{label}: give a date as YYYY-MM-DD"
        return None


def parse_criteria(form: Mapping[str, str]) -> tuple[Criteria, dict[str, str]]:
    """The form's fields as :class:`Criteria`, and a message per field that cannot be used."""
    errors: dict[str, str] = {}
    kind, value = classify_query(form.get("q", ""))
    if kind == "unknown":
        errors["q"] = "q: " + ID_HINT
        kind, value = "", ""
    typed = _printable(form.get("name", ""), MAX_TEXT_LENGTH).lower()
    # "Lovelace, Ada": punctuation between words is not part of a name (hyphens and
    # apostrophes are: Smith-Jones, O'Brien).
    name = " ".join("".join(ch if ch.isalnum() or ch in "-'" else " " for ch in typed).split())
    if name and len(name.replace(" ", "")) < MIN_TEXT:
        errors["name"] = f"name: give at least {MIN_TEXT} letters of the name"
    pharmacy = " ".join(_printable(form.get("pharmacy", ""), MAX_TEXT_LENGTH).lower().split())
    if pharmacy and len(pharmacy) < MIN_TEXT:
        errors["pharmacy"] = f"pharmacy: give at least {MIN_TEXT} characters"
    status = form.get("status", "").strip().lower()
    if status and status not in {s.value for s in Status}:
        errors["status"] = "status: choose one from the list"
    born = _date(form.get("dob", ""), "dob", errors, "dob")
    if born is not None and born > date.today():
        errors["dob"] = "dob: a date of birth cannot be in the future"
    start = _date(form.get("created_from", ""), "created_from", errors, "created_from")
    end = _date(form.get("created_to", ""), "created_to", errors, "created_to")
    if start and end and start > end:
        errors["created_to"] = "created_to: must be on or after the start date"
    criteria = Criteria(
        kind=kind,
        value=value,
        name=name,
        date_of_birth=born,
        pharmacy=pharmacy,
        status=status,
        created_from=start,
        created_to=end,
    )
    return criteria, errors


def _contains(text: str) -> str:
    """A LIKE pattern finding ``text`` anywhere (its own ``%``, ``_`` and ``\\`` literal)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _id_range(prefix: str) -> tuple[uuid.UUID, uuid.UUID]:
    return uuid.UUID(prefix.ljust(32, "0")), uuid.UUID(prefix.ljust(32, "f"))


async def _platform_matches(session: AsyncSession, value: str) -> set[uuid.UUID]:
    """Prescriptions the platform knows by ``value``, now or on an earlier delivery."""
    found = set(
        await session.scalars(
            select(Prescription.id).where(Prescription.provider_prescription_id == value)
        )
    )
    found.update(
        await session.scalars(
            select(Delivery.prescription_id).where(Delivery.provider_ref == value)
        )
    )
    return found


async def _of_patients(
    session: AsyncSession, patient: list[ColumnElement[bool]], name_words: list[str]
) -> tuple[ColumnElement[bool], bool]:
    """Prescriptions of the patients ``patient`` selects, in a form PostgreSQL plans well.

    Given the patients as a subquery, PostgreSQL picks by its estimate of how many match,
    and a trigram estimate is often far out. So the patients are read first, by their own
    indexes, up to :data:`PATIENT_IDS` of them:

    * **A few** (a name, an email, a date of birth): handed over as an array, so PostgreSQL
      knows how many there are, and either reads each one's newest prescriptions or walks
      the newest prescriptions checking each against a hash of the array.
    * **More** (a common surname or a fragment: 1% of patients and up): reading every
      match would cost a heap visit and a recheck each, 2 to 3 ms for a few thousand. The
      search walks the newest prescriptions instead, checking the name words against the
      copy of the patient's name each prescription carries (migration 0019): the more
      common the name, the sooner the page is full. Any other patient field (an email, a
      date of birth) is checked by subquery on the few rows the name lets through. The
      second value says so: the statement must then be run :func:`in_index_order`.
    """
    ids = list(await session.scalars(select(Patient.id).where(*patient).limit(PATIENT_IDS + 1)))
    if len(ids) > PATIENT_IDS:
        walk = [Prescription.patient_name_search.like(_contains(word)) for word in name_words]
        if len(walk) < len(patient):  # fields other than the name words
            walk.append(Prescription.patient_id.in_(select(Patient.id).where(*patient)))
        return and_(*walk), True
    await plan_with_these_values(session)  # a plan made for this many ids
    by_ids = Prescription.patient_id == any_(
        bindparam("patient_ids", ids, type_=ARRAY(Prescription.patient_id.type))
    )
    return by_ids, False


def _day_start(day: date, zone: ZoneSource) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone_of(zone))


async def _conditions(
    session: AsyncSession, criteria: Criteria, zone: ZoneSource
) -> tuple[list[ColumnElement[bool]], bool]:
    """The WHERE clause, and whether the patient fields alone select it by walking
    prescriptions newest first (see :func:`_of_patients`)."""
    where: list[ColumnElement[bool]] = []
    walk = False
    if criteria.kind == "uuid":
        where.append(Prescription.id == uuid.UUID(criteria.value))
    elif criteria.kind == "id_prefix":
        low, high = _id_range(criteria.value)
        where.append(Prescription.id.between(low, high))
    elif criteria.kind == "platform_id":
        where.append(Prescription.id.in_(await _platform_matches(session, criteria.value)))
    patient: list[ColumnElement[bool]] = []
    if criteria.kind == "email":
        patient.append(func.lower(Patient.email) == criteria.value)
    name_words = criteria.name.split()
    patient.extend(Patient.name_search.like(_contains(word)) for word in name_words)
    if criteria.date_of_birth is not None:
        patient.append(Patient.date_of_birth == criteria.date_of_birth)
    if patient:
        by_patient, walk = await _of_patients(session, patient, name_words)
        where.append(by_patient)
    if criteria.pharmacy:
        words = [Pharmacy.search_text.like(_contains(w)) for w in criteria.pharmacy.split()]
        where.append(Prescription.pharmacy_id.in_(select(Pharmacy.id).where(*words)))
    if criteria.status:
        where.append(Prescription.status == criteria.status)
    if criteria.created_from is not None:
        where.append(Prescription.created_at >= _day_start(criteria.created_from, zone))
    if criteria.created_to is not None:
        end = _day_start(criteria.created_to + timedelta(days=1), zone)
        where.append(Prescription.created_at < end)
    # Beside a pharmacy, a status or dates, a common name leaves the index to PostgreSQL.
    return where, walk and len(where) == 1


def _statement(where: list[ColumnElement[bool]]) -> Select[Prescription]:
    return (
        select(Prescription)
        .options(selectinload(Prescription.patient), selectinload(Prescription.pharmacy))
        .where(*where)
        .order_by(Prescription.created_at.desc(), Prescription.id.desc())
        .limit(SEARCH_LIMIT + 1)
    )


async def run(
    session: AsyncSession,
    criteria: Criteria,
    zone: ZoneSource,
    errors: Mapping[str, str] | None = None,
) -> SearchResult:
    """The newest :data:`SEARCH_LIMIT` prescriptions matching every field given."""
    if errors:
        return SearchResult(criteria=criteria, errors=dict(errors))
    if criteria.empty:
        return SearchResult(
            criteria=criteria, message="Fill in at least one field to search. " + ID_HINT
        )
    where, walk = await _conditions(session, criteria, zone)
    async with in_index_order(session) if walk else nullcontext():
        found = list(await session.scalars(_statement(where)))
    more = len(found) > SEARCH_LIMIT
    shown = found[:SEARCH_LIMIT]
    if not shown:
        message = "No prescription matches."
    elif more:
        message = f"The newest {SEARCH_LIMIT} matches are shown: add a field to narrow it."
    else:
        message = f"{len(shown)} found."
    return SearchResult(criteria=criteria, prescriptions=shown, more=more, message=message)


async def search(session: AsyncSession, raw: str, zone: ZoneSource = "UTC") -> SearchResult:
    """The ID-or-email box alone (what the console's quick search and older callers send)."""
    criteria, errors = parse_criteria({"q": raw})
    return await run(session, criteria, zone, errors)
