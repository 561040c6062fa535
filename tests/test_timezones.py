"""Display times: converted to the configured zone, the zone named, naive datetimes refused."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rxroute.config import Settings
from rxroute.timezones import (
    NaiveDatetimeError,
    display_date,
    format_display,
    load_zone,
    to_display,
    utc_iso,
    zone_of,
)

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_winter_in_london_is_gmt() -> None:
    moment = datetime(2026, 11, 25, 14, 5, 33, tzinfo=UTC)
    assert format_display(moment, LONDON) == "25 Nov 2026, 14:05 GMT"
    assert format_display(moment, LONDON, seconds=True) == "25 Nov 2026, 14:05:33 GMT"


def test_summer_in_london_is_bst_an_hour_ahead() -> None:
    moment = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert format_display(moment, LONDON) == "1 Jul 2026, 13:00 BST"
    local = to_display(moment, LONDON)
    assert (local.hour, local.tzname()) == (13, "BST")
    assert local == moment  # the same instant, only the wall clock differs


def test_the_clock_change_itself() -> None:
    # UK clocks go forward at 01:00 UTC on 29 March 2026.
    before = datetime(2026, 3, 29, 0, 59, tzinfo=UTC)
    assert format_display(before, LONDON) == "29 Mar 2026, 00:59 GMT"
    assert format_display(before + timedelta(minutes=1), LONDON) == "29 Mar 2026, 02:00 BST"


def test_another_zone_through_the_setting() -> None:
    settings = _settings(display_timezone="America/New_York")
    summer = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    winter = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    assert format_display(summer, settings) == "1 Jul 2026, 08:00 EDT"
    assert format_display(winter, settings) == "15 Jan 2026, 07:00 EST"
    assert zone_of(settings) == NEW_YORK
    assert format_display(summer, "America/New_York") == "1 Jul 2026, 08:00 EDT"


def test_the_default_setting_is_london() -> None:
    settings = _settings()
    assert settings.display_timezone == "Europe/London"
    assert format_display(datetime(2026, 7, 1, 12, 0, tzinfo=UTC), settings).endswith("BST")


def test_an_aware_non_utc_input_is_converted_by_instant() -> None:
    # 17:30 in India is 12:00 UTC, 13:00 in London in summer.
    india = timezone(timedelta(hours=5, minutes=30))
    assert format_display(datetime(2026, 7, 1, 17, 30, tzinfo=india), LONDON) == (
        "1 Jul 2026, 13:00 BST"
    )


def test_a_zone_without_an_abbreviation_still_reads_as_a_zone() -> None:
    moment = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert format_display(moment, "Asia/Dubai") == "1 Jul 2026, 16:00 UTC+04"
    assert format_display(moment, "UTC") == "1 Jul 2026, 12:00 UTC"


@pytest.mark.parametrize(
    ("moment", "zone", "expected"),
    [
        # 23:30 UTC on 30 June is already 1 July in London (BST) ...
        (datetime(2026, 6, 30, 23, 30, tzinfo=UTC), LONDON, date(2026, 7, 1)),
        # ... but not in winter (GMT = UTC) ...
        (datetime(2026, 12, 31, 23, 30, tzinfo=UTC), LONDON, date(2026, 12, 31)),
        # ... and 02:00 UTC is still the day before in New York.
        (datetime(2026, 7, 1, 2, 0, tzinfo=UTC), NEW_YORK, date(2026, 6, 30)),
    ],
)
def test_display_date_is_the_local_day(moment: datetime, zone: ZoneInfo, expected: date) -> None:
    assert display_date(moment, zone) == expected


@pytest.mark.parametrize(
    "call",
    [
        lambda moment: to_display(moment, LONDON),
        lambda moment: format_display(moment, LONDON),
        lambda moment: display_date(moment, LONDON),
        lambda moment: utc_iso(moment),
    ],
    ids=["to_display", "format_display", "display_date", "utc_iso"],
)
def test_naive_datetimes_are_refused(call: object) -> None:
    assert callable(call)
    with pytest.raises(NaiveDatetimeError, match="naive datetime"):
        call(datetime(2026, 7, 1, 12, 0))


def test_utc_iso_is_the_exact_moment_in_utc() -> None:
    summer_london = datetime(2026, 7, 1, 13, 0, 5, 123456, tzinfo=LONDON)
    assert utc_iso(summer_london) == "2026-07-01T12:00:05Z"


@pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "europe/london", "Europe", "../etc/passwd"])
def test_unknown_zone_names_are_refused_clearly(name: str) -> None:
    with pytest.raises(ValueError, match="not a known IANA time zone") as caught:
        load_zone(name)
    assert repr(name) in str(caught.value)


def test_an_empty_zone_name_is_refused() -> None:
    with pytest.raises(ValueError, match="is empty"):
        load_zone("  ")


@given(
    st.datetimes(
        min_value=datetime(1990, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.just(UTC),
    ),
    st.sampled_from(["Europe/London", "America/New_York", "Australia/Lord_Howe", "UTC"]),
)
def test_conversion_keeps_the_instant_and_names_the_zone(moment: datetime, name: str) -> None:
    local = to_display(moment, name)
    # Same instant. (Compare as UTC: Python's cross-zone == is False for a wall time in the
    # repeated hour when the clocks go back, e.g. 01:00 on 31 Oct 1999 in London.)
    assert local.astimezone(UTC) == moment
    assert local.tzinfo == ZoneInfo(name)
    label = local.tzname() or ""
    label = f"UTC{label}" if label[:1] in ("+", "-") else label
    assert format_display(moment, name) == (
        f"{local.day} {local:%b %Y, %H:%M} {label}"  # the C locale's %b is English
    )
    assert display_date(moment, name) == local.date()
