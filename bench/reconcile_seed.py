"""Seed N Region B prescriptions in flight without sending each: bench_reconcile.py --seed direct.

Issuing 100,000 through the real send path takes well over an hour here, so the 100k sweep
was only ever projected. This writes, in bulk, what the send path leaves behind for a
prescription issued on the platform and not yet signed: on rxroute's side the prescription
(issued, its ref and token), its live delivery, the issue attempt, the history (queued,
sending, issued) and the outbox events (queued, sent), by COPY through psycopg; on the
sandbox's side the same prescriptions in its state file, the sandbox's own way of starting
with what it issued before (``rxroute sandbox --state-file``; see ``sandbox/persist.py``).
Nothing in rxroute gets a shortcut: the drafts come from ``add_prescriptions``, each
platform payload from the channel's own ``prepare`` and ``build_payload``.

Left out on purpose: the patient's "sent" email (``patient_notifications`` and its job),
which the reconciler never reads, and which would have the worker mailing 100,000 patients
during the measurement.

:func:`compare` checks a seeded prescription against one sent through the real send path,
table by table, and both through the reconciler's own batch loading, so the two cannot drift.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from sqlalchemy import select

from rxroute.channels.base import Purpose
from rxroute.channels.erx.channel import ErxPrepared, build_payload
from rxroute.channels.registry import get_channel
from rxroute.events.catalogue import EventType, event_body, iso
from rxroute.models import Delivery, Pharmacy, Prescription
from rxroute.prescriptions.lifecycle import Status
from rxroute.prescriptions.repository import for_sending
from rxroute.runtime import Runtime
from rxroute.sandbox import load_config
from rxroute.sandbox import persist as sandbox_persist
from rxroute.sandbox.records import Prescription as SandboxPrescription
from rxroute.webhooks import reconciliation

#: Offsets from the moment the platform issued it, as one real send spaced them (seconds).
QUEUED = -0.30
SENDING = -0.14
ATTEMPT_STARTED = -0.12
ISSUED_RECORDED = 0.02
ATTEMPT_FINISHED = 0.03


def chunks(items: list[uuid.UUID], size: int) -> Iterator[list[uuid.UUID]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def seed_in_flight(
    runtime: Runtime,
    url: str,
    ids: list[uuid.UUID],
    sandbox_url: str,
    issued_between: tuple[datetime, datetime],
) -> list[dict[str, Any]]:
    """Write ``ids`` (Region B drafts) as issued; returns the sandbox's copies (state rows)."""
    prescribers = {p.email.lower(): p.id for p in load_config(None).prescribers}
    earliest, latest = issued_between
    step = (latest - earliest) / max(1, len(ids))
    taken: set[str] = set()
    rows: dict[str, list[tuple[Any, ...]]] = {
        "prescriptions": [],
        "deliveries": [],
        "attempts": [],
        "history": [],
        "outbox": [],
    }
    platform: list[dict[str, Any]] = []
    erx = get_channel(runtime, "erx")
    async with runtime.sessionmaker() as session:
        pharmacies = list(
            await session.scalars(
                select(Pharmacy)
                .where(Pharmacy.region == "B", Pharmacy.active.is_(True))
                .order_by(Pharmacy.id)
            )
        )
        index = 0
        for batch in chunks(ids, 1000):
            loaded = {p.id: p for p in await session.scalars(for_sending(*batch))}
            for prescription_id in batch:
                prescription = loaded[prescription_id]
                pharmacy = pharmacies[index % len(pharmacies)]
                issued = earliest + step * index
                index += 1
                delivery_id = uuid.uuid4()
                placeholder = Delivery(id=delivery_id, pharmacy_id=pharmacy.id)
                prepared = await erx.prepare(
                    runtime, session, prescription, placeholder, Purpose.POLL
                )
                assert isinstance(prepared, ErxPrepared)
                payload = await build_payload(
                    session,
                    runtime.settings,
                    prescription,
                    pharmacy,
                    prepared.credentials.secure_pin,
                )
                wire = payload.to_wire()
                record = SandboxPrescription.issued(
                    wire,
                    taken=taken,
                    clinic_id=int(wire["clinic_id"]),
                    contact_id=int(wire["contact_id"]),
                    prescriber_id=prescribers[prepared.credentials.email.lower()],
                    link_base=sandbox_url,
                    issued_at=issued.timestamp(),
                    issued_at_text=iso(issued),
                )
                taken.add(record.id)
                add_rows(rows, prescription, pharmacy, delivery_id, record.id, record.token, issued)
                platform.append(asdict(record))
            session.expunge_all()
    write_rows(url, rows)
    return platform


