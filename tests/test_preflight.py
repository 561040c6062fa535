"""``rxroute preflight`` against the sandbox: every setup mistake found before the first call."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.channels.erx.signaturerx import SignatureRxClient
from rxroute.config import Settings
from rxroute.config_secrets import DEMO_EVENTS_SECRET
from rxroute.preflight import run_preflight
from rxroute.preflight.checks import Check, Outcome, passed
from rxroute.seed.service import seed_demo
from tests.erx_sandbox import Erx
from tests.erx_sandbox import erx as erx  # a fixture
from tests.erx_sandbox import sandbox as sandbox  # a fixture
from tests.factories import (
    make_clinic,
    make_patient,
    make_pharmacy,
    make_prescriber,
    make_prescription,
)

DISPLAY_ID_FIX = "201334 is the dashboard display ID; set RXROUTE_ERX_CLINIC_ID=994"


async def _preflight(erx: Erx, session: AsyncSession, **updates: object) -> list[Check]:
    settings: Settings = erx.settings.model_copy(update=updates)
    async with SignatureRxClient(settings) as client:
        return await run_preflight(session, settings, erx.runtime.secret_box, client)


def _failures(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks if c.status is Outcome.FAIL}


def _by_name(checks: list[Check], name: str) -> Check:
    found = [c for c in checks if c.name == name]
    assert len(found) == 1, [c.name for c in checks]
    return found[0]


async def test_seeded_demo_passes_every_check(erx: Erx, session: AsyncSession) -> None:
    await seed_demo(session, erx.runtime.secret_box)
    await session.commit()
    checks = await _preflight(erx, session)
    assert passed(checks), _failures(checks)
    names = [c.name for c in checks]
    assert names[0] == "client credentials"
    assert "clinic ID (RXROUTE_ERX_CLINIC_ID)" in names
    assert _by_name(checks, "region B pharmacies").message.startswith("all 36 active")
    assert _by_name(checks, "pending prescriptions").status is Outcome.OK
    logins = [c for c in checks if c.name.endswith(" login")]
    assert len(logins) == 2 and all(c.status is Outcome.OK for c in logins)
    assert all("PIN present" in c.message for c in logins)


async def test_display_clinic_id_is_caught_with_the_internal_id_to_use(
    erx: Erx, session: AsyncSession
) -> None:
    await seed_demo(session, erx.runtime.secret_box)
    await session.commit()
    checks = await _preflight(erx, session, erx_clinic_id=201334)
    assert not passed(checks)
    clinic = _by_name(checks, "clinic ID (RXROUTE_ERX_CLINIC_ID)")
    assert clinic.status is Outcome.FAIL
    assert clinic.fix == DISPLAY_ID_FIX
    assert "unauthorized clinic" in clinic.message


async def test_stored_clinic_with_the_display_id_and_unknown_ids_fail(
    erx: Erx, session: AsyncSession
) -> None:
    await make_clinic(session, name="Mixed Up Clinic", api_internal_id=201334)
    await make_clinic(
        session, name="Elsewhere Clinic", api_internal_id=777, dashboard_display_id="999999"
    )
    await make_prescriber(session, erx.runtime.secret_box)
    await session.commit()
    checks = await _preflight(erx, session)
    failures = _failures(checks)
    mixed = next(c for n, c in failures.items() if n.startswith("clinic Mixed Up Clinic"))
    assert mixed.fix is not None and "201334 is the dashboard display ID" in mixed.fix
    assert "994" in mixed.fix
    elsewhere = next(c for n, c in failures.items() if n.startswith("clinic Elsewhere Clinic"))
    assert "777 is not one of the prescriber's clinics" in elsewhere.message
    assert _by_name(checks, "clinic ID (RXROUTE_ERX_CLINIC_ID)").status is Outcome.OK


async def test_bad_client_credentials_fail_first_and_skip_the_rest(
    erx: Erx, session: AsyncSession
) -> None:
    await seed_demo(session, erx.runtime.secret_box)
    await session.commit()
    checks = await _preflight(erx, session, erx_client_secret=SecretStr("wrong"))
    first = checks[0]
    assert first.name == "client credentials" and first.status is Outcome.FAIL
    assert first.fix is not None and "RXROUTE_ERX_CLIENT_SECRET" in first.fix
    logins = [c for c in checks if c.name.endswith(" login")]
    assert logins and all(c.status is Outcome.WARN for c in logins)
    assert not passed(checks)


async def test_unreachable_platform_names_the_base_url(erx: Erx, session: AsyncSession) -> None:
    await seed_demo(session, erx.runtime.secret_box)
    await session.commit()
    checks = await _preflight(erx, session, erx_base_url="http://127.0.0.1:9")
    assert checks[0].status is Outcome.FAIL
    assert checks[0].fix is not None and "RXROUTE_ERX_BASE_URL" in checks[0].fix


async def test_prescriber_login_and_pin_problems(erx: Erx, session: AsyncSession) -> None:
    box = erx.runtime.secret_box
    wrong = await make_prescriber(session, box, password="not-the-password", full_name="Dr Wrong")
    short_pin = await make_prescriber(session, box, pin="12345", full_name="Dr Shortpin")
    await make_prescriber(
        session,
        box,
        full_name="Dr Nocreds",
        platform_email_encrypted=None,
        platform_password_encrypted=None,
        signing_pin_encrypted=None,
    )
    await session.commit()
    checks = await _preflight(erx, session)
    login = _by_name(checks, f"prescriber Dr Wrong ({wrong.id}) login")
    assert login.status is Outcome.FAIL
    assert "Invalid prescriber credentials." in login.message
    pin = _by_name(checks, f"prescriber Dr Shortpin ({short_pin.id}) PIN")
    assert pin.status is Outcome.FAIL and "6 digits" in pin.message
    nocreds = next(c for c in checks if c.name.startswith("prescriber Dr Nocreds"))
    assert nocreds.status is Outcome.WARN


async def test_pharmacy_contact_ids_are_checked_against_the_platform(
    erx: Erx, session: AsyncSession
) -> None:
    await make_prescriber(session, erx.runtime.secret_box)
    good = await make_pharmacy(session, "B", name="Good Pharmacy", platform_contact_id=5003)
    unknown = await make_pharmacy(session, "B", name="Ghost Pharmacy", platform_contact_id=9999)
    missing = await make_pharmacy(session, "B", name="Unregistered", platform_contact_id=None)
    await make_pharmacy(session, "B", name="Closed", platform_contact_id=9998, active=False)
    await make_pharmacy(session, "A", name="Email Pharmacy")
    await session.commit()
    checks = await _preflight(erx, session)
    failures = _failures(checks)
    ghost = failures[f"pharmacy Ghost Pharmacy ({unknown.id})"]
    assert "9999" in ghost.message
    assert f"pharmacy Unregistered ({missing.id})" in failures
    assert not any(str(good.id) in name for name in failures)
    assert not any("Closed" in name or "Email" in name for name in failures)


async def test_pending_prescriptions_name_missing_fields_by_id_without_phi(
    erx: Erx, session: AsyncSession
) -> None:
    box = erx.runtime.secret_box
    doctor = await make_prescriber(session, box)
    complete = await make_patient(session, last_name="Completeson")
    no_postcode = await make_patient(session, last_name="Nopostcodeson", postcode="")
    fine = await make_prescription(session, complete, doctor, region="B")
    missing_postcode = await make_prescription(session, no_postcode, doctor, region="B")
    no_items = await make_prescription(session, complete, doctor, region="B", items=0)
    # Region A and already-issued prescriptions are not this check's business.
    await make_prescription(session, no_postcode, doctor, region="A")
    await make_prescription(session, no_postcode, doctor, region="B", status="issued")
    await session.commit()

    checks = await _preflight(erx, session)
    failures = _failures(checks)
    postcode = failures[f"prescription {missing_postcode.id}"]
    assert "patient.post_code" in postcode.message
    items = failures[f"prescription {no_items.id}"]
    assert "medicines" in items.message
    assert f"prescription {fine.id}" not in failures
    assert len([n for n in failures if n.startswith("prescription ")]) == 2
    dumped = json.dumps([c.as_dict() for c in checks])
    assert "Nopostcodeson" not in dumped and "Completeson" not in dumped
    assert "example.com" not in dumped.replace("dr.alice.hartfield@example.com", "")


async def test_webhook_settings_are_reported(erx: Erx, session: AsyncSession) -> None:
    checks = await _preflight(erx, session, public_url="https://rx.example.org")
    url = _by_name(checks, "webhook URL")
    assert url.status is Outcome.OK and "https://rx.example.org/webhooks/erx" in url.message
    secret = _by_name(checks, "webhook secret")
    assert secret.status is Outcome.WARN  # the development placeholder
    real = await _preflight(
        erx, session, webhook_secret=SecretStr("s3cr3t-from-the-platform-0123456789")
    )
    assert _by_name(real, "webhook secret").status is Outcome.OK
    # A secret the repository publishes is as unsafe as a placeholder, marker or not.
    published = await _preflight(erx, session, webhook_secret=SecretStr(DEMO_EVENTS_SECRET))
    assert _by_name(published, "webhook secret").status is Outcome.WARN
    bad = await _preflight(erx, session, public_url="ftp://nowhere")
    assert _by_name(bad, "webhook URL").status is Outcome.FAIL


# --- the command itself --------------------------------------------------------------------------


def _run_cli(
    erx: Erx, database_url: str, tmp_path: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("RXROUTE_")
    }
    environment.update(
        {
            "RXROUTE_DATABASE_URL": database_url,
            "RXROUTE_ERX_BASE_URL": erx.sandbox.url,
            "RXROUTE_ERX_CLINIC_ID": "994",
            "RXROUTE_VAR_DIR": str(tmp_path / "var"),
            "NO_COLOR": "1",
            "COLUMNS": "200",
            **env,
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "rxroute.cli", "preflight", *args],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_cli_exit_status_lines_and_json(
    erx: Erx, session: AsyncSession, database_url: str, tmp_path: Path
) -> None:
    await seed_demo(session, erx.runtime.secret_box)
    await session.commit()

    good = _run_cli(erx, database_url, tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "✓ client credentials" in good.stdout
    assert "✗" not in good.stdout

    bad = _run_cli(erx, database_url, tmp_path, RXROUTE_ERX_CLINIC_ID="201334")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "✗ clinic ID (RXROUTE_ERX_CLINIC_ID)" in bad.stdout
    assert f"fix: {DISPLAY_ID_FIX}" in bad.stdout

    as_json = _run_cli(erx, database_url, tmp_path, "--json", RXROUTE_ERX_CLINIC_ID="201334")
    assert as_json.returncode == 1
    rows = json.loads(as_json.stdout)
    assert {"name", "status", "message", "fix"} <= set(rows[0])
    clinic = next(r for r in rows if r["name"] == "clinic ID (RXROUTE_ERX_CLINIC_ID)")
    assert clinic["status"] == "fail" and clinic["fix"] == DISPLAY_ID_FIX
