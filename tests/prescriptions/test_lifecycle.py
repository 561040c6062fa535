"""The prescription lifecycle, checked against a table written out independently here.

Changing the ranks or local edges (or adding a status) without updating ``ALLOWED`` fails a
test: the table below is the documented lifecycle, not a copy of the code's.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rxroute.prescriptions.lifecycle import (
    FINAL_STATUSES,
    PROVIDER_STATUSES,
    InvalidTransition,
    Source,
    Status,
    can_transition,
    decide,
    derive_status,
)

DR, QU, SE, IS, EM, SI, PR, DI, FA, EX, VO = (
    Status.DRAFT,
    Status.QUEUED,
    Status.SENDING,
    Status.ISSUED,
    Status.EMAILED,
    Status.SIGNED,
    Status.PRINTED,
    Status.DISPENSED,
    Status.FAILED,
    Status.EXPIRED,
    Status.VOIDED,
)

#: Far-side facts: the furthest one wins, whatever order they come in.
FAR_SIDE: set[Status] = {IS, EM, SI, PR, DI, EX, VO}

#: The documented lifecycle of one delivery. Region B: draft -> queued -> sending -> issued ->
#: signed -> printed? -> dispensed | expired | voided; Region A: queued -> sending -> emailed
#: -> dispensed | expired | voided. A far-side fact takes effect from any earlier status (the
#: platform may report "signed" before our job recorded "issued"; its word wins over a send
#: we gave up on). Our own local facts (queued, sending, failed) count only until something
#: reached the far side. Support re-queues a failure.
ALLOWED: dict[Status, set[Status]] = {
    DR: {QU} | FAR_SIDE,
    QU: {SE, FA} | FAR_SIDE,
    SE: {FA} | FAR_SIDE,
    FA: {QU} | FAR_SIDE,
    IS: {SI, PR, DI, EX, VO},
    EM: {SI, PR, DI, EX, VO},
    SI: {PR, DI, EX, VO},
    PR: {DI, EX, VO},
    DI: set(),
    EX: set(),
    VO: set(),
}

#: Statuses only the platform (or pharmacy) reports.
PLATFORM_REPORTED: set[Status] = {IS, SI, PR, DI, EX, VO}

COMMAND_SOURCES = (Source.PATIENT, Source.API, Source.SUPPORT, Source.SYSTEM)
WORKER = (Source.WORKER,)
OBSERVING_SOURCES = (Source.WEBHOOK, Source.POLL, Source.PHARMACY)

ALL_PAIRS = list(itertools.product(list(Status), list(Status)))


def test_table_covers_every_status() -> None:
    assert set(ALLOWED) == set(Status)
    assert set(COMMAND_SOURCES) | set(OBSERVING_SOURCES) | set(WORKER) == set(Source)


@pytest.mark.parametrize(("current", "new"), ALL_PAIRS, ids=[f"{a}->{b}" for a, b in ALL_PAIRS])
def test_every_pair_against_the_documented_table(current: Status, new: Status) -> None:
    allowed = new in ALLOWED[current]
    assert can_transition(current, new) is allowed
    for source in OBSERVING_SOURCES + WORKER:
        # An observed fact (or our own worker's) is never refused; it moves only forwards.
        assert decide(current, new, source) is allowed
    for source in COMMAND_SOURCES:
        if allowed:
            assert decide(current, new, source) is True
        elif new in FAR_SIDE:
            assert decide(current, new, source) is False
        else:
            with pytest.raises(InvalidTransition) as caught:
                decide(current, new, source)
            assert caught.value.current is current
            assert caught.value.requested is new
            assert str(current) in str(caught.value)
            assert str(new) in str(caught.value)


def test_no_status_moves_to_itself() -> None:
    for status in Status:
        assert not can_transition(status, status)


@pytest.mark.parametrize("final", sorted(FINAL_STATUSES))
def test_final_statuses_have_no_exits(final: Status) -> None:
    assert final.is_final
    for new in Status:
        assert not can_transition(final, new)
        assert decide(final, new, Source.WEBHOOK) is False
        assert decide(final, new, Source.WORKER) is False
        if new not in FAR_SIDE:
            with pytest.raises(InvalidTransition):
                decide(final, new, Source.SUPPORT)


def test_final_and_provider_sets() -> None:
    assert {DI, EX, VO} == FINAL_STATUSES
    assert PLATFORM_REPORTED == PROVIDER_STATUSES
    assert [s for s in Status if s.is_final] == [DI, EX, VO]


def test_every_status_has_a_label() -> None:
    labels = [status.label for status in Status]
    assert all(labels)
    assert len(set(labels)) == len(labels)


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        ([], DR),
        ([QU], QU),
        ([QU, SE, IS, SI, DI], DI),
        ([QU, SE, IS, SI, PR, DI], DI),
        # Late facts are recorded but never move the status backwards.
        ([QU, SE, DI, SI], DI),
        ([QU, SE, SI, IS], SI),
        ([QU, SE, PR, SI, IS], PR),
        ([QU, SE, IS, VO, DI], VO),
        # The platform reports before our job recorded "issued".
        ([QU, SE, SI], SI),
        # A failed send re-queued by support, then sent.
        ([QU, SE, FA, QU, SE, IS], IS),
        # A send we gave up on turned out to have reached the platform.
        ([QU, SE, FA, IS], IS),
        # Region A.
        ([QU, EM, DI], DI),
        ([QU, SE, EM], EM),
        # Far-side facts count from any earlier status; local ones only along their edges.
        ([IS, SI, DI], DI),
        ([SE, QU], QU),
        # Our own failure after the platform spoke changes nothing.
        ([QU, SE, IS, FA], IS),
        ([QU, SE, SI, FA, QU], SI),
    ],
)
def test_derive_status(history: list[Status], expected: Status) -> None:
    assert derive_status(history) is expected


#: Position in issued < signed < printed < final; queued and sending come before all.
RANK: dict[Status, int] = {QU: 0, SE: 0, IS: 1, SI: 2, PR: 3, DI: 4, EX: 4, VO: 4}


@st.composite
def region_b_deliveries(draw: st.DrawFn) -> tuple[list[Status], Status]:
    """A valid Region B lifecycle, delivered in any order and with duplicates."""
    final = draw(st.sampled_from([DI, EX, VO]))
    lifecycle = [IS, SI]
    if draw(st.booleans()):
        lifecycle.append(PR)
    lifecycle.append(final)
    duplicates = draw(st.lists(st.sampled_from(lifecycle), max_size=6))
    delivered = draw(st.permutations(lifecycle + duplicates))
    return list(delivered), final


@given(region_b_deliveries())
def test_region_b_in_any_order_ends_final_and_never_moves_back(
    case: tuple[list[Status], Status],
) -> None:
    delivered, final = case
    history = [QU, SE, *delivered]
    rank = -1
    for length in range(2, len(history) + 1):
        current = derive_status(history[:length])
        assert RANK[current] >= rank, f"moved backwards to {current} in {history[:length]}"
        rank = RANK[current]
    assert derive_status(history) is final
