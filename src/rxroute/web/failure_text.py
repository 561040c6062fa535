"""How rxroute tells a patient that a send is struggling or failed, cause by cause.

The recorded reason (``failure_reason``, an attempt's error) is written for support: reply
codes, the platform's own words. A patient never sees it; they get what the cause means for
them and the one thing that can help: wait (we are retrying), try again later (the platform
or mail service is down: another pharmacy would not help), choose another pharmacy (this
pharmacy cannot take it), or contact us. The prescription page and the "action needed" email
both read these words from here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

#: The first line of every failure, on the page and in the email.
FAILURE_HEADLINE = "We could not send this to the pharmacy."
#: The email's closing line: the page says what to do for the cause at hand.
FAILURE_NEXT_STEP = (
    "Our support team has been told. Open your prescription to see what to do next, or "
    "contact us and quote the prescription's reference."
)


class Offer(enum.StrEnum):
    """What the failure box offers the patient."""

    #: Send again to the same pharmacy (the far side was down, not the pharmacy's fault).
    TRY_AGAIN = "try-again"
    #: Choose another pharmacy: this one cannot take it.
    ANOTHER = "another"
    #: Nothing the patient can do themselves: contact us.
    CONTACT = "contact"


@dataclass(frozen=True)
class FailureText:
    """One cause, worded for the patient."""

    key: str
    cause: str
    next_step: str
    offer: Offer


DOWN = FailureText(
    key="down",
    cause="The service we send prescriptions through is not answering at the moment. This is "
    "not a problem with your pharmacy, so choosing another pharmacy would not help.",
    next_step="Please try again later: press “Try again” and we will send it to the same "
    "pharmacy. Our support team has been told and is keeping an eye on it.",
    offer=Offer.TRY_AGAIN,
)
MISSING = FailureText(
    key="missing",
    cause="We do not have all the details needed to send it to this pharmacy.",
    next_step="Please choose another pharmacy. Our support team has been told and will fix "
    "this pharmacy's details.",
    offer=Offer.ANOTHER,
)
EARLIER_COPY = FailureText(
    key="earlier-copy",
    cause="A copy sent earlier to another pharmacy could not be cancelled first, so we stopped "
    "to make sure it cannot be dispensed twice.",
    next_step="Please contact us and quote the reference above; there is nothing you need to "
    "choose again.",
    offer=Offer.CONTACT,
)
REFUSED = FailureText(
    key="refused",
    cause="This pharmacy cannot take the prescription through our system.",
    next_step="Please choose another pharmacy below and send it again.",
    offer=Offer.ANOTHER,
)

#: The reason's opening words, as the code that records it writes them. Checked in order;
#: anything else is a refusal by the far side.
_CAUSES: tuple[tuple[tuple[str, ...], FailureText], ...] = (
    # rxroute.deliveries.sending: every retry of a temporary failure was used up.
    (("not sent after",), DOWN),
    # A channel's NotSendable: our own records lack something the send needs.
    (("not sent:",), MISSING),
    # rxroute.deliveries.withdrawing: an earlier copy could not be taken back first.
    (("the earlier delivery",), EARLIER_COPY),
)


def explain_failure(reason: str | None) -> FailureText:
    """The patient's words for a recorded failure reason (never the reason itself)."""
    text = (reason or "").strip().lower()
    for openings, worded in _CAUSES:
        if text.startswith(openings):
            return worded
    return REFUSED


def failure_cause(reason: str | None) -> str:
    """One plain sentence on why the send failed, for the patient's email."""
    return explain_failure(reason).cause


#: While the send job is still retrying a temporary failure.
RETRYING = (
    "We could not get through to the pharmacy's system yet, so we are trying again "
    "automatically. You do not need to do anything; this page shows when it has gone."
)
#: While the first attempt is on its way.
SENDING_HINT = "This usually takes less than a minute."
#: Still not sent after :data:`SLOW_AFTER_SECONDS`, with no failed attempt recorded yet.
SLOW_HINT = (
    "This is taking longer than usual. We keep trying; you do not need to do anything, and "
    "this page shows when it has gone."
)
SLOW_AFTER_SECONDS = 60
