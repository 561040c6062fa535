"""The send job's common path: a first attempt, nothing to withdraw, nobody in the way.

Most sends are exactly that, so this is what they cost: three statements, each its own
transaction, and no transaction at all while the far side is called.

1. **Load** (a read): the prescription, its current delivery, everything the channel needs,
   whether any delivery waits to be withdrawn, and the event endpoints, in one SELECT
   (:mod:`rxroute.deliveries.send_graph`: plain rows, handed to the channel as ORM objects).
   In rxroute's worker this SELECT rides on the statement that fetched the job
   (:mod:`rxroute.job_preloads`), so the job itself runs two statements, not three.
2. **Claim** (one write statement): take the delivery with a fresh fencing ``claim``, count
   the attempt, mark it ``reached_out``, record ``sending`` and move the status.
3. **Record** (one write statement, after the call): the delivery live, the attempt row,
   the status fact (``ON CONFLICT DO NOTHING`` against the once-per-delivery index), the
   cached status, the outbox event with its endpoint deliveries, the patient's email
   (``skipped`` if they opted out) and every job these need (procrastinate's own
   ``procrastinate_defer_jobs_v1``, called only when there is one), all or nothing. It also
   finishes the send job it runs as (``procrastinate_finish_job_v1``, while this worker
   still holds the job: :class:`rxroute.job_worker.RunningJob`): the job's outcome is committed
   with the delivery, and the worker skips the round trip and transaction of its own finish.

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

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.channels.base import NotSendable, Purpose
from rxroute.channels.registry import get_channel
from rxroute.db.queue_statements import single_statements
from rxroute.deliveries import send_graph
from rxroute.deliveries.claims import Claimed, RecordContext, SendOutcome
from rxroute.events import tasks as event_tasks
from rxroute.events.catalogue import event_body, event_type_for
from rxroute.events.endpoints import wanted_endpoints
from rxroute.job_worker import RunningJob
from rxroute.models import DeliveryState
from rxroute.notifications import tasks as notification_tasks
from rxroute.notifications.kinds import kind_for_event
from rxroute.prescriptions.history import ONCE_PER_DELIVERY_SQL
from rxroute.prescriptions.lifecycle import Source, Status, decide
from rxroute.runtime import Runtime

#: Our own worker picking a prescription up is not news (no outbox event, no email): the
#: claim statement writes neither. Checked here rather than assumed.
_SENDING_IS_QUIET = event_type_for(Status.SENDING) is None


def _sql(statement: str) -> str:
    """A statement with its layout squeezed out: short enough for psycopg's parse cache."""
    return " ".join(statement.split())


