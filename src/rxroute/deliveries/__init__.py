"""The delivery ledger: every attempt to get a prescription to a pharmacy, for every channel.

``ledger`` holds the rules about deliveries (one open delivery per prescription, what a new
delivery must resolve first, how far-side facts move a delivery); ``sending`` is the send
job's body for every channel; ``withdrawing`` takes earlier deliveries back; ``commands``
are what patients and support ask for (send, re-route, cancel, void, retry, resend).
"""
