"""Lesson 6, "don't change what works": what the client sends is pinned to recorded fixtures.

A change to a header name, the ``Bearer`` format, the form encoding or a body field fails
here with a message naming the field, before it can fail against the real platform.
"""

from __future__ import annotations

import copy

import httpx
import pytest
from erx_helpers import (
    ALICE,
    CLIENT_ID,
    CLIENT_SECRET,
    FakePlatform,
    assert_call_matches,
    call_differences,
    canonical_payload,
    describe_call,
    load,
)

from rxroute.channels.erx.signaturerx import SignatureRxClient


def _secrets() -> dict[str, str]:
    return {
        "<access_token>": "acc-1",
        "<session_token>": "sess-1",
        "<client_id>": CLIENT_ID,
        "<client_secret>": CLIENT_SECRET,
        "<prescriber_email>": ALICE.email,
        "<prescriber_password>": ALICE.password,
        "<secure_pin>": ALICE.secure_pin,
    }


@pytest.fixture
async def sent(client: SignatureRxClient, platform: FakePlatform) -> dict[str, httpx.Request]:
    await client.issue(ALICE, canonical_payload())
    return {
        "token_request.json": platform.token_route.calls.last.request,
        "login_request.json": platform.login_route.calls.last.request,
        "issue_request.json": platform.issue_route.calls.last.request,
    }


@pytest.mark.parametrize(
    "fixture", ["token_request.json", "login_request.json", "issue_request.json"]
)
def test_calls_match_the_recorded_format(sent: dict[str, httpx.Request], fixture: str) -> None:
    assert_call_matches(fixture, sent[fixture], _secrets())


def _mutated(fixture: str, change: str) -> dict[str, object]:
    data = copy.deepcopy(load(fixture))
    match change:
        case "scheme":
            data["headers"]["Authorization"] = "bearer <access_token>"
        case "header-name":
            data["headers"]["X-Prescriber-Session"] = data["headers"].pop("X-Prescriber-Token")
        case "content-type":
            data["headers"]["Content-Type"] = "application/json"
        case "body-field":
            data["body"]["patient"]["dob"] = data["body"]["patient"].pop("birth_day")
        case "body-type":
            data["body"]["clinic_id"] = "994"
        case "path":
            data["path"] = "/api/v1/prescription"
    return data


@pytest.mark.parametrize(
    ("fixture", "change", "expected_message"),
    [
        (
            "issue_request.json",
            "scheme",
            "header Authorization changed: expected 'bearer <access_token>' "
            "got 'Bearer <access_token>'",
        ),
        ("issue_request.json", "header-name", "header X-Prescriber-Session missing"),
        (
            "token_request.json",
            "content-type",
            "header Content-Type changed: expected 'application/json' "
            "got 'application/x-www-form-urlencoded'",
        ),
        ("issue_request.json", "body-field", "body field patient.dob missing"),
        ("issue_request.json", "body-field", "body field patient.birth_day unexpected"),
        ("issue_request.json", "body-type", "body field clinic_id changed: expected '994' got 994"),
        ("issue_request.json", "path", "path changed: expected '/api/v1/prescription'"),
    ],
)
def test_a_changed_call_format_is_caught_and_named(
    sent: dict[str, httpx.Request], fixture: str, change: str, expected_message: str
) -> None:
    problems = call_differences(_mutated(fixture, change), describe_call(sent[fixture], _secrets()))
    assert any(expected_message in p for p in problems), problems
    with pytest.raises(AssertionError, match=r"changed|missing|unexpected"):
        assert not problems, "; ".join(problems)


def test_the_client_side_change_is_caught_too(sent: dict[str, httpx.Request]) -> None:
    """Simulate the case study's "improvement": the client starts sending ``bearer``."""
    request = sent["issue_request.json"]
    headers = [(k, v.replace(b"Bearer ", b"bearer ")) for k, v in request.headers.raw]
    altered = httpx.Request(request.method, request.url, headers=headers, content=request.content)
    with pytest.raises(AssertionError) as info:
        assert_call_matches("issue_request.json", altered, _secrets())
    assert (
        "header Authorization changed: expected 'Bearer <access_token>' got 'bearer <access_token>'"
        in str(info.value)
    )


def test_a_renamed_header_case_is_caught(sent: dict[str, httpx.Request]) -> None:
    request = sent["issue_request.json"]
    raw = [
        (b"x-prescriber-token" if k == b"X-Prescriber-Token" else k, v)
        for k, v in request.headers.raw
    ]
    altered = httpx.Request(request.method, request.url, headers=raw, content=request.content)
    problems = call_differences(load("issue_request.json"), describe_call(altered, _secrets()))
    assert "header X-Prescriber-Token renamed: sent as 'x-prescriber-token'" in problems


def test_login_must_not_send_a_prescriber_token(sent: dict[str, httpx.Request]) -> None:
    request = sent["login_request.json"]
    altered = httpx.Request(
        request.method,
        request.url,
        headers=[*request.headers.raw, (b"X-Prescriber-Token", b"sess-1")],
        content=request.content,
    )
    problems = call_differences(load("login_request.json"), describe_call(altered, _secrets()))
    assert "header X-Prescriber-Token must not be sent, got '<session_token>'" in problems
