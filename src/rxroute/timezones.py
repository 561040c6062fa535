"""Times people can read: the one place a stored moment becomes a local time.

rxroute stores every moment as an aware datetime in UTC; people read them in one configured
zone (``RXROUTE_DISPLAY_TIMEZONE``, ``Europe/London`` by default) with the zone named, so
"14:05 BST" is never mistaken for UTC. Pages, the JSON display strings the live timeline
shows and the PDF's issue date all come through here, so the rule (zone, format) changes in
one place.

A naive datetime is refused rather than converted: it carries no zone, and guessing one (the
server's, or UTC) is how a 12:00Z event came to be shown as "07:00 UTC".
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_DISPLAY_TIMEZONE = "Europe/London"

#: English month abbreviations, so the output does not depend on the process's locale.
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class NaiveDatetimeError(ValueError):
    """A datetime without a zone reached display code; its moment is unknown, so refuse it."""


class HasDisplayTimezone(Protocol):
    """Anything carrying the configured zone name (``Settings``), without importing config."""

    @property
    def display_timezone(self) -> str: ...


#: Where the display zone comes from: the settings, a zone name, or a loaded zone.
ZoneSource = HasDisplayTimezone | ZoneInfo | str


def load_zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; a ``ValueError`` saying what to use instead if it is unknown.

    Used by the settings validator, so a typo stops start-up instead of a page at run time.
    """
    key = name.strip()
    if not key:
        raise ValueError("is empty; set an IANA time zone name such as Europe/London")
    try:
        return ZoneInfo(key)
    # Unknown names raise ZoneInfoNotFoundError; malformed keys ("../x", "/etc/localtime")
    # ValueError; a folder name ("Europe") an OSError.
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"{key!r} is not a known IANA time zone; use a name such as "
            "Europe/London or America/New_York (names are case-sensitive)"
        ) from None


def zone_of(source: ZoneSource) -> ZoneInfo:
    """The display zone from settings, a zone name or a zone."""
    if isinstance(source, ZoneInfo):
        return source
    if isinstance(source, str):
        return load_zone(source)
    return load_zone(source.display_timezone)


def _require_aware(moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise NaiveDatetimeError(
            f"refusing to display a naive datetime ({moment.isoformat()}): "
            "its zone is unknown; store and pass aware UTC datetimes"
        )


def to_display(moment: datetime, source: ZoneSource) -> datetime:
    """``moment`` as a local time in the display zone (same instant, local wall clock)."""
    _require_aware(moment)
    return moment.astimezone(zone_of(source))


def zone_label(local: datetime) -> str:
    """The zone's abbreviation for that moment (GMT/BST, EST/EDT).

    Zones without a letter abbreviation report an offset like ``+04``; shown as ``UTC+04``
    so it still reads as a zone.
    """
    name = local.tzname() or ""
    if name[:1] in ("+", "-"):
        return f"UTC{name}"
    return name


def format_display(moment: datetime, source: ZoneSource, *, seconds: bool = False) -> str:
    """``25 Nov 2026, 14:05 GMT``: the local time with its zone named.

    ``seconds`` is for support's timelines, where several events fall in one minute.
    """
    local = to_display(moment, source)
    clock = f"{local:%H:%M:%S}" if seconds else f"{local:%H:%M}"
    return f"{local.day} {_MONTHS[local.month - 1]} {local.year}, {clock} {zone_label(local)}"


def display_date(moment: datetime, source: ZoneSource) -> date:
    """The calendar day ``moment`` falls on in the display zone (e.g. a document's issue date).

    00:30 BST on 1 July is still 30 June in UTC; people expect the local day.
    """
    return to_display(moment, source).date()


def utc_iso(moment: datetime) -> str:
    """``2026-07-01T12:00:00Z``: the exact moment for machines (``<time datetime>``) and hovers."""
    _require_aware(moment)
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
