"""What an API key may do. A key carries a set of these; each operation needs one."""

from __future__ import annotations

import enum


class Scope(enum.StrEnum):
    #: Upsert patients by the platform's ID, and invite them to sign in.
    PATIENTS_WRITE = "patients:write"
    #: Create prescriptions (``POST /api/v1/prescriptions``).
    PRESCRIPTIONS_WRITE = "prescriptions:write"
    #: List and read any prescription, with its history and deliveries.
    PRESCRIPTIONS_READ = "prescriptions:read"
    #: Send, re-route and cancel on the patient's behalf.
    PRESCRIPTIONS_SEND = "prescriptions:send"
    #: Search the pharmacies (``GET /api/v1/pharmacies``).
    PHARMACIES_READ = "pharmacies:read"
    #: List the prescribers with their ids and external ids (``GET /api/v1/prescribers``).
    PRESCRIBERS_READ = "prescribers:read"


def parse_scopes(raw: str | list[str]) -> list[Scope]:
    """Scopes from ``a,b`` or a list, de-duplicated in a stable order.

    Raises ``ValueError`` naming the unknown scope and listing the known ones, for a CLI
    line or a form error a person can act on.
    """
    names = raw.split(",") if isinstance(raw, str) else raw
    found: list[Scope] = []
    for name in (n.strip() for n in names):
        if not name:
            continue
        try:
            scope = Scope(name)
        except ValueError:
            known = ", ".join(s.value for s in Scope)
            raise ValueError(f"unknown scope {name!r}; known scopes: {known}") from None
        if scope not in found:
            found.append(scope)
    if not found:
        raise ValueError("give at least one scope")
    return found
