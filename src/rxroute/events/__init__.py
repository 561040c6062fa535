"""Events out: every change of a prescription's current status, sent to the platform as a
signed webhook (Standard Webhooks).

* :mod:`.catalogue`: which status change is which event type, and the event's body.
* :mod:`.outbox`: writes the event and one delivery per matching endpoint in the same
  transaction as the status change, and defers the delivery jobs in it too.
* :mod:`.endpoints`: where events go (the default endpoint from settings, and admins' own).
* :mod:`.delivery`: signing, sending and the retry schedule, in order per prescription.
* :mod:`.tasks`: the jobs (deliver, sweep, purge); :mod:`.console`: support's log and resend.
* :mod:`.receiver`: a small local receiver that verifies signatures, for the demo and tests.
"""
