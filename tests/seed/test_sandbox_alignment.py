"""The sandbox's default accounts line up with what ``rxroute seed`` creates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import rxroute
from rxroute.seed import data

CONFIG_PATH = Path(rxroute.__file__).resolve().parent / "sandbox" / "default_config.json"


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(CONFIG_PATH.read_text(encoding="utf-8"))
    return loaded


def test_demo_clinic(config: dict[str, Any]) -> None:
    clinics = {clinic["id"]: clinic for clinic in config["clinics"]}
    assert data.CLINIC_INTERNAL_ID == 994
    clinic = clinics[data.CLINIC_INTERNAL_ID]
    assert clinic["unique_id"] == data.CLINIC_DISPLAY_ID == "201334"
    assert clinic["name"] == data.CLINIC_NAME


def test_seeded_prescribers_exist_on_the_platform(config: dict[str, Any]) -> None:
    accounts = {account["email"]: account for account in config["prescribers"]}
    for seed in data.prescribers():
        account = accounts[seed.platform_email]
        assert account["password"] == seed.platform_password
        assert account["secure_pin"] == seed.signing_pin
        assert account["id"] == seed.platform_prescriber_id
        assert account["name"] == seed.full_name
        assert account["active"] is seed.active_on_platform
        assert data.CLINIC_INTERNAL_ID in account["issuable_clinic_ids"]


def test_contacts_are_exactly_the_region_b_pharmacies(config: dict[str, Any]) -> None:
    contacts = [
        (c["id"], c["name"], c["email"], c["post_code"])
        for c in config["contacts"]
        if c["clinic_id"] == data.CLINIC_INTERNAL_ID
    ]
    seeded = [(p.contact_id, p.name, p.email, p.postcode) for p in data.region_b_pharmacies()]
    assert len(contacts) == len(seeded) >= 30
    assert sorted(contacts) == sorted(seeded)
    # No contact belongs to another clinic without being one of the seeded pharmacies.
    assert {c["id"] for c in config["contacts"]} == {
        p.contact_id for p in data.region_b_pharmacies()
    }


def test_oauth_client_matches_the_demo_settings(config: dict[str, Any]) -> None:
    from rxroute.config_secrets import DEMO_ERX_CLIENT_ID, DEMO_ERX_CLIENT_SECRET

    clients = {c["client_id"]: c["client_secret"] for c in config["oauth_clients"]}
    assert clients[DEMO_ERX_CLIENT_ID] == DEMO_ERX_CLIENT_SECRET
