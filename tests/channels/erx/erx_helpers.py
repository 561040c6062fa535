"""Shared pieces of the Region B client tests: settings, inputs, fixtures and a fake platform.

The fake platform is deliberately strict like the real one (exact ``Bearer`` format, both
tokens on every call) and counts grants and logins, so tests assert behaviour, not mocks.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import respx

from rxroute.channels.erx import contract as c
from rxroute.channels.erx.base import PrescriberCredentials
from rxroute.channels.erx.payload import MedicineItem, PatientDetails, build_issue_payload
from rxroute.config import Settings

BASE = "http://erx.test"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "erx"
CLIENT_ID = "rxroute-test-client"
CLIENT_SECRET = "test-client-secret-value"

ALICE = PrescriberCredentials(
    key="prescriber-1",
    email="dr.alice.hartfield@example.com",
    password="sandbox-prescriber-alice",
    secure_pin="123456",
)
BEN = PrescriberCredentials(
    key="prescriber-2",
    email="dr.ben.okonjo@example.com",
    password="sandbox-prescriber-ben",
    secure_pin="654321",
)


def make_settings(tmp_path: Path | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "erx_base_url": BASE,
        "erx_client_id": CLIENT_ID,
        "erx_client_secret": CLIENT_SECRET,
        "erx_clinic_id": 994,
        "erx_token_refresh_margin_seconds": 60,
    }
    if tmp_path is not None:
        values["erx_capture_dir"] = tmp_path / "capture"
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def canonical_patient() -> PatientDetails:
    return PatientDetails(
        first_name="Jamie",
        last_name="Testpatient",
        date_of_birth=date(1985, 3, 7),
        gender="Other",
        email="patient@example.com",
        phone="+44 7700 900123",
        address_line1="12 Example Street",
        address_line2="",
        town="Leeds",
        postcode="LS1 4AP",
        country="GB",
        nhs_number="9990000018",
    )


def canonical_items() -> list[MedicineItem]:
    return [
        MedicineItem(
            "Semaglutide 0.25mg/0.5ml solution for injection pre-filled pen",
            "1 pen",
            "Inject 0.25mg once weekly under the skin for 4 weeks",
            vpid="39954111000001109",
        ),
        MedicineItem("Pen needles 32G 4mm", "100 needles", "Use one new needle for each injection"),
    ]


def canonical_payload(client_ref_id: str = "rx-0001", clinic_id: int = 994) -> c.IssuePayload:
    """The inputs ``tests/fixtures/erx/issue_request.json`` was recorded from."""
    return build_issue_payload(
        patient=canonical_patient(),
        items=canonical_items(),
        clinic_id=clinic_id,
        contact_id=5001,
        secure_pin=ALICE.secure_pin,
        client_ref_id=client_ref_id,
        prescriber_ip="203.0.113.7",
        notes="Synthetic test prescription",
        today=date(2025, 1, 15),
    )


class Clock:
    """A hand-driven monotonic clock."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def unauthenticated() -> httpx.Response:
    return httpx.Response(401, json=load("unauthenticated_401.json"))


