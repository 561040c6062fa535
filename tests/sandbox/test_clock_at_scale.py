"""The sandbox's clock and state file stay cheap with many prescriptions held.

A reconciliation benchmark loads the sandbox with 100,000 prescriptions from a state file.
The clock used to walk all of them every 50 ms and before every request, and the state file
was serialised every second to see whether anything changed: either alone took more than
the sandbox's whole time. Now the clock pops only what is due (``sandbox/due.py``) and the
state file is written only after a change (``Sandbox.revision``, the clock's offset).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from rxroute.sandbox import persist
from rxroute.sandbox.persist import StateFile, restore
from rxroute.sandbox.records import Prescription
from rxroute.sandbox.state import Sandbox

from .conftest import fast_config

EXPIRE_AFTER = 28 * 24 * 3600.0


def held(prescription_id: str, status: str, issued_ago: float) -> Prescription:
    issued_at = time.time() - issued_ago
    return Prescription(
        id=prescription_id,
        client_ref_id=f"ref-{prescription_id}",
        clinic_id=994,
        contact_id=1,
        prescriber_id=501,
        patient={"first_name": "Jane", "last_name": "Testpatient"},
        medicines=[{"description": "Bench item", "quantity": "1", "directions": "Take"}],
        notes=None,
        notify=False,
        token=f"token-{prescription_id}",
        link_base="http://sandbox.test",
        issued_at=issued_at,
        status=status,
        history=[{"status": "issued", "at": "2026-01-01T00:00:00.000Z"}],
    )


def saved(*prescriptions: Prescription) -> dict[str, Any]:
    return {"version": persist.VERSION, "prescriptions": [asdict(p) for p in prescriptions]}


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    config = fast_config()
    timings = config.timings.model_copy(
        update={"sign_delay_seconds": 60.0, "expire_after_seconds": EXPIRE_AFTER}
    )
    made = Sandbox(config.model_copy(update={"timings": timings}))
    yield made
    await made.aclose()


async def test_restored_prescriptions_are_signed_and_expired_when_due(sandbox: Sandbox) -> None:
    restore(
        sandbox,
        saved(
            held("SRXDUE", "issued", issued_ago=120),
            held("SRXNOTYET", "issued", issued_ago=0),
            held("SRXSTALE", "signed", issued_ago=EXPIRE_AFTER + 1),
            held("SRXDONE", "dispensed", issued_ago=EXPIRE_AFTER + 1),
        ),
    )
    sandbox.tick()
    statuses = {p.id: p.status for p in sandbox.prescriptions.values()}
    assert statuses == {
        "SRXDUE": "signed",
        "SRXNOTYET": "issued",
        "SRXSTALE": "expired",
        "SRXDONE": "dispensed",
    }
    sandbox.clock.advance(60)
    sandbox.tick()
    assert sandbox.prescriptions["SRXNOTYET"].status == "signed"
    # A voided one leaves the queues when it comes up, without being moved again.
    sandbox.void(sandbox.prescriptions["SRXDUE"])
    sandbox.clock.advance(EXPIRE_AFTER)
    sandbox.tick()
    assert sandbox.prescriptions["SRXDUE"].status == "voided"
    assert sandbox.prescriptions["SRXNOTYET"].status == "expired"
    assert [h["status"] for h in sandbox.prescriptions["SRXDUE"].history] == [
        "issued",
        "signed",
        "voided",
    ]


class NotToBeWalked(dict[str, Prescription]):
    def values(self) -> Any:
        raise AssertionError("the clock walked every prescription")

    def __iter__(self) -> Any:
        raise AssertionError("the clock walked every prescription")


async def test_a_tick_with_nothing_due_reads_no_prescription(sandbox: Sandbox) -> None:
    restore(sandbox, saved(*(held(f"SRX{n:06d}", "signed", issued_ago=60) for n in range(1000))))
    sandbox.prescriptions = NotToBeWalked(sandbox.prescriptions)
    sandbox.tick()
    sandbox.clock.advance(EXPIRE_AFTER)
    sandbox.tick()
    assert {p.status for p in dict.values(sandbox.prescriptions)} == {"expired"}


async def test_an_unchanged_sandbox_is_not_serialised_again(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    restore(sandbox, saved(held("SRXONE", "signed", issued_ago=10)))
    serialised: list[int] = []
    real = persist.snapshot

    def counted(target: Sandbox) -> dict[str, Any]:
        serialised.append(target.revision)
        return real(target)

    monkeypatch.setattr(persist, "snapshot", counted)
    state = StateFile(tmp_path / "state.json")
    assert state.save(sandbox)
    assert not state.save(sandbox)
    assert len(serialised) == 1
    sandbox.tick()  # nothing due: no change
    assert not state.save(sandbox)
    sandbox.clock.advance(5)
    assert state.save(sandbox)
    sandbox.expire(sandbox.prescriptions["SRXONE"])
    assert state.save(sandbox)
    assert not state.save(sandbox)
    assert len(serialised) == 3
    # What was written is what a fresh sandbox loads.
    fresh = Sandbox(fast_config())
    assert StateFile(tmp_path / "state.json").load(fresh)
    assert fresh.prescriptions["SRXONE"].status == "expired"
    assert fresh.clock.offset == 5
    await fresh.aclose()
