"""After an attempt that may have reached the far side: adopt our copy, void stray ones.

The platform does not deduplicate, so a send whose earlier attempt may have landed
(``reached_out``) looks the prescription up by ``client_ref_id`` before it would issue
again (:func:`rxroute.deliveries.sending.send` step 3). Split from the send job so each
module holds one responsibility.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import structlog

from rxroute.channels.base import FarSideCopy
from rxroute.deliveries import ledger
from rxroute.deliveries.claims import Claimed, SendOutcome
from rxroute.prescriptions.lifecycle import Source, Status
from rxroute.runtime import Runtime

log = structlog.get_logger(__name__)


async def look_up(
    runtime: Runtime, prescription_id: uuid.UUID, claimed: Claimed, started: datetime
) -> SendOutcome | None:
    """Adopt our copy if an earlier attempt landed; void stray copies. None: not found."""
    copies = await claimed.channel.look_up(runtime, claimed.prepared)
    if copies is None:
        return None
    candidates = [c for c in copies if c.ref not in claimed.other_refs]
    ours = [c for c in candidates if c.destination in (None, claimed.destination)]
    # A live copy first; then a dispensed one (the truth, whichever delivery it was); a
    # voided or expired one only if no earlier delivery went to this pharmacy.
    preferred = (
        [c for c in ours if c.is_live]
        or [c for c in ours if c.status is Status.DISPENSED]
        or ([] if claimed.shares_destination else ours)
    )
    adopted = preferred[0] if preferred else None
    strays = [c for c in candidates if c is not adopted and c.is_live]
    voided: list[tuple[FarSideCopy, str | None]] = []
    for stray in strays:
        answer = await claimed.channel.withdraw(runtime, claimed.prepared, stray)
        voided.append((stray, answer.raw_status))
    async with runtime.sessionmaker() as session, session.begin():
        prescription, delivery = await ledger.lock_both(
            session, prescription_id, claimed.delivery_id
        )
        for stray, _raw in voided:
            session.add(
                ledger.attempt_row(
                    delivery,
                    "void",
                    "succeeded",
                    started,
                    f"voided stray platform copy {stray.ref} (contact {stray.destination})",
                )
            )
        if adopted is None:
            session.add(ledger.attempt_row(delivery, "lookup", "not_found", started))
            return None
        extra = f"; {len(voided)} stray copies voided" if voided else ""
        session.add(
            ledger.attempt_row(
                delivery, "lookup", "found", started, f"already delivered as {adopted.ref}{extra}"
            )
        )
        await ledger.observe(
            session,
            prescription,
            delivery,
            claimed.channel.delivered_status,
            source=Source.WORKER,
            mirror_ref=claimed.channel.polls,
            ref=adopted.ref,
            token=adopted.token,
            raw_status=adopted.raw_status,
        )
        if adopted.status is not claimed.channel.delivered_status:
            await ledger.observe(
                session,
                prescription,
                delivery,
                adopted.status,
                source=Source.POLL,
                implies=claimed.channel.delivered_status,
                mirror_ref=claimed.channel.polls,
                raw_status=adopted.raw_status,
            )
    log.info(
        "send_found_existing",
        prescription_id=str(prescription_id),
        ref=adopted.ref,
        strays=len(voided),
    )
    return SendOutcome("found", adopted.ref)