class FakePlatform:
    """A strict in-memory platform on a respx router.

    Tokens are valid until ``revoke_*`` is called (expiry by time is the client's business;
    the platform side only needs to be able to say 401). ``auth_delay`` makes the auth
    endpoints yield so concurrent callers really overlap.
    """

    def __init__(
        self,
        router: respx.MockRouter,
        *,
        access_lifetime: int = 3600,
        session_lifetime: int = 1800,
        auth_delay: float = 0.0,
    ) -> None:
        self.access_lifetime = access_lifetime
        self.session_lifetime = session_lifetime
        self.auth_delay = auth_delay
        self.access_tokens: set[str] = set()
        self.sessions: dict[str, str] = {}
        self.grants = 0
        self.logins = 0
        self.issued: list[dict[str, Any]] = []
        self.prescriptions: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self.accounts = {
            ALICE.email: (ALICE.password, ALICE.secure_pin, 501),
            BEN.email: (BEN.password, BEN.secure_pin, 502),
        }
        self.issuable_clinics = {994}
        prefix = BASE + "/api/v1"
        self.token_route = router.post(BASE + "/oauth/token").mock(side_effect=self._token)
        self.login_route = router.post(prefix + "/login").mock(side_effect=self._login)
        self.issue_route = router.post(prefix + "/prescriptions").mock(side_effect=self._issue)
        self.list_route = router.get(prefix + "/prescriptions").mock(side_effect=self._list)
        self.void_route = router.post(
            url__regex=prefix + r"/prescriptions/(?P<pid>[^/]+)/void$"
        ).mock(side_effect=self._void)
        self.get_route = router.get(url__regex=prefix + r"/prescriptions/(?P<pid>[^/?]+)$").mock(
            side_effect=self._get
        )
        self.clinics_route = router.get(prefix + "/clinics").mock(side_effect=self._clinics)
        self.contacts_route = router.get(prefix + "/contacts").mock(side_effect=self._contacts)

    # --- control ---------------------------------------------------------------------------
    def revoke_access_tokens(self) -> None:
        self.access_tokens.clear()

    def revoke_sessions(self) -> None:
        self.sessions.clear()

    # --- handlers --------------------------------------------------------------------------
    async def _token(self, request: httpx.Request) -> httpx.Response:
        if self.auth_delay:
            await asyncio.sleep(self.auth_delay)
        form = dict(httpx.QueryParams(request.content.decode()))
        if (
            form.get("grant_type") != "client_credentials"
            or form.get("client_id") != CLIENT_ID
            or form.get("client_secret") != CLIENT_SECRET
        ):
            return httpx.Response(401, json=load("token_invalid_client.json"))
        self.grants += 1
        token = f"acc-{self.grants}"
        self.access_tokens.add(token)
        return httpx.Response(
            200,
            json={
                "access_token": token,
                "token_type": "bearer",
                "expires_in": self.access_lifetime,
            },
        )

    def _access_ok(self, request: httpx.Request) -> bool:
        raw = dict((k.decode(), v.decode()) for k, v in request.headers.raw)
        value = raw.get("Authorization", "")
        return value.startswith("Bearer ") and value[len("Bearer ") :] in self.access_tokens

    def _session_email(self, request: httpx.Request) -> str | None:
        raw = dict((k.decode(), v.decode()) for k, v in request.headers.raw)
        return self.sessions.get(raw.get("X-Prescriber-Token", ""))

    async def _login(self, request: httpx.Request) -> httpx.Response:
        if self.auth_delay:
            await asyncio.sleep(self.auth_delay)
        if not self._access_ok(request):
            return unauthenticated()
        body = json.loads(request.content)
        account = self.accounts.get(body.get("email"))
        if account is None or account[0] != body.get("password"):
            return httpx.Response(200, json=load("login_invalid_credentials.json"))
        self.logins += 1
        token = f"sess-{self.logins}"
        self.sessions[token] = body["email"]
        return httpx.Response(
            200,
            json={
                "success": True,
                "data": {
                    "token": token,
                    "expires_in": self.session_lifetime,
                    "prescriber": {"id": account[2]},
                },
            },
        )

    def _authed(self, request: httpx.Request) -> str | httpx.Response:
        email = self._session_email(request)
        if not self._access_ok(request) or email is None:
            return unauthenticated()
        return email

    async def _issue(self, request: httpx.Request) -> httpx.Response:
        who = self._authed(request)
        if isinstance(who, httpx.Response):
            return who
        body = json.loads(request.content)
        if body.get("clinic_id") not in self.issuable_clinics:
            return httpx.Response(200, json=load("issue_unauthorized_clinic.json"))
        if body.get("secure_pin") != self.accounts[who][1]:
            return httpx.Response(200, json=load("issue_wrong_pin.json"))
        number = next(self._ids)
        record = {
            "id": f"SRXC{number:011X}",
            "status": "issued",
            "client_ref_id": body.get("client_ref_id"),
            "token": f"tok-{number}",
        }
        self.issued.append(body)
        self.prescriptions[record["id"]] = record
        return httpx.Response(
            200,
            json={
                "success": True,
                "message": "Prescription issued.",
                "data": {"prescription": record},
            },
        )

    async def _clinics(self, request: httpx.Request) -> httpx.Response:
        who = self._authed(request)
        if isinstance(who, httpx.Response):
            return who
        return httpx.Response(200, json=load("clinics_success.json"))

    async def _contacts(self, request: httpx.Request) -> httpx.Response:
        who = self._authed(request)
        if isinstance(who, httpx.Response):
            return who
        contact = {
            "id": 5001,
            "name": "Wellbeing Pharmacy Leeds",
            "email": "pharmacy-b001@example.com",
            "post_code": "LS1 2AB",
        }
        return httpx.Response(200, json={"success": True, "data": {"contacts": [contact]}})

    async def _list(self, request: httpx.Request) -> httpx.Response:
        who = self._authed(request)
        if isinstance(who, httpx.Response):
            return who
        ref = request.url.params.get("client_ref_id")
        found = [r for r in self.prescriptions.values() if r["client_ref_id"] == ref]
        return httpx.Response(200, json={"success": True, "data": {"prescriptions": found}})

    async def _get(self, request: httpx.Request, pid: str) -> httpx.Response:
        who = self._authed(request)
        if isinstance(who, httpx.Response):
            return who
        record = self.prescriptions.get(pid)
        if record is None:
            return httpx.Response(
                404, json={"success": False, "message": "Prescription not found."}
            )
        return httpx.Response(200, json={"success": True, "data": {"prescription": record}})

    async def _void(self, request: httpx.Request, pid: str) -> httpx.Response:
        who = self._authed(request)
        if isinstance(who, httpx.Response):
            return who
        record = self.prescriptions.get(pid)
        if record is None:
            return httpx.Response(
                404, json={"success": False, "message": "Prescription not found."}
            )
        if record["status"] == "dispensed":
            return httpx.Response(200, json=load("void_already_dispensed.json"))
        record["status"] = "voided"
        return httpx.Response(200, json={"success": True, "data": {"prescription": record}})


