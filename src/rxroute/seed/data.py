"""Deterministic synthetic demo data, as plain values (no database here).

Everything is generated from fixed lists with a seeded RNG, so two runs of ``rxroute seed``
produce the same records and the sandbox's default accounts (``sandbox/default_config.json``,
generated from :func:`region_b_pharmacies`) line up with what the seed stores. All people,
emails and phone numbers are obviously fake: ``example.com`` addresses, ``+44 7700 900xxx``
phones, NHS numbers from the 999 test range.

The medicines live in one place, the sample formulary (:mod:`rxroute.formulary.sample`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date

DEMO_PASSWORD = "rxroute-demo"  # noqa: S105 - the documented demo login, development only
DEMO_PATIENT_EMAIL = "patient@example.com"
DEMO_SUPPORT_EMAIL = "support@example.com"
DEMO_ADMIN_EMAIL = "admin@example.com"
#: Signs in as the first demo prescriber (:func:`prescribers`) and writes prescriptions.
DEMO_PRESCRIBER_EMAIL = "dr.demo@example.com"

#: The demo clinic on the platform: the API wants the internal ID, the dashboard shows the
#: display ID. Keeping both, clearly named, is the case study's lesson 2.
CLINIC_INTERNAL_ID = 994
CLINIC_DISPLAY_ID = "201334"
CLINIC_NAME = "rxroute Demo Weight Clinic"

#: ``rxroute seed --patient`` (and the demo patient's "add demo prescriptions"): how many
#: drafts by default, and at most at once (a list a patient can still read).
PATIENT_DRAFTS_DEFAULT = 6
MAX_PATIENT_DRAFTS = 100

FIRST_CONTACT_ID = 5001
PHARMACIES_PER_REGION = 36


@dataclass(frozen=True)
class PharmacySeed:
    name: str
    address_line1: str
    address_line2: str
    town: str
    postcode: str
    region: str
    email: str
    contact_id: int | None
    phone: str | None = None
    opening_hours: str | None = None


@dataclass(frozen=True)
class PrescriberSeed:
    full_name: str
    email: str
    registration_number: str
    platform_email: str
    platform_password: str
    signing_pin: str
    platform_prescriber_id: int
    active_on_platform: bool


@dataclass(frozen=True)
class PatientSeed:
    first_name: str
    last_name: str
    date_of_birth: date
    gender: str
    email: str
    phone: str
    address_line1: str
    address_line2: str
    town: str
    postcode: str
    country: str
    region: str
    nhs_number: str | None


_CHAINS = (
    "Wellbeing Pharmacy",
    "Greenfield Chemist",
    "Riverside Pharmacy",
    "Oakwood Dispensary",
    "Market Cross Pharmacy",
    "Harbour Chemists",
    "Parkside Pharmacy",
    "Castle Pharmacy",
    "Station Road Chemist",
    "Meadow Pharmacy",
    "Kingsway Pharmacy",
    "Abbey Chemist",
)
_STREETS = (
    "High Street",
    "Market Place",
    "Church Road",
    "Station Road",
    "Victoria Street",
    "London Road",
    "Mill Lane",
    "Queen Street",
    "King Street",
    "Bridge Street",
    "Park Road",
    "North Parade",
)
#: Opening hours the seeded pharmacies keep; ``None`` is a pharmacy whose hours are unknown,
#: so the pages are seen both ways.
_HOURS = (
    "Mon to Fri 9:00 to 18:00, Sat 9:00 to 13:00",
    "Mon to Sat 8:30 to 19:00",
    "Every day 8:00 to 22:00",
    "Mon to Fri 9:00 to 17:30",
    None,
)
_UNITS = ("", "Unit 2", "Unit 4", "The Old Bank", "Ground Floor", "Riverside House")

#: (town, outward postcode) pairs. Region A: Scotland (email prescriptions); Region B: England
#: (electronic prescriptions through the platform).
_TOWNS: dict[str, tuple[tuple[str, str], ...]] = {
    "A": (
        ("Edinburgh", "EH1"),
        ("Glasgow", "G2"),
        ("Aberdeen", "AB10"),
        ("Dundee", "DD1"),
        ("Inverness", "IV1"),
        ("Stirling", "FK8"),
        ("Perth", "PH1"),
        ("Ayr", "KA7"),
        ("Dumfries", "DG1"),
        ("Paisley", "PA1"),
        ("Falkirk", "FK1"),
        ("Kirkcaldy", "KY1"),
    ),
    "B": (
        ("Manchester", "M1"),
        ("Leeds", "LS1"),
        ("Bristol", "BS1"),
        ("Sheffield", "S1"),
        ("Nottingham", "NG1"),
        ("Leicester", "LE1"),
        ("York", "YO1"),
        ("Norwich", "NR2"),
        ("Oxford", "OX1"),
        ("Cambridge", "CB2"),
        ("Brighton", "BN1"),
        ("Exeter", "EX1"),
    ),
}

_FIRST_NAMES = (
    "Alex",
    "Sam",
    "Jordan",
    "Priya",
    "Tom",
    "Aisha",
    "Ewan",
    "Chloe",
    "Ravi",
    "Hannah",
    "Kofi",
    "Isla",
    "Mateusz",
    "Grace",
    "Liam",
    "Zara",
)
_LAST_NAMES = (
    "Testpatient",
    "Example",
    "Sample",
    "Placeholder",
    "Fictional",
    "Demo",
    "Synthetic",
    "Mockford",
    "Trialson",
    "Specimen",
)


def _postcode(rng: random.Random, outward: str) -> str:
    letters = "ABDEFGHJLNPQRSTUWXYZ"
    return f"{outward} {rng.randint(1, 9)}{rng.choice(letters)}{rng.choice(letters)}"


def pharmacies(region: str, count: int = PHARMACIES_PER_REGION) -> list[PharmacySeed]:
    """The curated accepted pharmacies of a region, the same on every call."""
    rng = random.Random(f"pharmacies-{region}")
    towns = _TOWNS[region]
    result: list[PharmacySeed] = []
    for index in range(count):
        town, outward = towns[index % len(towns)]
        lap = index // len(towns)
        chain = _CHAINS[(index * 5 + lap * 7 + len(town)) % len(_CHAINS)]
        street = _STREETS[(index * 7 + lap * 5 + 3) % len(_STREETS)]
        number = rng.randint(1, 240)
        contact_id = FIRST_CONTACT_ID + index if region == "B" else None
        slug = f"{region.lower()}{index + 1:03d}"
        result.append(
            PharmacySeed(
                name=f"{chain} {town}" if index < len(towns) else f"{chain} {town} {street}",
                address_line1=f"{number} {street}",
                address_line2=_UNITS[index % len(_UNITS)],
                town=town,
                postcode=_postcode(rng, outward),
                region=region,
                email=f"pharmacy-{slug}@example.com",
                contact_id=contact_id,
                # Ofcom's drama range, as for the patients; every seventh has no number.
                phone=None
                if index % 7 == 6
                else f"+44 7700 900{500 + index + (0 if region == 'A' else 200):03d}",
                opening_hours=_HOURS[index % len(_HOURS)],
            )
        )
    return result


def region_b_pharmacies() -> list[PharmacySeed]:
    return pharmacies("B")


def prescribers() -> list[PrescriberSeed]:
    return [
        PrescriberSeed(
            "Dr Alice Hartfield",
            "alice.hartfield@example.com",
            "GMC-7000001",
            "dr.alice.hartfield@example.com",
            "sandbox-prescriber-alice",
            "123456",
            501,
            True,
        ),
        PrescriberSeed(
            "Dr Ben Okonjo",
            "ben.okonjo@example.com",
            "GMC-7000002",
            "dr.ben.okonjo@example.com",
            "sandbox-prescriber-ben",
            "654321",
            502,
            True,
        ),
    ]


def demo_patient(region: str = "B") -> PatientSeed:
    return PatientSeed(
        first_name="Jamie",
        last_name="Testpatient",
        date_of_birth=date(1985, 3, 7),
        gender="Other",
        email=DEMO_PATIENT_EMAIL,
        phone="+44 7700 900123",
        address_line1="12 Example Street",
        address_line2="",
        town="Leeds",
        postcode="LS1 4AP",
        country="GB",
        region=region,
        nhs_number="9990000018",
    )


def patients(count: int = 12) -> list[PatientSeed]:
    """Further synthetic patients, alternating regions."""
    rng = random.Random("patients")
    result: list[PatientSeed] = []
    for index in range(count):
        region = "A" if index % 2 == 0 else "B"
        town, outward = _TOWNS[region][index % len(_TOWNS[region])]
        first = _FIRST_NAMES[index % len(_FIRST_NAMES)]
        last = _LAST_NAMES[index % len(_LAST_NAMES)]
        result.append(
            PatientSeed(
                first_name=first,
                last_name=last,
                date_of_birth=date(
                    1960 + rng.randint(0, 40), rng.randint(1, 12), rng.randint(1, 28)
                ),
                gender=("Female", "Male", "Other")[index % 3],
                email=f"patient{index + 1:02d}@example.com",
                phone=f"+44 7700 900{200 + index:03d}",
                address_line1=f"{rng.randint(1, 99)} {_STREETS[index % len(_STREETS)]}",
                address_line2="",
                town=town,
                postcode=_postcode(rng, outward),
                country="GB",
                region=region,
                nhs_number=f"999{rng.randint(0, 9999999):07d}",
            )
        )
    return result
