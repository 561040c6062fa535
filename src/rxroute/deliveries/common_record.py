"""The send's common path, its second statement: record a delivered send.

:mod:`rxroute.deliveries.common_path` says what the common path is and claims; this records
what the far side answered, in one statement that also finishes the send job and hands the
worker its next job (:class:`rxroute.job_preloads.HandOff`).
"""

from __future__ import annotations

import functools
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from rxroute import job_preloads
from rxroute.db.engine import outage_reason
from rxroute.db.queue_statements import NativeStatement, single_statements
from rxroute.deliveries.claims import Claimed
from rxroute.deliveries.common_path import PRESCRIPTION_GUARD, squeeze
from rxroute.events import tasks as event_tasks
from rxroute.events.catalogue import event_body, event_type_for
from rxroute.job_running import RunningJob
from rxroute.notifications import tasks as notification_tasks
from rxroute.notifications.kinds import kind_for_event
from rxroute.prescriptions.history import ONCE_PER_DELIVERY_SQL
from rxroute.prescriptions.lifecycle import Source, decide
from rxroute.runtime import Runtime

_RECORD = squeeze(
    PRESCRIPTION_GUARD  # noqa: S608 (a constant of ours, no input)
    + f""", d AS (
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
    """  # noqa: S608 (the index's own constant predicate, no input)
)

#: The record's four counts, then the job it hands off (:func:`_record_statement`).
_COUNTS = 4


@functools.cache
def _record_statement(hand_off: job_preloads.HandOff) -> NativeStatement:
    """:data:`_RECORD`, which also takes the worker's next job once it finished its own.

    With the hand-off (:class:`rxroute.job_preloads.HandOff`), a worker busy with sends
    spends no fetch of its own between them: the slot this send frees at its commit goes
    to the job the same statement took. Built on first use, once every task registered its
    preload: :func:`rxroute.job_preloads.hand_off_sql` builds a new hand-off when one
    registers later, and that keys a new statement.
    """
    statement = " ".join(
        [
            _RECORD.rstrip(),
            ",",
            hand_off.cte,
            "SELECT (SELECT count(*) FROM d) AS applied, (SELECT count(*) FROM h) AS appended,",
            "(SELECT cardinality(ids) FROM j) AS jobs, (SELECT count(*) FROM f) AS finished,",
            hand_off.columns,
            "FROM (SELECT 1) AS one",
            hand_off.joins,
        ]
    )
    # Over psycopg's parse-cache length with the next job's load: placeholders turned once.
    return NativeStatement.of(statement)


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
    hand_off = job is not None and job.may_hand_off()
    next_job = job_preloads.hand_off_sql("f")
    try:
        async with single_statements(runtime.queue_pool) as connection:
            cursor = await _record_statement(next_job).execute(
                connection,
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
                    "queues": job.queues if job else None,
                    "hand_off": hand_off,
                },
            )
            row = await cursor.fetchone()
    except BaseException as error:
        # Committed or not, nobody can tell: a job it took would never start here.
        if hand_off and job is not None and job.hand_off_lost is not None:
            job.hand_off_lost(outage_reason(error) or type(error).__name__)
        raise
    assert row is not None  # the statement's outer SELECT always returns its one row
    if job is not None and row[3]:
        job.finished = True
        handed = job_preloads.jobs_from_rows([row[_COUNTS:]], next_job.preloads) if hand_off else []
        job.handed_off = handed[0] if handed else None
    return bool(row[0])
