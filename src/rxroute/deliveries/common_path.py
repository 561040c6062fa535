"""The send job's common path: a first attempt, nothing to withdraw, nobody in the way.

Most sends are exactly that, so this is what they cost: three statements, each its own
transaction, and no transaction at all while the far side is called.

1. **Load** (a read): the prescription, its current delivery, everything the channel needs,
   whether any delivery waits to be withdrawn, and the event endpoints, in one SELECT
   (:mod:`rxroute.deliveries.send_graph`: plain rows, handed to the channel as detached ORM
   objects, with no session).
   In rxroute's worker this SELECT rides on the statement that fetched the job
   (:mod:`rxroute.job_preloads`), so the job itself runs two statements, not three.
2. **Claim** (one write statement): take the delivery with a fresh fencing ``claim``, count
   the attempt, mark it ``reached_out``, record ``sending`` and move the status.
3. **Record** (one write statement, after the call, :mod:`rxroute.deliveries.common_record`):
   the delivery live, the attempt row, the status fact (``ON CONFLICT DO NOTHING`` against
   the once-per-delivery index), the cached status, the outbox event with its endpoint
   deliveries, the patient's email (``skipped`` if they opted out) and every job these need
   (procrastinate's own ``procrastinate_defer_jobs_v1``, called only when there is one), all
   or nothing. It also finishes the send job it runs as (``procrastinate_finish_job_v1``,
   while this worker still holds the job: :class:`rxroute.job_running.RunningJob`), so the
   job's outcome is committed with the delivery and the worker skips the round trip and
   transaction of its own finish; and it takes the worker's next job, with that job's load,
   to run in the slot this one frees (:class:`rxroute.job_preloads.HandOff`). A worker busy
   with sends thus runs two statements per send: the claim and the record.

A single statement is atomic on its own, so neither write needs a BEGIN or a COMMIT round
trip. Each is a compare-and-set on what the load (or the claim) saw: the prescription row
is locked and must still have that status and this delivery as its current one, and the
delivery must still be as read (the claim) or still carry this run's claim (the record).
If anything moved in between - a webhook, a cancel, a re-route, a zombie worker, a second
run - the statement writes nothing, and :mod:`rxroute.deliveries.sending` takes the general
path, which locks and re-reads. So this path keeps every rule of the ledger by taking only
the cases where the general path would have done the same writes.

The rules stay in Python, in one place each: the lifecycle's :func:`decide`, the channel's
``prepare``, the outbox's event type and body, the patient email's kind, which endpoints
want an event, and how a job is built. The SQL only applies what they decided, under a
guard that keeps the decision valid.

The statements are plain psycopg on a connection borrowed from the job queue's
autocommit pool (:mod:`rxroute.db.queue_statements`), not SQLAlchemy sessions: the worker is
CPU-bound, and the session, the engine's checkout with its isolation-level switch and the
ORM's loading cost more than twice what the statements themselves cost on the client
(``bench/bench_send.py`` prints the worker's CPU per send).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection

from rxroute.channels.base import NotSendable, Purpose
from rxroute.channels.registry import get_channel
from rxroute.db.queue_statements import single_statements
from rxroute.deliveries import send_graph
from rxroute.deliveries.claims import Claimed, RecordContext, SendOutcome
from rxroute.events.catalogue import event_type_for
from rxroute.events.endpoints import wanted_endpoints
from rxroute.models import DeliveryState
from rxroute.prescriptions.lifecycle import Source, Status, decide
from rxroute.runtime import Runtime

#: Our own worker picking a prescription up is not news (no outbox event, no email): the
#: claim statement writes neither. Checked here rather than assumed.
_SENDING_IS_QUIET = event_type_for(Status.SENDING) is None


def squeeze(statement: str) -> str:
    """A statement with its layout squeezed out: short enough for psycopg's parse cache."""
    return " ".join(statement.split())


#: Both writes' guard on the prescription (the CTE ``p``): locked, still with this delivery
#: current and still at ``%(expected)s``, the status the decision was made on.
PRESCRIPTION_GUARD = """
    WITH p AS (
        SELECT id FROM prescriptions
        WHERE id = %(prescription_id)s AND current_delivery_id = %(delivery_id)s
          AND status = %(expected)s
        FOR UPDATE
    )"""


_CLAIM = squeeze(
    PRESCRIPTION_GUARD  # noqa: S608 (a constant of ours, no input)
    + """, d AS (
        UPDATE deliveries
        SET claim = %(claim)s, attempts_in_series = attempts_in_series + 1, reached_out = true,
            link_nonce = %(nonce)s, updated_at = now()
        WHERE id = %(delivery_id)s AND state = 'pending' AND NOT reached_out
          AND NOT needs_withdrawal AND series = %(series)s AND attempts_in_series = %(attempts)s
          AND claim IS NOT DISTINCT FROM %(old_claim)s
          AND link_nonce IS NOT DISTINCT FROM %(old_nonce)s
          AND EXISTS (SELECT 1 FROM p)
        RETURNING attempts_in_series
    ), h AS (
        INSERT INTO prescription_status_events
            (id, prescription_id, delivery_id, status, source, occurred_at)
        SELECT %(history_id)s, %(prescription_id)s, %(delivery_id)s, %(sending)s, %(source)s,
               %(now)s
        FROM d WHERE %(moved)s
    ), u AS (
        UPDATE prescriptions SET status = %(sending)s, updated_at = now()
        WHERE id = %(prescription_id)s AND %(moved)s AND EXISTS (SELECT 1 FROM d)
    )
    SELECT attempts_in_series FROM d
    """
)


