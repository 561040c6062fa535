"""The send job's common path: a first attempt, nothing to withdraw, nobody in the way.

Most sends are exactly that, so this is what they cost: three statements, each its own
transaction, and no transaction at all while the far side is called.

1. **Load** (a read): the prescription, its current delivery, everything the channel needs,
   whether any delivery waits to be withdrawn, and the event endpoints, in one SELECT.
2. **Claim** (one write statement): take the delivery with a fresh fencing ``claim``, count
   the attempt, mark it ``reached_out``, record ``sending`` and move the status.
3. **Record** (one write statement, after the call): the delivery live, the attempt row,
   the status fact (``ON CONFLICT DO NOTHING`` against the once-per-delivery index), the
   cached status, the outbox event with its endpoint deliveries, the patient's email
   (``skipped`` if they opted out) and every job these need (procrastinate's own
   ``procrastinate_defer_jobs_v1``), all or nothing.

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
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Text, TextClause, bindparam, exists, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, joinedload

from rxroute.channels.base import NotSendable, Purpose
from rxroute.channels.registry import get_channel
from rxroute.deliveries.claims import Claimed, RecordContext, SendOutcome
from rxroute.events import tasks as event_tasks
from rxroute.events.catalogue import event_body, event_type_for
from rxroute.events.endpoints import ENDPOINT_COLUMNS, ENDPOINT_ROWS, wanted_endpoints
from rxroute.models import Clinic, Delivery, DeliveryState, Pharmacy, Prescription
from rxroute.notifications import tasks as notification_tasks
from rxroute.notifications.kinds import kind_for_event
from rxroute.prescriptions.history import ONCE_PER_DELIVERY_SQL
from rxroute.prescriptions.lifecycle import Source, Status, decide
from rxroute.runtime import Runtime

#: Our own worker picking a prescription up is not news (no outbox event, no email): the
#: claim statement writes neither. Checked here rather than assumed.
_SENDING_IS_QUIET = event_type_for(Status.SENDING) is None


@asynccontextmanager
async def autocommit_session(runtime: Runtime) -> AsyncIterator[AsyncSession]:
    """A session whose every statement commits on its own: no BEGIN, no COMMIT round trip.

    Only for single statements that are whole transactions by themselves.
    """
    async with runtime.engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        async with AsyncSession(bind=connection, expire_on_commit=False, autoflush=False) as s:
            yield s


def _sql(statement: str) -> TextClause:
    """A statement with its layout squeezed out: short enough for psycopg's parse cache."""
    return text(" ".join(statement.split()))


# Short names: psycopg caches a parsed query only up to 4,096 characters, and with the
# tables' full names this one is longer (it would be parsed again for every send).
_P = aliased(Prescription, name="p")
_D = aliased(Delivery, name="d")
_PH = aliased(Pharmacy, name="ph")
_C = aliased(Clinic, name="c")
_OTHER = aliased(Delivery, name="o")


def _load_statement() -> Any:
    withdrawals = exists().where(_OTHER.prescription_id == _P.id, _OTHER.needs_withdrawal.is_(True))
    endpoints = (
        select(
            # As text: the row is de-duplicated (items are joined in), and JSON is unhashable.
            func.coalesce(
                func.cast(func.jsonb_agg(func.jsonb_build_array(*ENDPOINT_COLUMNS)), Text),
                "[]",
            )
        )
        .where(ENDPOINT_ROWS)
        .scalar_subquery()
    )
    # The delivery's pharmacy and the clinic are selected so that the channel's
    # session.get() finds them already loaded.
    return (
        select(_P, _D, _PH, _C, withdrawals.label("withdrawals"), endpoints.label("endpoints"))
        .outerjoin(_D, _D.id == _P.current_delivery_id)
        .outerjoin(_PH, _PH.id == _D.pharmacy_id)
        .outerjoin(_C, _C.id == _P.clinic_id)
        .where(_P.id == bindparam("prescription_id"))
        .options(joinedload(_P.items), joinedload(_P.patient), joinedload(_P.prescriber))
    )


#: Built once: constructing it for every send cost more CPU than running it.
_LOAD = _load_statement()

_CLAIM = _sql(
    """
    WITH p AS (
        SELECT id FROM prescriptions
        WHERE id = :prescription_id AND current_delivery_id = :delivery_id AND status = :status
        FOR UPDATE
    ), d AS (
        UPDATE deliveries
        SET claim = :claim, attempts_in_series = attempts_in_series + 1, reached_out = true,
            link_nonce = :nonce, updated_at = now()
        WHERE id = :delivery_id AND state = 'pending' AND NOT reached_out
          AND NOT needs_withdrawal AND series = :series AND attempts_in_series = :attempts
          AND claim IS NOT DISTINCT FROM :old_claim
          AND link_nonce IS NOT DISTINCT FROM :old_nonce
          AND EXISTS (SELECT 1 FROM p)
        RETURNING attempts_in_series
    ), h AS (
        INSERT INTO prescription_status_events
            (id, prescription_id, delivery_id, status, source, occurred_at)
        SELECT :history_id, :prescription_id, :delivery_id, :sending, :source, :now
        FROM d WHERE :moved
    ), u AS (
        UPDATE prescriptions SET status = :sending, updated_at = now()
        WHERE id = :prescription_id AND :moved AND EXISTS (SELECT 1 FROM d)
    )
    SELECT attempts_in_series FROM d
    """
)


