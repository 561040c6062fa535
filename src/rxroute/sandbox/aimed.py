"""Faults aimed at one operation for a count: the deterministic half of fault injection.

Random faults (``Faults``) model a flaky network over many calls. A test that must stage one
precise situation, such as "the answer to the next issue is lost while the tokens are warm",
needs a fault that hits exactly the call it names and nothing else, with no dice involved.
Armed faults wait in arrival order per operation; each call of that operation takes the
oldest one and uses up one of its count. The fault is taken when the request arrives, so
concurrent calls are matched in the order the sandbox received them.

Everything here runs on the sandbox's event loop (see ``state``), so no locks are needed.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

#: What a fault can be aimed at, with the request that is that operation.
OPERATIONS: dict[str, str] = {
    "token": "POST /oauth/token",
    "login": "POST /api/v1/login",
    "issue": "POST /api/v1/prescriptions",
    "lookup": "GET /api/v1/prescriptions?client_ref_id=...",
    "get": "GET /api/v1/prescriptions/{id}",
    "void": "POST /api/v1/prescriptions/{id}/void",
    "clinics": "GET /api/v1/clinics",
    "contacts": "GET /api/v1/contacts",
}

ERROR = "error"
DROP = "drop_after_processing"
LATENCY = "latency"
#: The platform's own "no": ``success: false`` in an HTTP 200, nothing processed. No random
#: fault does this; it stages a failure a client must not retry (the README's recipe).
REJECT = "reject"
#: The same misbehaviour the random faults have (a 5xx with nothing processed, an answer
#: lost after processing, or only a slow answer), and a business rejection.
KINDS = (ERROR, DROP, LATENCY, REJECT)
#: What a ``reject`` fault answers: plainly staged, so nobody mistakes it for a real reason.
REJECT_MESSAGE = "Rejected by the sandbox: a staged fault (nothing was processed)."
ERROR_STATUSES = (500, 502, 503)
MAX_COUNT = 1000
MAX_LATENCY_MS = 120_000

_FIELDS = ("operation", "fault", "count", "status_code", "latency_ms")
_ONE_ID = re.compile(r"^/api/v1/prescriptions/([^/]+)$")
_VOID = re.compile(r"^/api/v1/prescriptions/([^/]+)/void$")


def operation_of(method: str, path: str) -> str | None:
    """The operation a request is, or None for anything a fault cannot be aimed at."""
    fixed = {
        ("POST", "/oauth/token"): "token",
        ("POST", "/api/v1/login"): "login",
        ("POST", "/api/v1/prescriptions"): "issue",
        ("GET", "/api/v1/prescriptions"): "lookup",
        ("GET", "/api/v1/clinics"): "clinics",
        ("GET", "/api/v1/contacts"): "contacts",
    }.get((method, path))
    if fixed is not None:
        return fixed
    if method == "GET" and _ONE_ID.match(path):
        return "get"
    if method == "POST" and _VOID.match(path):
        return "void"
    return None


class AimedFaultError(ValueError):
    """The arming request is wrong; ``errors`` names each bad field and what would be right."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{key}: {msg}" for key, msgs in errors.items() for msg in msgs))


@dataclass(frozen=True)
class AimedSpec:
    """A validated arming request."""

    operation: str
    fault: str
    count: int = 1
    status_code: int = 500
    latency_ms: int = 0


@dataclass
class AimedFault:
    """One armed fault and how many calls it still has to hit."""

    id: int
    spec: AimedSpec
    remaining: int

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "operation": self.spec.operation,
            "fault": self.spec.fault,
            "count": self.spec.count,
            "remaining": self.remaining,
            "latency_ms": self.spec.latency_ms,
        }
        if self.spec.fault == ERROR:
            body["status_code"] = self.spec.status_code
        return body


def _whole(value: Any) -> bool:
    # JSON true is an int to Python; a count of "true" is a typo, not 1.
    return isinstance(value, int) and not isinstance(value, bool)