async def claim(
    runtime: Runtime, prescription_id: uuid.UUID, *, preloaded: Sequence[Any] | None = None
) -> Claimed | SendOutcome | None:
    """Claim the current delivery in the common case; None: take the general path.

    ``preloaded``: the :data:`send_graph.LOAD` row the worker's fetch read with the job
    (:mod:`rxroute.job_preloads`), so the load costs no statement of its own. That row can
    be older than the job: the fetch's SELECT reads from its own snapshot, taken before
    procrastinate's fetch function (volatile, so with snapshots of its own) took a job that
    may have committed in between, with the delivery it sends. So a preload may only lead
    to a claim, whose compare-and-set proves it current; anything else it would conclude
    (nothing to send, the general path) is concluded again from a fresh read.
    """
    async with single_statements(runtime.queue_pool) as connection:
        if preloaded is not None:
            claimed = await _claim_from(runtime, connection, prescription_id, preloaded)
            if isinstance(claimed, Claimed):
                return claimed
        cursor = await connection.execute(send_graph.LOAD, {"prescription_id": prescription_id})
        row = await cursor.fetchone()
        if row is None:
            return None  # no such prescription: the general path says so
        return await _claim_from(runtime, connection, prescription_id, row)


async def _claim_from(
    runtime: Runtime,
    connection: AsyncConnection[Any],
    prescription_id: uuid.UUID,
    row: Sequence[Any],
) -> Claimed | SendOutcome | None:
    """:func:`claim`, given the loaded row."""
    # Detached, never flushed: the channel reads (and may set the delivery's link nonce on)
    # these, and the claim below writes what it decided.
    graph = send_graph.attach(row)
    prescription, delivery = graph.prescription, graph.delivery
    if prescription.id != prescription_id:
        raise ValueError(f"loaded prescription {prescription.id}, not {prescription_id}")
    if graph.withdrawals:
        return None  # withdraw first: the general path
    if delivery is None or delivery.state != DeliveryState.PENDING.value:
        state = delivery.state if delivery else "none"
        return SendOutcome("skipped", f"no delivery waiting to be sent ({state})")
    if delivery.reached_out or not _SENDING_IS_QUIET:
        return None  # an earlier attempt may have landed: look it up first
    channel = get_channel(runtime, delivery.channel)
    sent_type = event_type_for(channel.delivered_status)
    endpoints: list[uuid.UUID] = []
    if sent_type is not None:
        endpoints, default_missing = wanted_endpoints(
            graph.endpoints, runtime.settings, sent_type.value
        )
        if default_missing:
            return None  # the general path creates the default endpoint's row
    current = Status(prescription.status)
    moved = decide(current, Status.SENDING, Source.WORKER)
    old_nonce = delivery.link_nonce
    try:
        prepared = await channel.prepare(
            runtime, graph.rows(), prescription, delivery, Purpose.DELIVER
        )
    except NotSendable:
        return None  # the general path records the refusal
    claim_id = uuid.uuid4()
    cursor = await connection.execute(
        _CLAIM,
        {
            "prescription_id": prescription.id,
            "delivery_id": delivery.id,
            "expected": current.value,
            "claim": claim_id,
            "nonce": delivery.link_nonce,
            "old_nonce": old_nonce,
            "series": delivery.series,
            "attempts": delivery.attempts_in_series,
            "old_claim": delivery.claim,
            "history_id": uuid.uuid4(),
            "sending": Status.SENDING.value,
            "source": Source.WORKER.value,
            "now": datetime.now(UTC),
            "moved": moved,
        },
    )
    claimed = await cursor.fetchone()
    if claimed is None:
        return None
    pharmacy = graph.pharmacy
    return Claimed(
        delivery_id=delivery.id,
        number=delivery.number,
        channel=channel,
        claim=claim_id,
        attempt=int(claimed[0]),
        must_look_up=False,
        destination=channel.destination(pharmacy) if pharmacy else None,
        other_refs=frozenset(),
        shares_destination=False,
        prepared=prepared,
        record=RecordContext(
            prescription_id=prescription.id,
            patient_id=prescription.patient_id,
            external_id=prescription.external_id,
            region=prescription.region,
            pharmacy_id=prescription.pharmacy_id,
            series=delivery.series,
            expected_status=Status.SENDING if moved else current,
            endpoints=tuple(endpoints),
        ),
    )
