"""How rxroute tells a patient that a send failed: the same words on the page and by email.

The prescription page shows :data:`FAILURE_HEADLINE` and :data:`FAILURE_NEXT_STEP` (with the
recorded reason in small print, for support); the "action needed" email says the same, and
adds :func:`failure_cause`: the recorded reason is written for support (reply codes, the
platform's own words), so the patient gets one plain sentence for its kind of cause.
"""

from __future__ import annotations

#: What a patient reads when a send failed, and what to do next. The platform's own words
#: follow in small print, for support.
FAILURE_HEADLINE = "We could not send this to the pharmacy."
FAILURE_NEXT_STEP = (
    "Our support team has been told. You can choose another pharmacy and try again, "
    "or contact us and quote the prescription number."
)

#: The reason's opening words, as the code that records it writes them, and what each
#: means for the patient. Checked in order; the last entry is the default.
_CAUSES: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        # rxroute.deliveries.sending: every retry of a temporary failure was used up.
        ("not sent after",),
        "We tried several times, but could not get through to the pharmacy's system.",
    ),
    (
        # A channel's NotSendable: our own records lack something the send needs.
        ("not sent:",),
        "Some details needed to send it are missing (for example the pharmacy's contact "
        "details), so it was not sent.",
    ),
    (
        # rxroute.deliveries.withdrawing: an earlier copy could not be taken back first.
        ("the earlier delivery",),
        "A copy sent earlier to another pharmacy could not be cancelled first, so we stopped "
        "to make sure it cannot be dispensed twice.",
    ),
)
_REFUSED = "The pharmacy's system did not accept it."


def failure_cause(reason: str | None) -> str:
    """One plain sentence on why the send failed, for the patient; never the reason itself."""
    text = (reason or "").strip().lower()
    for openings, sentence in _CAUSES:
        if text.startswith(openings):
            return sentence
    return _REFUSED
