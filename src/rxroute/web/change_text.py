"""How the pages say what happens to the copy a pharmacy holds when plans change.

The patient's change and cancel pages and support's void and re-route pages show the same
sentence, so the promise made before the button is one promise.
"""

from __future__ import annotations

from rxroute.channels.registry import get_channel
from rxroute.models import Prescription
from rxroute.prescriptions.lifecycle import Status
from rxroute.runtime import Runtime


def what_withdrawing_does(runtime: Runtime, prescription: Prescription, *, cancelling: bool) -> str:
    """One sentence on what happens to the copy at the current pharmacy, before anything new.

    Asked of the channel, not of the region's name: a channel that reports statuses (the
    platform) has the copy voided there; one that does not (email) tells the pharmacy.
    """
    old = prescription.pharmacy.name if prescription.pharmacy else "the pharmacy"
    status = Status(prescription.status)
    reached = status not in (Status.QUEUED, Status.SENDING, Status.FAILED)
    polls = bool(prescription.channel) and get_channel(runtime, str(prescription.channel)).polls
    if polls and reached:
        return (
            f"We first cancel the copy held on the e-prescription platform, so {old} "
            "cannot dispense it."
        )
    if polls:
        return (
            "If it already reached the e-prescription platform, we cancel the copy there "
            f"first, so {old} cannot dispense it."
        )
    if reached:
        return (
            f"We email {old} that it is cancelled and must not be dispensed; the link in "
            "their email stops working."
        )
    if cancelling:
        return (
            f"It is stopped before it goes out; if it was already emailed to {old}, we "
            "email them that it is cancelled and must not be dispensed."
        )
    return (
        f"If it was already emailed to {old}, we email them that it is cancelled and must "
        "not be dispensed."
    )
