"""The send common path's read: the prescription and all a channel needs, as plain rows.

The channels prepare from ORM objects (one ``prepare`` per channel, shared with the general
path), but loading them through the ORM cost more worker CPU than anything else in a send:
five joined entities and their collection went through SQLAlchemy's execution, result and
identity-map machinery, about 120 columns deep, for every send. Here the same rows come
back from one plain psycopg statement, and each is put into the instance's dictionary as
the ORM's own loader does and marked as loaded (detached, with its identity), so a
relationship nobody loaded still raises (``lazy="raise"``) as before. Only the entities a
channel looks up with ``session.get`` (:data:`LOOKED_UP`: the delivery's pharmacy, the
prescription's clinic) join the session, which never runs SQL, so those lookups find them
in its identity map. The others stay detached: ``Session.add`` cascades over every
relationship of the mapper, and adding all seven cost a send more worker CPU than the
statement that read them (about 150 microseconds of the 250 the attach took).

Every mapped column of every entity is read, the statement being built from the mappers
themselves, so a column added to a model is read here too (no attribute is silently left
unset). The prescription's items come as one array per column, in ``position`` order, so
each value keeps its type. The statement also says whether any delivery waits to be
withdrawn and which event endpoints may want an event (see :mod:`.common_path`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, inspect, literal, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import instance_dict, set_committed_value

from rxroute.events.endpoints import ENDPOINT_COLUMNS, ENDPOINT_ROWS, Candidate
from rxroute.models import (
    Clinic,
    Delivery,
    Patient,
    Pharmacy,
    Prescriber,
    Prescription,
    PrescriptionItem,
)


def _keys(model: type[Any]) -> tuple[str, ...]:
    """The model's mapped column attributes (each named as its column), deferred ones left
    out as the ORM leaves them (a prescription's copy of its patient's name)."""
    keys = []
    for attribute in inspect(model).column_attrs:
        if attribute.deferred:
            continue
        (column,) = attribute.columns
        assert column.name == attribute.key, f"{model.__name__}.{attribute.key}"
        keys.append(attribute.key)
    return tuple(keys)


#: (alias, model, the join's condition) in the order their columns come back.
_ENTITIES: tuple[tuple[str, type[Any], str], ...] = (
    ("p", Prescription, ""),
    ("d", Delivery, "d.id = p.current_delivery_id"),
    ("ph", Pharmacy, "ph.id = d.pharmacy_id"),
    ("c", Clinic, "c.id = p.clinic_id"),
    ("pt", Patient, "pt.id = p.patient_id"),
    ("pr", Prescriber, "pr.id = p.prescriber_id"),
)
_KEYS = {model: _keys(model) for _alias, model, _on in _ENTITIES}
_ITEM_KEYS = _keys(PrescriptionItem)


def _table(model: type[Any]) -> str:
    return str(model.__table__.name)


def _endpoints() -> str:
    """The rows events.endpoints.wanted_endpoints chooses from, as one JSON column."""
    candidates = select(
        func.coalesce(func.jsonb_agg(func.jsonb_build_array(*ENDPOINT_COLUMNS)), literal("[]"))
    ).where(ENDPOINT_ROWS)
    compiled = candidates.compile(
        dialect=postgresql.psycopg.dialect(),  # type: ignore[no-untyped-call]
        compile_kwargs={"literal_binds": True},
    )
    return "(" + " ".join(str(compiled).split()) + ")"


def _columns() -> list[str]:
    items, deliveries = _table(PrescriptionItem), _table(Delivery)
    columns = [f"{alias}.{key}" for alias, model, _on in _ENTITIES for key in _KEYS[model]]
    columns += [
        f"ARRAY(SELECT i.{key} FROM {items} i WHERE i.prescription_id = p.id "  # noqa: S608
        "ORDER BY i.position)"
        for key in _ITEM_KEYS
    ]
    columns.append(
        f"EXISTS (SELECT 1 FROM {deliveries} o WHERE o.prescription_id = p.id "  # noqa: S608
        "AND o.needs_withdrawal)"
    )
    columns.append(_endpoints())
    return columns


_COLUMNS = _columns()
#: How many columns :data:`LOAD` returns.
WIDTH = len(_COLUMNS)


def select_for(prescription_id: str) -> str:
    """The load of the prescription whose id is the SQL expression ``prescription_id``.

    Names only (tables and columns, from the mappers, and the caller's expression, which
    is a placeholder or SQL of ours): no input is ever formatted in.
    """
    joins = [f"LEFT JOIN {_table(model)} {alias} ON {on}" for alias, model, on in _ENTITIES if on]
    parts = ["SELECT", ", ".join(_COLUMNS), "FROM", _table(Prescription), "p", *joins]
    return " ".join([*parts, f"WHERE p.id = {prescription_id}"])


#: Built once, from the mappers; short aliases keep it within psycopg's parse cache.
LOAD = select_for("%(prescription_id)s")


@dataclass
class SendGraph:
    """The loaded rows; holds them (the session's identity map is weak)."""

    prescription: Prescription
    delivery: Delivery | None
    pharmacy: Pharmacy | None
    clinic: Clinic | None
    items: list[PrescriptionItem]
    withdrawals: bool
    endpoints: list[Candidate]


#: The entities a channel's ``prepare`` looks up with ``session.get``: in the session.
LOOKED_UP: frozenset[type[Any]] = frozenset({Pharmacy, Clinic})


def _attached(
    session: AsyncSession, model: type[Any], keys: Sequence[str], values: Sequence[Any]
) -> Any:
    """An instance of ``model`` holding ``values`` as loaded state: persistent in
    ``session`` if a channel looks it up there (:data:`LOOKED_UP`), else detached."""
    instance = inspect(model).class_manager.new_instance()
    instance_dict(instance).update(zip(keys, values, strict=True))
    make_transient_to_detached(instance)
    if model in LOOKED_UP:
        session.add(instance)
    return instance


def attach(session: AsyncSession, row: Sequence[Any]) -> SendGraph:
    """The graph of one :data:`LOAD` row as the ORM would have loaded it, the entities
    in :data:`LOOKED_UP` in ``session``."""
    found: dict[type[Any], Any] = {}
    start = 0
    for _alias, model, _on in _ENTITIES:
        keys = _KEYS[model]
        values = row[start : start + len(keys)]
        start += len(keys)
        # A LEFT JOIN that found nothing: every column NULL, the primary key too.
        found[model] = (
            None if values[keys.index("id")] is None else _attached(session, model, keys, values)
        )
    arrays = row[start : start + len(_ITEM_KEYS)]
    items = [
        _attached(session, PrescriptionItem, _ITEM_KEYS, values)
        for values in zip(*arrays, strict=True)
    ]
    withdrawals, endpoints = row[start + len(_ITEM_KEYS) :]
    prescription: Prescription = found[Prescription]
    set_committed_value(prescription, "items", items)
    set_committed_value(prescription, "patient", found[Patient])
    set_committed_value(prescription, "prescriber", found[Prescriber])
    rows = endpoints if isinstance(endpoints, list) else json.loads(endpoints)
    return SendGraph(
        prescription=prescription,
        delivery=found[Delivery],
        pharmacy=found[Pharmacy],
        clinic=found[Clinic],
        items=items,
        withdrawals=bool(withdrawals),
        endpoints=[(uuid.UUID(r[0]), r[1], r[2], r[3]) for r in rows],
    )
