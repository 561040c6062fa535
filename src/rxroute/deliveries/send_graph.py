"""The send common path's read: the prescription and all a channel needs, as plain rows.

The channels prepare from ORM objects (one ``prepare`` per channel, shared with the general
path), but loading them through the ORM cost more worker CPU than anything else in a send:
five joined entities and their collection went through SQLAlchemy's execution, result and
identity-map machinery, about 120 columns deep, for every send. Here the same rows come
back from one plain psycopg statement, and each is put into the instance's dictionary as
the ORM's own loader does and marked as loaded (detached, with its identity), so a
relationship nobody loaded still raises (``lazy="raise"``) as before.

No session is involved. What a channel's ``prepare`` reads besides the prescription and the
delivery it reads through ``get`` (:class:`rxroute.channels.base.RowSource`), and
:class:`LoadedRows` answers that from this load: the delivery's pharmacy and the
prescription's clinic. The common path used to open a session only for those two lookups,
adding both entities to it (``Session.add`` cascades over every relationship of the
mapper) and closing it again: about a twentieth of the worker's CPU per send, for two
dictionary reads.

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
from typing import Any, TypeVar

from sqlalchemy import func, inspect, literal, select
from sqlalchemy.dialects import postgresql
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


T = TypeVar("T")


class LoadedRows:
    """The rows a channel's ``prepare`` may ``get`` (:class:`rxroute.channels.base.RowSource`),
    from the send's load rather than a session: the delivery's pharmacy and the
    prescription's clinic, the same instances the graph holds."""

    def __init__(self, *instances: Any) -> None:
        self._found = {(type(each), each.id): each for each in instances if each is not None}

    async def get(self, entity: type[T], ident: Any, /) -> T | None:
        """The loaded ``entity`` with primary key ``ident``.

        Anything else was not read by the load, so it is a mistake in the code, not a row
        that does not exist: it raises rather than answer None (which ``prepare`` would take
        for a row that is gone, such as a clinic falling back to the configured one).
        """
        found = self._found.get((entity, ident))
        if found is None:
            raise LookupError(
                f"the send's load did not read {entity.__name__} {ident}: "
                "add it to rxroute.deliveries.send_graph"
            )
        assert isinstance(found, entity)
        return found


@dataclass
class SendGraph:
    """The loaded rows, as detached ORM instances."""

    prescription: Prescription
    delivery: Delivery | None
    pharmacy: Pharmacy | None
    clinic: Clinic | None
    items: list[PrescriptionItem]
    withdrawals: bool
    endpoints: list[Candidate]

    def rows(self) -> LoadedRows:
        """What ``prepare`` finds by ``get``: the delivery's pharmacy, the clinic."""
        return LoadedRows(self.pharmacy, self.clinic)


def _detached(model: type[Any], keys: Sequence[str], values: Sequence[Any]) -> Any:
    """An instance of ``model`` holding ``values`` as loaded state, detached with its
    identity (as the ORM leaves an instance loaded in a session that has since closed)."""
    instance = inspect(model).class_manager.new_instance()
    instance_dict(instance).update(zip(keys, values, strict=True))
    make_transient_to_detached(instance)
    return instance


def attach(row: Sequence[Any]) -> SendGraph:
    """The graph of one :data:`LOAD` row as the ORM would have loaded it."""
    found: dict[type[Any], Any] = {}
    start = 0
    for _alias, model, _on in _ENTITIES:
        keys = _KEYS[model]
        values = row[start : start + len(keys)]
        start += len(keys)
        # A LEFT JOIN that found nothing: every column NULL, the primary key too.
        found[model] = None if values[keys.index("id")] is None else _detached(model, keys, values)
    arrays = row[start : start + len(_ITEM_KEYS)]
    items = [
        _detached(PrescriptionItem, _ITEM_KEYS, values) for values in zip(*arrays, strict=True)
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