_CLAIM = _sql(
    """
    WITH p AS (
        SELECT id FROM prescriptions
        WHERE id = %(prescription_id)s AND current_delivery_id = %(delivery_id)s
          AND status = %(status)s
        FOR UPDATE
    ), d AS (
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
    # Never flushed: the channel reads (and may set the delivery's link nonce on) these.
    async with AsyncSession(bind=runtime.engine, autoflush=False) as session:
        graph = send_graph.attach(session, row)
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
                runtime, session, prescription, delivery, Purpose.DELIVER
            )
        except NotSendable:
            return None  # the general path records the refusal
    claim_id = uuid.uuid4()
    cursor = await connection.execute(
        _CLAIM,
        {
            "prescription_id": prescription.id,
            "delivery_id": delivery.id,
            "status": current.value,
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


_RECORD = _sql(
    f"""
    WITH p AS (
        SELECT id FROM prescriptions
        WHERE id = %(prescription_id)s AND current_delivery_id = %(delivery_id)s
          AND status = %(expected)s
        FOR UPDATE
    ), d AS (
        UPDATE deliveries
        SET state = 'live', provider_ref = COALESCE(provider_ref, %(ref)s),
            provider_token = COALESCE(%(token)s, provider_token), last_heard_at = %(now)s,
            reached_out = true, delivered_at = COALESCE(delivered_at, %(now)s),
            closed_reason = NULL, closed_at = NULL, claim = NULL, updated_at = now()
        WHERE id = %(delivery_id)s AND claim = %(claim)s AND state = 'pending'
          AND EXISTS (SELECT 1 FROM p)
        RETURNING provider_ref, provider_token
    ), a AS (
        INSERT INTO delivery_attempts (id, prescription_id, delivery_id, series, channel,
                                       action, attempt, outcome, error, started_at)
        SELECT %(attempt_id)s, %(prescription_id)s, %(delivery_id)s, %(series)s, %(channel)s,
               %(action)s, %(attempt)s, 'succeeded', %(detail)s, %(started)s
        FROM d
    ), h AS (
        INSERT INTO prescription_status_events (id, prescription_id, delivery_id, status,
                                                provider_status, source, occurred_at)
        SELECT %(history_id)s, %(prescription_id)s, %(delivery_id)s, %(status)s, %(raw_status)s,
               %(source)s, %(now)s
        FROM d
        ON CONFLICT (delivery_id, status) WHERE {ONCE_PER_DELIVERY_SQL} DO NOTHING
        RETURNING seq
    ), u AS (
        UPDATE prescriptions
        SET status = CASE WHEN %(moved)s AND EXISTS (SELECT 1 FROM h) THEN %(status)s
                          ELSE prescriptions.status END,
            provider_prescription_id = CASE WHEN %(mirror)s THEN d.provider_ref
                                            ELSE prescriptions.provider_prescription_id END,
            provider_token = CASE WHEN %(mirror)s THEN d.provider_token
                                  ELSE prescriptions.provider_token END,
            failure_reason = NULL, updated_at = now()
        FROM d WHERE prescriptions.id = %(prescription_id)s
    ), o AS (
        INSERT INTO outbox_events (id, prescription_id, type, status, previous_status, body,
                                   occurred_at, created_at)
        SELECT %(event_id)s, %(prescription_id)s, %(event_type)s, %(status)s, %(expected)s,
               %(body)s, %(now)s, %(now)s
        FROM h WHERE %(announce)s
        RETURNING seq
    ), e AS (
        INSERT INTO event_deliveries (id, event_id, endpoint_id, prescription_id, event_seq,
                                      state, attempts, next_attempt_at)
        SELECT gen_random_uuid(), %(event_id)s, endpoint, %(prescription_id)s, o.seq,
               'pending', 0, %(now)s
        FROM o CROSS JOIN unnest(CAST(%(endpoints)s AS uuid[])) AS endpoint
    ), n AS (
        INSERT INTO patient_notifications (id, prescription_id, patient_id, delivery_id, kind,
                                           status_event_seq, state, skip_reason, attempts)
        SELECT %(notification_id)s, %(prescription_id)s, patients.id, %(delivery_id)s,
               %(kind)s, h.seq,
               CASE WHEN patients.notifications_opt_out THEN 'skipped' ELSE 'pending' END,
               CASE WHEN patients.notifications_opt_out THEN %(opted_out)s END, 0
        FROM h, o, patients
        WHERE patients.id = %(patient_id)s AND %(notify)s
        ON CONFLICT DO NOTHING
        RETURNING state
    ), j AS (
        SELECT procrastinate_defer_jobs_v1(ARRAY(
            SELECT jsonb_populate_record(NULL::procrastinate_job_to_defer_v1, job)
            FROM jsonb_array_elements(CAST(%(jobs)s AS jsonb)) AS job
            WHERE (job->>'after' = 'email' AND EXISTS (SELECT 1 FROM n WHERE state = 'pending'))
               OR (job->>'after' = 'event' AND EXISTS (SELECT 1 FROM o))
        )) AS ids
        WHERE %(defers)s
    ), mine AS MATERIALIZED (
        SELECT id FROM procrastinate_jobs
        WHERE id = %(job_id)s AND status = 'doing' AND worker_id = %(worker_id)s
          AND EXISTS (SELECT 1 FROM d)
        FOR UPDATE
    ), f AS (
        SELECT procrastinate_finish_job_v1(id, 'succeeded', %(finish_deletes)s) FROM mine
    )
    SELECT (SELECT count(*) FROM d) AS applied, (SELECT count(*) FROM h) AS appended,
           (SELECT cardinality(ids) FROM j) AS jobs, (SELECT count(*) FROM f) AS finished
    """  # noqa: S608 (the index's own constant predicate, no input)
)


async def record_delivered(
    runtime: Runtime,
    claimed: Claimed,
    started: datetime,
    *,
    ref: str,
    raw_status: str,
    token: str | None,
    job: RunningJob | None = None,
) -> bool:
    """Record a delivered send in one statement; False: something moved, nothing written.

    ``job``: the send job this runs as. The same statement marks it ``succeeded`` (while it
    is still this worker's), so its outcome is committed with the delivery it recorded and
    the worker spends no round trip of its own on it.
    """
    context = claimed.record
    assert context is not None
    channel = claimed.channel
    status = channel.delivered_status
    moved = decide(context.expected_status, status, Source.WORKER)
    event_type = event_type_for(status)
    announce = moved and event_type is not None
    now = datetime.now(UTC)
    event_id = uuid.uuid4()
    kind = kind_for_event(event_type.value if event_type else None)
    notify = announce and kind is not None and runtime.settings.patient_notifications
    jobs: list[dict[str, Any]] = []
    if notify:
        jobs.append({**notification_tasks.stream_job(context.prescription_id), "after": "email"})
    jobs.extend(
        {**event_tasks.stream_job(endpoint, context.prescription_id), "after": "event"}
        for endpoint in context.endpoints
    )
    body = (
        event_body(
            event_type,
            created_at=now,
            prescription_id=context.prescription_id,
            external_id=context.external_id,
            status=status,
            previous_status=context.expected_status,
            occurred_at=now,
            region=context.region,
            pharmacy_id=context.pharmacy_id,
        )
        if event_type is not None
        else ""
    )
    async with single_statements(runtime.queue_pool) as connection:
        cursor = await connection.execute(
            _RECORD,
            {
                "prescription_id": context.prescription_id,
                "delivery_id": claimed.delivery_id,
                "expected": context.expected_status.value,
                "claim": claimed.claim,
                "ref": ref,
                "token": token or None,
                "now": now,
                "attempt_id": uuid.uuid4(),
                "series": context.series,
                "channel": channel.name,
                "action": channel.deliver_action,
                "attempt": claimed.attempt,
                "detail": f"delivered as {ref}",
                "started": started,
                "history_id": uuid.uuid4(),
                "status": status.value,
                "raw_status": raw_status,
                "source": Source.WORKER.value,
                "moved": moved,
                "mirror": channel.polls,
                "event_id": event_id,
                "event_type": event_type.value if event_type else "",
                "announce": announce,
                "body": body,
                "endpoints": list(context.endpoints),
                "notification_id": uuid.uuid4(),
                "patient_id": context.patient_id,
                "kind": kind.value if kind else "",
                "notify": notify,
                "opted_out": notification_tasks.OPTED_OUT,
                "jobs": json.dumps(jobs),
                "defers": bool(jobs),
                "job_id": job.job_id if job else None,
                "worker_id": job.worker_id if job else None,
                "finish_deletes": job.delete_when_succeeded if job else False,
            },
        )
        row = await cursor.fetchone()
    assert row is not None  # the statement's outer SELECT always returns its one row
    if job is not None and row[3]:
        job.finished = True
    return bool(row[0])