def add_rows(
    rows: dict[str, list[tuple[Any, ...]]],
    prescription: Prescription,
    pharmacy: Pharmacy,
    delivery_id: uuid.UUID,
    ref: str,
    token: str,
    issued: datetime,
) -> None:
    """One prescription's rows, as the send path writes them (column order: :func:`write_rows`)."""

    def at(offset: float) -> datetime:
        return issued + timedelta(seconds=offset)

    pid = prescription.id
    rows["prescriptions"].append(
        (pid, pharmacy.id, ref, token, delivery_id, at(QUEUED), at(QUEUED - 60), issued)
    )
    rows["deliveries"].append(
        (
            *(delivery_id, pid, 1, pharmacy.id, "B", "erx", "live", ref, token, 1, 1, True),
            *(False, issued, issued, at(QUEUED - 0.04), issued),
        )
    )
    rows["attempts"].append(
        (
            *(uuid.uuid4(), pid, delivery_id, 1, "erx", "issue", 1, "succeeded"),
            *(f"delivered as {ref}", at(ATTEMPT_STARTED), at(ATTEMPT_FINISHED)),
        )
    )
    for status, provider_status, source, offset, recorded in (
        ("queued", None, "patient", QUEUED, QUEUED + 0.01),
        ("sending", None, "worker", SENDING, SENDING + 0.01),
        ("issued", "issued", "worker", 0.0, ISSUED_RECORDED),
    ):
        rows["history"].append(
            (
                *(uuid.uuid4(), pid, delivery_id, status, provider_status, source),
                *(at(offset), at(recorded)),
            )
        )
    for event_type, status, previous, offset in (
        (EventType.QUEUED, Status.QUEUED, Status.DRAFT, QUEUED + 0.02),
        (EventType.SENT, Status.ISSUED, Status.SENDING, 0.0),
    ):
        body = event_body(
            event_type,
            created_at=at(offset),
            prescription_id=pid,
            external_id=prescription.external_id,
            status=status,
            previous_status=previous,
            occurred_at=at(offset),
            region="B",
            pharmacy_id=pharmacy.id,
        )
        rows["outbox"].append(
            (
                *(uuid.uuid4(), pid, event_type.value, status.value, previous.value, body),
                *(at(offset), at(offset)),
            )
        )


def write_rows(url: str, rows: dict[str, list[tuple[Any, ...]]]) -> None:
    """Everything in one transaction: COPY, and one UPDATE of the drafts from a COPY."""
    copies = {
        "deliveries": "deliveries (id, prescription_id, number, pharmacy_id, region, channel, "
        "state, provider_ref, provider_token, series, attempts_in_series, reached_out, "
        "needs_withdrawal, delivered_at, last_heard_at, created_at, updated_at)",
        "attempts": "delivery_attempts (id, prescription_id, delivery_id, series, channel, "
        "action, attempt, outcome, error, started_at, finished_at)",
        "history": "prescription_status_events (id, prescription_id, delivery_id, status, "
        "provider_status, source, occurred_at, recorded_at)",
        "outbox": "outbox_events (id, prescription_id, type, status, previous_status, body, "
        "occurred_at, created_at)",
    }
    with psycopg.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE seeded (id uuid, pharmacy_id uuid, ref text, token text, "
            "delivery_id uuid, first_queued_at timestamptz, created_at timestamptz, "
            "updated_at timestamptz) ON COMMIT DROP"
        )
        with cursor.copy("COPY seeded FROM STDIN") as copy:
            for row in rows["prescriptions"]:
                copy.write_row(row)
        cursor.execute(
            "UPDATE prescriptions p SET status = 'issued', channel = 'erx', "
            "pharmacy_id = s.pharmacy_id, provider_prescription_id = s.ref, "
            "provider_token = s.token, current_delivery_id = s.delivery_id, "
            "first_queued_at = s.first_queued_at, created_at = s.created_at, "
            "updated_at = s.updated_at FROM seeded s WHERE p.id = s.id AND p.status = 'draft'"
        )
        assert cursor.rowcount == len(rows["prescriptions"]), cursor.rowcount
        for key, target in copies.items():
            with cursor.copy(f"COPY {target} FROM STDIN") as copy:
                for row in rows[key]:
                    copy.write_row(row)
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE prescriptions, deliveries, prescription_status_events")


