"""The one rule for an email address: the ``email-validator`` library, without DNS lookups.

Every place rxroute accepts an address (a pharmacy or prescriber typed by an admin or
imported, a staff invitation, a patient from the API, support's change of a patient's
address, the payload checked before the platform sees it) asks here, so an address one form
accepts is never refused by another. No DNS lookup: an address whose domain cannot receive
mail bounces visibly, which is better than a form that depends on the resolver. (The provider
sandbox keeps its own check: it imports nothing of rxroute, as the platform would not.)
"""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

#: RFC 5321's limit on a whole address.
MAX_EMAIL_LENGTH = 320
EXAMPLE = "name@example.com"


def normalise_email(raw: str) -> str | None:
    """The address, trimmed and normalised (lower case), or None when it is not one."""
    candidate = raw.strip()
    if not candidate or len(candidate) > MAX_EMAIL_LENGTH:
        return None
    try:
        checked = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError:
        return None
    return checked.normalized.lower()


def check_email(raw: str) -> tuple[str | None, str | None]:
    """(normalised address, None) or (None, a sentence saying why, for a form)."""
    try:
        checked = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        return None, f"Enter an email address like {EXAMPLE} ({exc})."
    if len(checked.normalized) > MAX_EMAIL_LENGTH:
        return None, f"An email address has at most {MAX_EMAIL_LENGTH} characters."
    return checked.normalized.lower(), None