def parse_spec(payload: dict[str, Any]) -> AimedSpec:
    """Validate ``{"operation", "fault", "count", "status_code", "latency_ms"}``.

    Every problem is reported at once, each naming its field and the accepted values, so a
    test author fixes the request in one go.
    """
    errors: dict[str, list[str]] = {}
    for key in payload:
        if key not in _FIELDS:
            errors.setdefault(key, []).append(f"Unknown field; use {', '.join(_FIELDS)}.")
    operation = payload.get("operation")
    if operation not in OPERATIONS:
        got = "is required" if operation is None else f"{operation!r} is unknown"
        errors["operation"] = [f"The operation {got}; use one of {', '.join(OPERATIONS)}."]
    fault = payload.get("fault")
    if fault not in KINDS:
        got = "is required" if fault is None else f"{fault!r} is unknown"
        errors["fault"] = [f"The fault {got}; use one of {', '.join(KINDS)}."]
    count = payload.get("count", 1)
    if not _whole(count) or not 1 <= count <= MAX_COUNT:
        errors["count"] = [f"The count must be a whole number from 1 to {MAX_COUNT}."]
    status_code = payload.get("status_code", 500)
    if "status_code" in payload and fault != ERROR:
        errors["status_code"] = ['Only a fault of "error" has a status code.']
    elif status_code not in ERROR_STATUSES or not _whole(status_code):
        allowed = ", ".join(str(s) for s in ERROR_STATUSES)
        errors["status_code"] = [f"The status code must be one of {allowed}."]
    latency_ms = payload.get("latency_ms", 0)
    if not _whole(latency_ms) or not 0 <= latency_ms <= MAX_LATENCY_MS:
        errors["latency_ms"] = [f"latency_ms must be a whole number from 0 to {MAX_LATENCY_MS}."]
    elif fault == LATENCY and latency_ms == 0:
        errors["latency_ms"] = ['A fault of "latency" needs latency_ms above 0.']
    if errors:
        raise AimedFaultError(errors)
    return AimedSpec(
        operation=str(operation),
        fault=str(fault),
        count=int(count),
        status_code=int(status_code),
        latency_ms=int(latency_ms),
    )


class AimedFaults:
    """The armed faults, oldest first, and a tally of the ones that fired."""

    def __init__(self) -> None:
        self._armed: list[AimedFault] = []
        self._next_id = 1
        self.fired: Counter[tuple[str, str]] = Counter()

    def arm(self, spec: AimedSpec) -> AimedFault:
        armed = AimedFault(id=self._next_id, spec=spec, remaining=spec.count)
        self._next_id += 1
        self._armed.append(armed)
        return armed

    def take(self, operation: str | None) -> AimedSpec | None:
        """The fault this call of ``operation`` gets, using up one count; None if none is armed."""
        if operation is None:
            return None
        for armed in self._armed:
            if armed.spec.operation == operation:
                armed.remaining -= 1
                if armed.remaining == 0:
                    self._armed.remove(armed)
                self.fired[(operation, armed.spec.fault)] += 1
                return armed.spec
        return None

    def armed(self) -> list[AimedFault]:
        return list(self._armed)

    def clear(self, operation: str | None = None) -> int:
        """Disarm everything, or only what is aimed at ``operation``; returns how many."""
        kept = [a for a in self._armed if operation is not None and a.spec.operation != operation]
        cleared = len(self._armed) - len(kept)
        self._armed = kept
        return cleared

    def stats(self) -> dict[str, Any]:
        by_operation: dict[str, dict[str, int]] = {}
        for (operation, fault), n in sorted(self.fired.items()):
            by_operation.setdefault(operation, {})[fault] = n
        return {
            "aimed_faults_fired": sum(self.fired.values()),
            "aimed_faults_fired_by_operation": by_operation,
            "aimed_faults_armed": sum(a.remaining for a in self._armed),
        }
