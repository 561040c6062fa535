"""Every interleaving of what can happen after the first send keeps the ledger's promises.

Hypothesis draws sequences of:

* **send-job runs**, each with what the far side does to it: answers, fails with a 5xx,
  refuses, loses the answer after acting, or the **worker dies** (before the far side acted,
  or after it and before the job recorded anything; the next run must look up and adopt);
* **re-queues**: support's retry of a failed send, the patient sending a failed one again
  (same pharmacy or another);
* **re-routes** to another pharmacy, on the platform or through another channel;
* **the patient cancelling**;
* **the far side acting** on any copy it holds, the current delivery's or a superseded one's
  (the prescriber signs, the pharmacy prints or dispenses, it expires, the clinic voids it);
* **webhooks** about any of those, delivered in any order, late, and more than once (each
  redelivery a new event id), through the real ``webhooks.processing``.

* **reconciliation passes** (the real ``reconcile_once``, as if the quiet time had passed).

A send run may also have other steps happen *while its call is in flight* (after the far side
acted, before the job hears back): the platform's webhook racing its own answer, a re-route
or a cancel landing mid-call (a cancel's own request may die after its void landed).

The far side is in memory (:mod:`tests.deliveries.fake_far_side`), so an example takes
milliseconds on the real database: the platform channel itself (``erx``) is replaced through
the registry by a fake whose ``look_up`` returns its copies with their destinations, so
lookup, adoption and voiding of stray copies run for real, and a test-only ``fax`` channel
(region C, no lookup, a cancellation instead of a void) stands for "another channel".

Checked after every step (and inside in-flight calls):

* never two open (pending or live) deliveries, and the open one is the current one;
* the status is never behind the furthest far-side fact recorded for the current delivery
  (by ``lifecycle.RANK``), equals the status derived from the current delivery's facts, and
  never moves backwards once something reached the far side while the current delivery
  stays the same;
* each far-side status appears at most once per delivery in the history, and a platform
  delivery that is signed/printed/dispensed also has its ``issued``.

Then every webhook still owed is delivered (the platform retries until it gets a 200),
reconciliation runs, and the send job runs until it settles. At rest:

* the far side holds at most one live copy of the prescription; it is the current
  delivery's own, with the reference rxroute recorded; a live current delivery really has
  it; the status equals what the platform says of that copy (a cancelled or expired one may
  read either way, neither can be dispensed; dispensed must agree);
* nothing is voided or withdrawn unless someone cancelled (or the clinic voided on the
  platform), a withdrawn current delivery reads as final, and nothing is stuck in
  queued/sending.

``MAX_EXAMPLES`` random examples per run, plus the ``@example`` cases, which pin the
interleavings that broke this design while the test was written (each fails if its fix in
``deliveries/sending.py`` or ``deliveries/withdrawing.py`` is undone).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from rxroute.channels import registry
from rxroute.config import Settings
from rxroute.deliveries import commands, ledger
from rxroute.deliveries.sending import SendOutcome, send
from rxroute.models import (
    DeliveryState,
    InboundWebhookEvent,
    Patient,
    Pharmacy,
    Prescriber,
    Prescription,
    Role,
    User,
)
from rxroute.models.delivery import OPEN_STATES
from rxroute.prescriptions.errors import PrescriptionError
from rxroute.prescriptions.history import history
from rxroute.prescriptions.lifecycle import (
    FAR_SIDE_STATUSES,
    FINAL_STATUSES,
    LOCAL_STATUSES,
    Status,
    derive_status,
)
from rxroute.runtime import Runtime
from rxroute.webhooks.processing import process_event
from rxroute.webhooks.tasks import reconcile_once
from tests.deliveries.fake_far_side import FakeFax, FakePlatform, FarSide, WorkerCrashed
from tests.erx_sandbox import RecordingRetries
from tests.factories import (
    make_patient,
    make_pharmacy,
    make_prescriber,
    make_prescription,
    make_user,
)
from tests.webhooks.helpers import EVENT_TYPE, event_payload

MAX_EXAMPLES = 100


# --- the world ----------------------------------------------------------------------------------


@dataclass
class World:
    runtime: Runtime
    far: FarSide
    patient: User
    support: User
    prescriber_id: uuid.UUID
    patient_id: uuid.UUID
    #: Region B: two contacts on the platform; region C: two fax lines.
    pharmacies: list[Pharmacy]


@pytest.fixture
async def world(db: Runtime) -> AsyncIterator[World]:
    far = FarSide()
    registry.register("erx", lambda runtime: FakePlatform(far))
    registry.register("fax", lambda runtime: FakeFax(far))
    saved = db.settings
    db.settings = Settings(
        **{**saved.model_dump(), "region_channels": {"A": "email", "B": "erx", "C": "fax"}}
    )
    db.services.pop("channel:erx", None)
    db.services.pop("channel:fax", None)
    try:
        async with db.sessionmaker() as session, session.begin():
            patient = await make_patient(session)
            prescriber = await make_prescriber(session, db.secret_box)
            pharmacies = [
                await make_pharmacy(session, "B", platform_contact_id=5002),
                await make_pharmacy(session, "B", platform_contact_id=5003),
                await make_pharmacy(session, "C", platform_contact_id=None),
                await make_pharmacy(session, "C", platform_contact_id=None),
            ]
            patient_user = await make_user(session, Role.PATIENT, patient=patient)
            support = await make_user(session, Role.SUPPORT)
        yield World(db, far, patient_user, support, prescriber.id, patient.id, pharmacies)
    finally:
        db.settings = saved
        db.services.pop("channel:erx", None)
        db.services.pop("channel:fax", None)
        registry.unregister("erx")
        registry.unregister("fax")


# --- the steps ----------------------------------------------------------------------------------

FAULTS = [
    "ok",
    "ok",
    "ok",
    "crash_after",
    "crash_before",
    "lost_answer",
    "lost_request",
    "error",
    "reject",
]
ACTIONS = ["sign", "sign", "print", "dispense", "dispense", "expire", "void"]

act_step = st.tuples(st.just("act"), st.integers(0, 5), st.sampled_from(ACTIONS))
webhook_step = st.tuples(st.just("webhook"), st.integers(0, 12))
reroute_step = st.tuples(st.just("reroute"), st.integers(0, 3))
resend_step = st.tuples(st.just("resend"), st.integers(0, 3))
retry_step = st.tuples(st.just("retry"))
poll_step = st.tuples(st.just("poll"))
cancel_step = st.tuples(st.just("cancel"))
#: What may happen while a send job's call is in flight.
inner_step = st.sampled_from(["webhook"] * 4 + ["act"] * 4 + ["reroute"] * 2 + ["cancel"]).flatmap(
    lambda kind: {
        "webhook": webhook_step,
        "act": act_step,
        "reroute": reroute_step,
        "cancel": cancel_step,
    }[kind]
)
send_step = st.tuples(
    st.just("send"),
    st.sampled_from(FAULTS),
    st.sampled_from(["ok", "ok", "ok", "error", "crash_after"]),
    st.sampled_from([False, False, False, False, True]),
    st.lists(inner_step, max_size=2),
)
#: How often each kind of step is drawn: mostly send runs, the far side acting and webhooks;
#: a cancel ends most stories, so it is rare.
WEIGHTS = {
    "send": 8,
    "act": 6,
    "webhook": 5,
    "reroute": 3,
    "resend": 1,
    "retry": 1,
    "cancel": 1,
    "poll": 1,
}
KINDS: dict[str, st.SearchStrategy[tuple[Any, ...]]] = {
    "send": send_step,
    "act": act_step,
    "webhook": webhook_step,
    "reroute": reroute_step,
    "resend": resend_step,
    "retry": retry_step,
    "cancel": cancel_step,
    "poll": poll_step,
}
step = st.sampled_from([k for k, n in WEIGHTS.items() for _ in range(n)]).flatmap(KINDS.__getitem__)
Step = tuple[Any, ...]


@dataclass
class Watch:
    """What the last check saw, so the next can tell the status never moved backwards."""

    delivery: uuid.UUID | None = None
    status: Status | None = None
    checks: int = 0


async def _new_prescription(w: World, first: int) -> uuid.UUID:
    async with w.runtime.sessionmaker() as session, session.begin():
        patient = await session.get(Patient, w.patient_id)
        doctor = await session.get(Prescriber, w.prescriber_id)
        assert patient is not None and doctor is not None
        # Earlier examples' prescriptions are done: out of reconciliation's reach.
        await session.execute(
            update(Prescription).values(last_provider_update_at=datetime(2100, 1, 1, tzinfo=UTC))
        )
        pid = (await make_prescription(session, patient, doctor)).id
    await _command(w, "resend", first, pid)
    return pid


async def _command(w: World, kind: str, pharmacy_index: int, pid: uuid.UUID) -> None:
    """A patient's or support's command, in its own transaction; refusals are fine."""
    pharmacy = w.pharmacies[pharmacy_index % len(w.pharmacies)]
    try:
        if kind == "cancel":
            w.far.seen["cancel asked"] += 1
            try:
                await commands.cancel(w.runtime, w.patient, pid, reason=None)
            except WorkerCrashed:
                # The API process died after the far side acted: the request is lost, the
                # send job (if one is in flight) is another process and carries on.
                w.far.seen["cancel died after the void landed"] += 1
                return
            w.far.seen["cancelled"] += 1
            return
        async with w.runtime.sessionmaker() as session, session.begin():
            if kind == "resend":
                await commands.request_send(
                    session,
                    w.runtime,
                    w.patient,
                    pid,
                    region=pharmacy.region,
                    pharmacy_id=pharmacy.id,
                )
            elif kind == "reroute":
                await commands.reroute(
                    session,
                    w.runtime,
                    w.patient,
                    pid,
                    region=pharmacy.region,
                    pharmacy_id=pharmacy.id,
                    reason=None,
                )
            else:
                await commands.retry(session, w.support, pid)
        w.far.seen[f"{kind} accepted"] += 1
    except PrescriptionError as refused:
        w.far.seen[f"{kind} refused ({type(refused).__name__})"] += 1


async def _webhook(w: World, index: int) -> None:
    """Deliver an event the far side owes (0 is the newest), again if it was sent before."""
    if not w.far.outbox:
        return
    position = len(w.far.outbox) - 1 - index % len(w.far.outbox)
    await _deliver_event(w, position)


async def _deliver_event(w: World, position: int) -> None:
    owed = w.far.outbox[position]
    if position in w.far.sent:
        w.far.seen["webhook delivered again"] += 1
    w.far.sent.add(position)
    payload = event_payload(
        status=owed.status.value, provider_id=owed.ref, client_ref_id=owed.client_ref
    )
    async with w.runtime.sessionmaker() as session, session.begin():
        stored = InboundWebhookEvent(
            provider="signaturerx",
            provider_event_id=payload["id"],
            event_type=EVENT_TYPE,
            payload=payload,
        )
        session.add(stored)
        await session.flush()
        state = await process_event(session, stored.id)
    w.far.seen[f"webhook {state}"] += 1


async def _reconcile(w: World) -> None:
    """A reconciliation pass, as if the quiet time had passed (the real ``reconcile_once``).

    Earlier examples' prescriptions were pushed out of its reach when this one was made.
    """
    later = datetime.now(UTC) + timedelta(seconds=w.runtime.settings.reconcile_after_seconds + 60)
    counts = await reconcile_once(now=later)
    if counts["changed"]:
        w.far.seen["reconciliation changed a status"] += 1


async def _send_once(w: World, pid: uuid.UUID) -> SendOutcome | None:
    try:
        outcome = await send(w.runtime, pid, schedule_retry=RecordingRetries())
    except WorkerCrashed:
        return None
    w.far.seen[f"send: {outcome.result}"] += 1
    return outcome


async def _run(w: World, pid: uuid.UUID, action: Step, watch: Watch) -> None:
    kind = action[0]
    if kind == "send":
        _, deliver_fault, void_fault, lookup_fails, inner = action
        w.far.deliver_fault, w.far.void_fault, w.far.lookup_fails = (
            deliver_fault,
            void_fault,
            lookup_fails,
        )

        async def meanwhile() -> None:
            for nested in inner:
                await _run(w, pid, nested, watch)

        w.far.during_call = meanwhile if inner else None
        try:
            await _send_once(w, pid)
        finally:
            w.far.deliver_fault, w.far.void_fault, w.far.lookup_fails = "ok", "ok", False
            w.far.during_call = None
    elif kind == "act":
        w.far.act(action[1], action[2])
    elif kind == "webhook":
        await _webhook(w, action[1])
    elif kind == "poll":
        await _reconcile(w)
    elif kind in ("reroute", "resend"):
        await _command(w, kind, action[1], pid)
    else:
        await _command(w, kind, 0, pid)
    await _check(w, pid, watch)


# --- the invariants -----------------------------------------------------------------------------


async def _check(w: World, pid: uuid.UUID, watch: Watch) -> None:
    async with w.runtime.sessionmaker() as session:
        prescription = await session.get(Prescription, pid, populate_existing=True)
        assert prescription is not None
        deliveries = await ledger.deliveries_of(session, pid)
        events = await history(session, pid)
    watch.checks += 1
    status = Status(prescription.status)
    current = prescription.current_delivery_id

    open_ = [d for d in deliveries if d.state in OPEN_STATES]
    assert len(open_) <= 1, [(d.number, d.state) for d in deliveries]
    if open_:
        assert open_[0].id == current, "the open delivery is the current one"

    by_delivery: dict[uuid.UUID, list[Status]] = {}
    for row in events:
        if row.delivery_id is not None:
            by_delivery.setdefault(row.delivery_id, []).append(Status(row.status))
    for delivery in deliveries:
        facts = [s for s in by_delivery.get(delivery.id, []) if s in FAR_SIDE_STATUSES]
        repeated = [s for s, n in Counter(facts).items() if n > 1]
        assert not repeated, (delivery.number, "recorded twice:", repeated)
        if delivery.channel == "erx" and {Status.SIGNED, Status.PRINTED, Status.DISPENSED} & set(
            facts
        ):
            assert Status.ISSUED in facts, (delivery.number, "a transition skipped:", facts)

    mine = by_delivery.get(current, []) if current is not None else []
    furthest = max((s.rank for s in mine if s in FAR_SIDE_STATUSES), default=0)
    assert status.rank >= furthest, (status, "is behind a recorded fact", mine)
    assert status == derive_status(mine), (status, "is not what its facts say", mine)

    if watch.delivery == current and watch.status is not None:
        reached = watch.status in FAR_SIDE_STATUSES or watch.status in FINAL_STATUSES
        if reached:
            assert status.rank >= watch.status.rank, (watch.status, "moved back to", status)
            assert status not in LOCAL_STATUSES, (watch.status, "moved back to", status)
    watch.delivery, watch.status = current, status


async def _settle(w: World, pid: uuid.UUID, watch: Watch) -> None:
    """Every webhook owed is delivered, and the send job runs until nothing is left to do."""
    for _ in range(60):
        for position in range(len(w.far.outbox)):
            if position not in w.far.sent:
                await _deliver_event(w, position)
                await _check(w, pid, watch)
        # What no webhook could be matched to, reconciliation polls (a lost webhook delays a
        # status but never loses it).
        await _reconcile(w)
        await _check(w, pid, watch)
        outcome = await _send_once(w, pid)
        assert outcome is not None
        await _check(w, pid, watch)
        if outcome.result == "retry":
            continue
        async with w.runtime.sessionmaker() as session:
            prescription = await session.get(Prescription, pid)
            assert prescription is not None
            current = await ledger.current_delivery(session, prescription)
            waiting = await ledger.awaiting_withdrawal(session, pid)
        unsent = len(w.far.sent) < len(w.far.outbox)
        pending = current is not None and current.state == DeliveryState.PENDING.value
        if not waiting and not pending and not unsent:
            return
    raise AssertionError("the send job never settled")


async def _check_far_side(w: World, pid: uuid.UUID) -> None:
    async with w.runtime.sessionmaker() as session:
        prescription = await session.get(Prescription, pid)
        assert prescription is not None
        current = await ledger.current_delivery(session, prescription)
    assert current is not None
    status = Status(prescription.status)
    live = w.far.live_copies()
    event(f"final status: {status.value}")
    event(f"final delivery number: {min(current.number, 4)}")
    assert len(live) <= 1, ("live copies on the far side", live, status)
    if live:
        made_for, channel, ref = live[0]
        assert made_for == current.id, ("a live copy is not the current delivery's", live)
        assert channel == current.channel
        assert current.state in (DeliveryState.LIVE.value, DeliveryState.FAILED.value), (
            "a live copy of a delivery that is",
            current.state,
        )
        if current.provider_ref is not None:
            assert current.provider_ref == ref
    if current.state == DeliveryState.LIVE.value and not status.is_final:
        assert live and live[0][0] == current.id, ("says", status, "but nothing is live")
    if status is Status.VOIDED or current.state == DeliveryState.WITHDRAWN.value:
        asked = w.far.seen["cancel asked"] or w.far.seen["far side: void"]
        assert asked, ("withdrawn though nobody cancelled", status, current.closed_reason)
    if current.state == DeliveryState.WITHDRAWN.value:
        assert status.is_final, ("withdrawn, yet the prescription still says", status)
    assert status not in (Status.QUEUED, Status.SENDING), ("stuck in", status, current.state)
    if current.channel == "erx" and current.provider_ref in w.far.copies:
        truth = w.far.copies[current.provider_ref].status
        if status.is_final and truth.is_final:
            # A cancel that found the copy already expired (or the clinic's own void) may say
            # "cancelled" or "expired": neither can be dispensed. Dispensed must agree.
            assert (status is Status.DISPENSED) == (truth is Status.DISPENSED), (status, truth)
        else:
            assert status == truth, ("rxroute says", status, "the platform says", truth)


# --- the test -----------------------------------------------------------------------------------


@pytest.mark.slow
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
)
@given(
    # Mostly the platform (pharmacies 0 and 1), where copies can be looked up and voided.
    first=st.sampled_from([0, 0, 1, 1, 2, 3]),
    steps=st.lists(step, min_size=4, max_size=20),
)
# The platform's webhook overtakes its own answer to the issue.
@example(first=0, steps=[("send", "ok", "ok", False, [("act", 0, "sign"), ("webhook", 0)])])
@example(first=0, steps=[("send", "ok", "ok", False, [("webhook", 0)])])
# The worker dies after the issue landed; the next run adopts; a re-route voids it.
@example(
    first=0,
    steps=[
        ("send", "crash_after", "ok", False, []),
        ("reroute", 1),
        ("send", "ok", "ok", False, []),
    ],
)
# An ambiguous failure runs the series out; the patient picks another pharmacy, then region C.
@example(
    first=0,
    steps=[
        ("send", "lost_answer", "ok", False, []),
        ("send", "error", "ok", False, []),
        ("send", "error", "ok", False, []),
        ("resend", 1),
        ("send", "ok", "ok", False, []),
        ("reroute", 2),
        ("send", "ok", "ok", False, []),
    ],
)
# The old copy is dispensed before it could be voided.
@example(
    first=0,
    steps=[
        ("send", "ok", "ok", False, []),
        ("act", 0, "sign"),
        ("reroute", 1),
        ("act", 0, "dispense"),
        ("send", "ok", "ok", False, []),
        ("webhook", 0),
    ],
)
# Back to the first pharmacy after its copy (whose answer was lost) was voided; the new
# delivery's first worker dies before its issue lands, so the next run looks up and finds
# only the old, voided copy at the same pharmacy: not ours to adopt.
@example(
    first=0,
    steps=[
        ("send", "lost_answer", "ok", False, []),
        ("reroute", 1),
        ("send", "ok", "ok", False, []),
        ("reroute", 0),
        ("send", "crash_before", "ok", False, []),
        ("send", "ok", "ok", False, []),
    ],
)
# The first pharmacy refuses; the signed webhook of the second delivery's copy races its
# answer and matches no delivery yet (two have called the platform without learning an id):
# reconciliation must bring the status up to the platform's.
@example(
    first=1,
    steps=[
        ("send", "reject", "ok", False, []),
        ("reroute", 0),
        ("send", "ok", "ok", False, [("act", 0, "sign"), ("webhook", 0)]),
    ],
)
# The patient cancels while the issue is in flight; the request dies after its void landed.
# The next run's withdrawal finds nothing live and must finish the cancel, not leave the
# prescription "sending" with its delivery withdrawn.
@example(
    first=1,
    steps=[
        ("send", "reject", "ok", False, []),
        ("reroute", 0),
        ("send", "crash_after", "crash_after", False, [("cancel",)]),
    ],
)
# The second delivery's worker dies after its issue landed (and signed) and a re-route
# lands meanwhile; its copy is dispensed before it could be voided: it is the live delivery
# again, and its history has the issue it never recorded.
@example(
    first=0,
    steps=[
        ("send", "ok", "ok", False, []),
        ("reroute", 1),
        ("send", "crash_after", "ok", False, [("act", 0, "sign"), ("reroute", 0)]),
        ("act", 0, "dispense"),
        ("send", "ok", "ok", False, []),
    ],
)
# A re-route lands while the issue is in flight.
@example(first=0, steps=[("send", "ok", "ok", False, [("reroute", 1)])])
# Cancel while the issue is in flight, then late webhooks for the copy.
@example(
    first=0, steps=[("send", "ok", "ok", False, [("cancel",)]), ("act", 0, "sign"), ("webhook", 0)]
)
async def test_any_interleaving_keeps_one_live_copy_and_a_true_status(
    world: World, first: int, steps: list[Step]
) -> None:
    w = world
    w.far.reset()
    watch = Watch()
    pid = await _new_prescription(w, first)
    await _check(w, pid, watch)
    for action in steps:
        await _run(w, pid, action, watch)
    await _settle(w, pid, watch)
    await _check_far_side(w, pid)
    for what, n in w.far.seen.items():
        if n:
            event(what)