async def claim(runtime: Runtime, prescription_id: uuid.UUID) -> Claimed | SendOutcome | None:
    """Claim the current delivery in the common case; None: take the general path."""
    async with autocommit_session(runtime) as session:
        row = (await session.execute(_LOAD, {"prescription_id": prescription_id})).unique().one()
        prescription: Prescription = row[0]
        delivery: Delivery | None = row[1]
        if row.withdrawals:
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
            endpoint_rows = [(uuid.UUID(r[0]), r[1], r[2], r[3]) for r in json.loads(row.endpoints)]
            endpoints, default_missing = wanted_endpoints(
                endpoint_rows, runtime.settings, sent_type.value
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
        attempt = await session.scalar(
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
        if attempt is None:
            return None
        pharmacy = await session.get(Pharmacy, delivery.pharmacy_id)
        return Claimed(
            delivery_id=delivery.id,
            number=delivery.number,
            channel=channel,
            claim=claim_id,
            attempt=int(attempt),
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
        WHERE id = :prescription_id AND current_delivery_id = :delivery_id
          AND status = :expected
        FOR UPDATE
    ), d AS (
        UPDATE deliveries
        SET state = 'live', provider_ref = COALESCE(provider_ref, :ref),
            provider_token = COALESCE(:token, provider_token), last_heard_at = :now,
            reached_out = true, delivered_at = COALESCE(delivered_at, :now),
            closed_reason = NULL, closed_at = NULL, claim = NULL, updated_at = now()
        WHERE id = :delivery_id AND claim = :claim AND state = 'pending'
          AND EXISTS (SELECT 1 FROM p)
        RETURNING provider_ref, provider_token
    ), a AS (
        INSERT INTO delivery_attempts (id, prescription_id, delivery_id, series, channel,
                                       action, attempt, outcome, error, started_at)
        SELECT :attempt_id, :prescription_id, :delivery_id, :series, :channel,
               :action, :attempt, 'succeeded', :detail, :started
        FROM d
    ), h AS (
        INSERT INTO prescription_status_events (id, prescription_id, delivery_id, status,
                                                provider_status, source, occurred_at)
        SELECT :history_id, :prescription_id, :delivery_id, :status, :raw_status,
               :source, :now
        FROM d
        ON CONFLICT (delivery_id, status) WHERE {ONCE_PER_DELIVERY_SQL} DO NOTHING
        RETURNING seq
    ), u AS (
        UPDATE prescriptions
        SET status = CASE WHEN :moved AND EXISTS (SELECT 1 FROM h) THEN :status
                          ELSE prescriptions.status END,
            provider_prescription_id = CASE WHEN :mirror THEN d.provider_ref
                                            ELSE prescriptions.provider_prescription_id END,
            provider_token = CASE WHEN :mirror THEN d.provider_token
                                  ELSE prescriptions.provider_token END,
            failure_reason = NULL, updated_at = now()
        FROM d WHERE prescriptions.id = :prescription_id
    ), o AS (
        INSERT INTO outbox_events (id, prescription_id, type, status, previous_status, body,
                                   occurred_at, created_at)
        SELECT :event_id, :prescription_id, :event_type, :status, :expected, :body, :now, :now
        FROM h WHERE :announce
        RETURNING seq
    ), e AS (
        INSERT INTO event_deliveries (id, event_id, endpoint_id, prescription_id, event_seq,
                                      state, attempts, next_attempt_at)
        SELECT gen_random_uuid(), :event_id, endpoint, :prescription_id, o.seq,
               'pending', 0, :now
        FROM o CROSS JOIN unnest(CAST(:endpoints AS uuid[])) AS endpoint
    ), n AS (
        INSERT INTO patient_notifications (id, prescription_id, patient_id, delivery_id, kind,
                                           status_event_seq, state, skip_reason, attempts)
        SELECT :notification_id, :prescription_id, patients.id, :delivery_id, :kind, h.seq,
               CASE WHEN patients.notifications_opt_out THEN 'skipped' ELSE 'pending' END,
               CASE WHEN patients.notifications_opt_out THEN :opted_out END, 0
        FROM h, o, patients
        WHERE patients.id = :patient_id AND :notify
        ON CONFLICT DO NOTHING
        RETURNING state
    ), j AS (
        SELECT procrastinate_defer_jobs_v1(ARRAY(
            SELECT jsonb_populate_record(NULL::procrastinate_job_to_defer_v1, job)
            FROM jsonb_array_elements(CAST(:jobs AS jsonb)) AS job
            WHERE (job->>'after' = 'email' AND EXISTS (SELECT 1 FROM n WHERE state = 'pending'))
               OR (job->>'after' = 'event' AND EXISTS (SELECT 1 FROM o))
        )) AS ids
    )
    SELECT (SELECT count(*) FROM d) AS applied, (SELECT count(*) FROM h) AS appended,
           (SELECT cardinality(ids) FROM j) AS jobs
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
) -> bool:
    """Record a delivered send in one statement; False: something moved, nothing written."""
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
    async with autocommit_session(runtime) as session:
        row = (
            await session.execute(
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
                },
            )
        ).one()
    return bool(row.applied)
