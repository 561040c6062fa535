"""How a region reads to a patient, and which region an address suggests.

Region codes ("A", "B") are routing keys (``RXROUTE_REGION_CHANNELS``); a patient has never
heard of them. Each region gets a display name and one line saying what happens to the
prescription there (``RXROUTE_REGION_DISPLAY``), and optionally the countries and postcode
areas it covers, so the send form can suggest the patient's region from their address
instead of preselecting an arbitrary one.

Kept apart from :mod:`rxroute.config` (which holds the setting) so the rule, the defaults and
the matching live together and the settings module stays about loading settings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

_AREA = re.compile(r"^[A-Z]{1,2}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")

# fmt: off
#: Scotland's postcode areas (the demo's Region A; TD straddles the border).
SCOTLAND_AREAS: tuple[str, ...] = (
    "AB", "DD", "DG", "EH", "FK", "G", "HS", "IV", "KA", "KW", "KY", "ML", "PA", "PH",
    "TD", "ZE",
)
#: England's postcode areas (the demo's Region B). Wales (CF, LD, LL, NP, SA) and Northern
#: Ireland (BT) are left out, so a patient there gets no suggestion rather than a wrong one.
ENGLAND_AREAS: tuple[str, ...] = (
    "AL", "B", "BA", "BB", "BD", "BH", "BL", "BN", "BR", "BS", "CA", "CB", "CH", "CM",
    "CO", "CR", "CT", "CV", "CW", "DA", "DE", "DH", "DL", "DN", "DT", "DY", "E", "EC",
    "EN", "EX", "GL", "GU", "HA", "HD", "HG", "HP", "HR", "HU", "HX", "IG", "IP", "KT",
    "L", "LA", "LE", "LN", "LS", "LU", "M", "ME", "MK", "N", "NE", "NG", "NN", "NR",
    "NW", "OL", "OX", "PE", "PL", "PO", "PR", "RG", "RH", "RM", "S", "SE", "SG", "SK",
    "SL", "SM", "SN", "SO", "SP", "SR", "SS", "ST", "SW", "SY", "TA", "TF", "TN", "TQ",
    "TR", "TS", "TW", "UB", "W", "WA", "WC", "WD", "WF", "WN", "WR", "WS", "WV", "YO",
)
# fmt: on


class RegionDisplay(BaseModel):
    """One region as patients see it (``RXROUTE_REGION_DISPLAY``, JSON keyed by region code)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: "Scotland": what the region is called on the send form.
    name: str = Field(min_length=1, max_length=60)
    #: One line on what happens to a prescription there, tied to the option for screen readers.
    explanation: str = Field(min_length=1, max_length=200)
    #: ISO 3166 alpha-2 codes of the countries the region covers (empty: no suggestion).
    countries: tuple[str, ...] = ()
    #: Postcode areas (the letters a postcode starts with); empty: the whole country.
    postcode_areas: tuple[str, ...] = ()

    @field_validator("name", "explanation")
    @classmethod
    def _trimmed(cls, value: str) -> str:
        text = " ".join(value.split())
        if not text:
            raise ValueError("must not be blank")
        return text

    @field_validator("countries")
    @classmethod
    def _countries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        codes = tuple(code.strip().upper() for code in value)
        bad = [code for code in codes if not _COUNTRY.match(code)]
        if bad:
            raise ValueError(f"{bad} are not two-letter country codes (e.g. GB)")
        return codes

    @field_validator("postcode_areas")
    @classmethod
    def _areas(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        areas = tuple(area.strip().upper() for area in value)
        bad = [area for area in areas if not _AREA.match(area)]
        if bad:
            raise ValueError(f"{bad} are not postcode areas (one or two letters, e.g. EH)")
        return areas


DEFAULT_REGION_DISPLAY: dict[str, RegionDisplay] = {
    "A": RegionDisplay(
        name="Scotland",
        explanation="We email the prescription to your pharmacy as a secure PDF.",
        countries=("GB",),
        postcode_areas=SCOTLAND_AREAS,
    ),
    "B": RegionDisplay(
        name="England",
        explanation="Electronic prescription: your pharmacy can see it once your prescriber "
        "has signed it.",
        countries=("GB",),
        postcode_areas=ENGLAND_AREAS,
    ),
}


def fallback_display(code: str) -> RegionDisplay:
    """A served region nobody described yet: its code, and no address suggestion."""
    return RegionDisplay(
        name=f"Region {code}", explanation=f"Pharmacies in region {code}.", countries=()
    )


def postcode_area(postcode: str) -> str:
    """The letters a UK-style postcode starts with ("EH1 1YZ" -> "EH"); "" if none."""
    match = re.match(r"[A-Z]{1,2}", "".join(postcode.split()).upper())
    return match.group(0) if match else ""


def suggest_region(
    displays: Mapping[str, RegionDisplay], served: list[str], country: str, postcode: str
) -> str | None:
    """The one served region the address falls in, or None when none or several match.

    A region listing the postcode's area beats one covering the whole country; a tie is no
    suggestion (a wrong preselection is worse than none).
    """
    nation = country.strip().upper()
    area = postcode_area(postcode)
    exact: list[str] = []
    whole_country: list[str] = []
    for code in served:
        display = displays.get(code)
        if display is None or nation not in display.countries:
            continue
        if not display.postcode_areas:
            whole_country.append(code)
        elif area and area in display.postcode_areas:
            exact.append(code)
    for candidates in (exact, whole_country):
        if len(candidates) == 1:
            return candidates[0]
        if candidates:
            return None
    return None