def add_to_state_file(path: Path, platform: list[dict[str, Any]]) -> None:
    """The sandbox's state file (as a stopped sandbox left it), with ``platform`` added."""
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved["version"] == sandbox_persist.VERSION
    saved["prescriptions"].extend(platform)
    counts = saved.setdefault("issued_by_client_ref_id", {})
    for row in platform:
        counts[row["client_ref_id"]] = 1
    path.write_text(json.dumps(saved), encoding="utf-8")


# --- the check: seeded rows against the send path's -----------------------------------------

#: Columns whose values differ between any two prescriptions (ids, references, times):
#: compared for presence (null or not) only.
VARYING = {
    "id",
    "seq",
    "prescription_id",
    "delivery_id",
    "current_delivery_id",
    "patient_id",
    "patient_name_search",  # the patient's name, copied by migration 0019's trigger
    "prescriber_id",
    "pharmacy_id",
    "clinic_id",
    "provider_prescription_id",
    "provider_ref",
    "provider_token",
    "error",
    "body",
    "notes",
}
TABLES = {
    "prescriptions": "SELECT * FROM prescriptions WHERE id = %s",
    "deliveries": "SELECT * FROM deliveries WHERE prescription_id = %s ORDER BY number",
    "delivery_attempts": "SELECT * FROM delivery_attempts WHERE prescription_id = %s "
    "ORDER BY started_at",
    "prescription_status_events": "SELECT * FROM prescription_status_events "
    "WHERE prescription_id = %s ORDER BY seq",
    "outbox_events": "SELECT * FROM outbox_events WHERE prescription_id = %s ORDER BY seq",
}


def _shape(value: Any) -> Any:
    """What must match: the value, or for times and varying columns whether there is one."""
    return value if not isinstance(value, datetime) else "a time"


def compare_rows(url: str, sent: uuid.UUID, seeded: uuid.UUID) -> None:
    """Raise if a seeded prescription's rows differ from a sent one's, beyond ids and times."""
    with psycopg.connect(url, row_factory=dict_row) as conn:
        for table, query in TABLES.items():
            real = conn.execute(query, (sent,)).fetchall()
            ours = conn.execute(query, (seeded,)).fetchall()
            assert len(real) == len(ours), f"{table}: {len(real)} rows sent, {len(ours)} seeded"
            for a, b in zip(real, ours, strict=True):
                assert a.keys() == b.keys(), table
                for column in a:
                    if column in VARYING:
                        same = (a[column] is None) == (b[column] is None)
                    else:
                        same = _shape(a[column]) == _shape(b[column])
                    assert same, f"{table}.{column}: sent {a[column]!r}, seeded {b[column]!r}"
            for a, b in zip(real, ours, strict=True):
                if "body" in a:
                    assert json.loads(a["body"]).keys() == json.loads(b["body"]).keys()
                if a.get("error"):
                    assert a["error"].split(" SRX")[0] == b["error"].split(" SRX")[0], table
        # The times in the order the send path writes them.
        for prescription_id in (sent, seeded):
            row = conn.execute(
                "SELECT p.first_queued_at < d.delivered_at AND d.delivered_at <= p.updated_at "
                "AND d.last_heard_at = d.delivered_at AND p.last_provider_update_at IS NULL "
                "AS ordered FROM prescriptions p JOIN deliveries d ON d.id = p.current_delivery_id "
                "WHERE p.id = %s",
                (prescription_id,),
            ).fetchone()
            assert row is not None and row["ordered"], prescription_id


async def compare_for_reconciler(runtime: Runtime, sent: uuid.UUID, seeded: uuid.UUID) -> None:
    """Both read by the reconciler's own batch loading: pollable alike, quiet alike."""
    async with runtime.sessionmaker() as session:
        batch = await reconciliation.load_batch(session, runtime, [sent, seeded])
    assert not batch.skipped and batch.refused == 0, batch
    by_id = {item.prescription_id: item for item in batch.ready}
    a, b = by_id[sent], by_id[seeded]
    assert a.quiet_status == b.quiet_status == "issued", (a.quiet_status, b.quiet_status)
    assert a.channel is b.channel and a.ref.startswith("SRX") and b.ref.startswith("SRX")


def compare_platform_copies(sent: dict[str, Any], seeded: dict[str, Any]) -> None:
    """Two of the sandbox's copies (``GET /_sandbox/prescriptions/{id}``), alike but for ids."""
    a, b = sent["data"]["prescription"], seeded["data"]["prescription"]
    assert a.keys() == b.keys(), (a.keys(), b.keys())
    for key in ("status", "clinic_id", "prescriber_id", "token_used", "pharmacy_group"):
        assert a[key] == b[key], (key, a[key], b[key])
    assert [h["status"] for h in a["status_history"]] == [h["status"] for h in b["status_history"]]
