"""Business rules for prescriptions. Services add and flush; the caller owns the transaction.

Sending, re-routing, cancelling and retrying are rules about deliveries and live in
:mod:`rxroute.deliveries.commands`; this module keeps the names the endpoints and pages use.
"""

from __future__ import annotations

from rxroute.deliveries.commands import cancel, request_send, reroute, retry, source_for

__all__ = ["cancel", "request_send", "reroute", "retry", "source_for"]
