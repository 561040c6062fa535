"""The sandbox's reports: its counters and its configured accounts, as the control API
answers them (kept apart from :mod:`.state`, which holds the rules)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from .state import Sandbox


def stats(sandbox: Sandbox) -> dict[str, Any]:
    """What ``GET /_sandbox/stats`` answers: every counter a test or bench asserts on."""
    statuses = Counter(p.status for p in sandbox.prescriptions.values())
    c = sandbox.counters
    d = sandbox.dispatcher.stats
    return {
        "token_grants": c.token_grants,
        "token_refusals": c.token_refusals,
        "prescriber_logins": c.prescriber_logins,
        "prescriber_login_failures": c.prescriber_login_failures,
        "unauthenticated": c.unauthenticated,
        "business_errors": c.business_errors,
        "validation_errors": c.validation_errors,
        "prescriptions_issued": sum(c.issued_by_client_ref_id.values()),
        "issued_by_client_ref_id": dict(c.issued_by_client_ref_id),
        "prescriptions_by_status": dict(statuses),
        "emails_sent": len(sandbox.mailbox),
        "webhook_events": d.events,
        "webhooks_delivered": d.delivered,
        "webhooks_failed": d.failed_attempts,
        "webhooks_given_up": d.given_up,
        "webhook_duplicates_sent": d.duplicates_sent,
        "webhooks_reordered": d.reordered,
        "webhook_attempts_dropped": d.dropped_attempts,
        "webhooks_pending": sandbox.dispatcher.pending,
        "injected_errors": c.injected_errors,
        "injected_drops": c.injected_drops,
        "injected_latency": c.injected_latency,
        **sandbox.aimed.stats(),
        "clock_offset_seconds": sandbox.clock.offset,
    }


def accounts(sandbox: Sandbox) -> dict[str, Any]:
    """What ``GET /_sandbox/accounts`` answers: the configured clients, prescribers, clinics
    and contacts (sandbox credentials only), and the webhook settings."""
    return {
        "oauth_clients": [c.model_dump() for c in sandbox.config.oauth_clients],
        "prescribers": [p.model_dump() for p in sandbox.config.prescribers],
        "clinics": [c.model_dump() for c in sandbox.config.clinics],
        "contacts": [c.model_dump() for c in sandbox.config.contacts],
        "webhook": sandbox.webhook.model_dump(),
    }