# --- call-format comparison (lesson 6) -----------------------------------------------------------


def _placeholder(value: str, secrets: dict[str, str]) -> str:
    for placeholder, secret in sorted(secrets.items(), key=lambda kv: -len(kv[1])):
        if secret:
            value = value.replace(secret, placeholder)
    return value


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
        if not value and prefix:
            out[prefix] = {}
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            _flatten(f"{prefix}[{index}]", inner, out)
        if not value and prefix:
            out[prefix] = []
    else:
        out[prefix] = value


def describe_call(request: httpx.Request, secrets: dict[str, str]) -> dict[str, Any]:
    """A request in fixture form, with per-run secrets swapped for their placeholders."""
    headers = {k.decode(): _placeholder(v.decode(), secrets) for k, v in request.headers.raw}
    content_type = headers.get("Content-Type", "")
    body: Any
    if content_type.startswith(c.CONTENT_TYPE_FORM):
        body = {
            k: _placeholder(v, secrets)
            for k, v in httpx.QueryParams(request.content.decode()).multi_items()
        }
        encoding = "form"
    elif request.content:

        def swap(value: Any) -> Any:
            if isinstance(value, str):
                return _placeholder(value, secrets)
            if isinstance(value, dict):
                return {k: swap(v) for k, v in value.items()}
            if isinstance(value, list):
                return [swap(v) for v in value]
            return value

        body = swap(json.loads(request.content))
        encoding = "json"
    else:
        body, encoding = None, "none"
    return {
        "method": request.method,
        "path": request.url.path,
        "query": dict(request.url.params.multi_items()),
        "headers": headers,
        "body_encoding": encoding,
        "body": body,
    }


def call_differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Every way ``actual`` differs from the recorded ``expected``, one sentence per field."""
    problems: list[str] = []
    for key in ("method", "path", "query", "body_encoding"):
        if expected.get(key) != actual.get(key):
            problems.append(
                f"{key} changed: expected {expected.get(key)!r} got {actual.get(key)!r}"
            )
    sent = actual["headers"]
    lowered = {k.lower(): k for k in sent}
    for name, value in expected.get("headers", {}).items():
        if name not in sent:
            other = lowered.get(name.lower())
            if other is not None:
                problems.append(f"header {name} renamed: sent as {other!r}")
            else:
                problems.append(f"header {name} missing")
            continue
        if sent[name] != value:
            problems.append(f"header {name} changed: expected {value!r} got {sent[name]!r}")
    for name in expected.get("absent_headers", []):
        if name.lower() in lowered:
            problems.append(f"header {name} must not be sent, got {sent[lowered[name.lower()]]!r}")
    want: dict[str, Any] = {}
    got: dict[str, Any] = {}
    _flatten("", expected.get("body"), want)
    _flatten("", actual.get("body"), got)
    for field in sorted(want.keys() | got.keys()):
        if field not in got:
            problems.append(f"body field {field} missing (expected {want[field]!r})")
        elif field not in want:
            problems.append(f"body field {field} unexpected (got {got[field]!r})")
        elif type(want[field]) is not type(got[field]) or want[field] != got[field]:
            problems.append(
                f"body field {field} changed: expected {want[field]!r} got {got[field]!r}"
            )
    return problems


def assert_call_matches(fixture: str, request: httpx.Request, secrets: dict[str, str]) -> None:
    problems = call_differences(load(fixture), describe_call(request, secrets))
    assert not problems, f"{fixture}: " + "; ".join(problems)
