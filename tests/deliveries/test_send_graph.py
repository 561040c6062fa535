"""The send path's hand-made load gives the channel the same objects the ORM would.

:mod:`rxroute.deliveries.send_graph` reads the prescription graph with one plain psycopg
statement and fills ORM instances itself, skipping SQLAlchemy's loader. Whatever the loader
would have done to a value on the way in (a type conversion, a decoder on a column) is not
done there: this test compares every mapped column of every entity, value and type, with a
fresh ORM load of the same rows, so a column type the plain read gets wrong fails here
rather than in a channel's payload.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.db.queue_statements import single_statements
from rxroute.deliveries import send_graph
from rxroute.models import Clinic, Delivery, Patient, Pharmacy, Prescriber, PrescriptionItem
from rxroute.runtime import Runtime
from tests.erx_sandbox import queue_for_erx
from tests.factories import (
    make_clinic,
    make_patient,
    make_pharmacy,
    make_prescriber,
    make_prescription,
)


def _columns(instance: Any, model: type[Any]) -> dict[str, tuple[type[Any], Any]]:
    return {key: (type(getattr(instance, key)), getattr(instance, key)) for key in _keys(model)}


def _keys(model: type[Any]) -> tuple[str, ...]:
    return send_graph._KEYS.get(model) or send_graph._ITEM_KEYS


async def _loaded(db: Runtime, prescription_id: uuid.UUID) -> send_graph.SendGraph:
    """The graph the send's load reads for ``prescription_id``, attached."""
    async with single_statements(db.queue_pool) as connection:
        cursor = await connection.execute(send_graph.LOAD, {"prescription_id": prescription_id})
        row = await cursor.fetchone()
    assert row is not None
    return send_graph.attach(row)


async def test_every_column_comes_back_as_the_orm_loads_it(
    db: Runtime, session: AsyncSession
) -> None:
    clinic = await make_clinic(session)
    patient = await make_patient(session)
    prescriber = await make_prescriber(session, db.secret_box)
    prescription = await make_prescription(session, patient, prescriber, clinic=clinic, items=3)
    pharmacy = await make_pharmacy(session, "B", platform_contact_id=5002)
    await queue_for_erx(session, prescription.id, pharmacy)
    await session.commit()

    graph = await _loaded(db, prescription.id)
    assert graph.delivery is not None and graph.pharmacy is not None
    assert graph.clinic is not None
    by_hand: list[tuple[type[Any], Any]] = [
        (type(graph.prescription), graph.prescription),
        (Delivery, graph.delivery),
        (Pharmacy, graph.pharmacy),
        (Clinic, graph.clinic),
        (Patient, graph.prescription.patient),
        (Prescriber, graph.prescription.prescriber),
        *((PrescriptionItem, item) for item in graph.items),
    ]
    async with db.sessionmaker() as fresh:
        for model, instance in by_hand:
            loaded = await fresh.get(model, instance.id)
            assert loaded is not None, model.__name__
            assert _columns(instance, model) == _columns(loaded, model), model.__name__
    assert [item.position for item in graph.items] == [0, 1, 2]
    # Detached with their identity, in no session: nobody can flush them.
    for _model, instance in by_hand:
        state = inspect(instance)
        assert state.detached and state.key is not None and state.session is None
    # What a channel's prepare looks up is the graph's own instance, with no SQL.
    rows = graph.rows()
    assert await rows.get(Pharmacy, graph.pharmacy.id) is graph.pharmacy
    assert await rows.get(Clinic, graph.clinic.id) is graph.clinic


async def test_a_lookup_the_load_did_not_read_is_a_mistake_not_a_missing_row(
    db: Runtime, session: AsyncSession
) -> None:
    """None would mean "no such row" to prepare (a clinic would fall back to the configured
    one): a lookup the load cannot answer must fail loudly instead."""
    patient = await make_patient(session)
    prescriber = await make_prescriber(session, db.secret_box)
    prescription = await make_prescription(session, patient, prescriber)
    pharmacy = await make_pharmacy(session, "B", platform_contact_id=5003)
    other = await make_pharmacy(session, "B", platform_contact_id=5004)
    await queue_for_erx(session, prescription.id, pharmacy)
    await session.commit()

    graph = await _loaded(db, prescription.id)
    assert graph.clinic is None
    rows = graph.rows()
    assert await rows.get(Pharmacy, pharmacy.id) is graph.pharmacy
    with pytest.raises(LookupError, match="did not read Pharmacy"):
        await rows.get(Pharmacy, other.id)
    with pytest.raises(LookupError, match="did not read Clinic"):
        await rows.get(Clinic, uuid.uuid4())
