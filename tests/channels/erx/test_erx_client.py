"""SignatureRxClient against a respx-mocked platform: every branch of auth, envelope and errors."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
import respx
from erx_helpers import (
    ALICE,
    BASE,
    BEN,
    CLIENT_SECRET,
    Clock,
    FakePlatform,
    canonical_payload,
    load,
    make_settings,
    unauthenticated,
)

from rxroute.channels.erx.base import Clinic, ErxChannel, PrescriberCredentials
from rxroute.channels.erx.errors import (
    CaptureRefusedError,
    LocalValidationError,
    RejectedError,
    RejectReason,
    RetryableError,
    UnexpectedResponseError,
    ValidationRejected,
)
from rxroute.channels.erx.signaturerx import SignatureRxClient
from rxroute.config import Environment, Settings

API = BASE + "/api/v1"
PRESCRIPTIONS = API + "/prescriptions"


def test_client_satisfies_the_channel_protocol(client: SignatureRxClient) -> None:
    assert isinstance(client, ErxChannel)


# --- the happy path and both auth steps -----------------------------------------------------------


async def test_issue_runs_both_auth_steps_and_sends_both_tokens(
    client: SignatureRxClient, platform: FakePlatform
) -> None:
    issued = await client.issue(ALICE, canonical_payload())

    assert issued.provider_id.startswith("SRXC")
    assert issued.status == "issued"
    assert issued.rxroute_status == "issued"
    assert issued.token == "tok-1"
    assert issued.client_ref_id == "rx-0001"
    assert (platform.grants, platform.logins, len(platform.issued)) == (1, 1, 1)
    sent = platform.issue_route.calls.last.request
    assert sent.headers["Authorization"] == "Bearer acc-1"
    assert sent.headers["X-Prescriber-Token"] == "sess-1"


async def test_issue_with_recorded_success_body(
    client: SignatureRxClient, router: respx.MockRouter
) -> None:
    FakePlatform(router)
    router.post(PRESCRIPTIONS).mock(
        return_value=httpx.Response(200, json=load("issue_success.json"))
    )
    issued = await client.issue(ALICE, canonical_payload())
    assert issued.provider_id == "SRXC49F3D4F66A7"
    assert issued.token == "tok-recorded-9f1c"
    assert issued.raw["clinic_id"] == 994


async def test_recorded_token_and_login_responses_are_accepted(
    client: SignatureRxClient, router: respx.MockRouter
) -> None:
    router.post(BASE + "/oauth/token").mock(
        return_value=httpx.Response(200, json=load("token_response.json"))
    )
    login = router.post(API + "/login").mock(
        return_value=httpx.Response(200, json=load("login_success.json"))
    )
    clinics = router.get(API + "/clinics").mock(
        return_value=httpx.Response(200, json=load("clinics_success.json"))
    )
    result = await client.list_clinics(ALICE)
    assert result == [
        Clinic(994, "201334", "rxroute Demo Weight Clinic"),
        Clinic(995, "201335", "Northside Partner Clinic"),
    ]
    assert login.calls.last.request.headers["Authorization"] == "Bearer acc-recorded-0001"
    assert clinics.calls.last.request.headers["X-Prescriber-Token"] == "sess-recorded-0001"


async def test_bad_client_credentials_are_rejected_with_a_hint(
    tmp_path: Path, http: httpx.AsyncClient, platform: FakePlatform
) -> None:
    client = SignatureRxClient(make_settings(tmp_path, erx_client_secret="wrong"), http=http)
    with pytest.raises(RejectedError) as info:
        await client.issue(ALICE, canonical_payload())
    error = info.value
    assert error.reason is RejectReason.INVALID_CLIENT
    assert error.status_code == 401
    assert error.platform_message == "invalid_client"
    assert "RXROUTE_ERX_CLIENT_ID" in str(error) and "RXROUTE_ERX_CLIENT_SECRET" in str(error)
    assert "wrong" not in str(error)
    assert platform.logins == 0 and not platform.issued


async def test_token_endpoint_400_is_rejected_not_as_bad_client(
    client: SignatureRxClient, router: respx.MockRouter
) -> None:
    router.post(BASE + "/oauth/token").mock(
        return_value=httpx.Response(400, json={"error": "unsupported_grant_type"})
    )
    with pytest.raises(RejectedError) as info:
        await client.list_clinics(ALICE)
    assert info.value.reason is RejectReason.OTHER
    assert info.value.platform_message == "unsupported_grant_type"


async def test_token_type_other_than_bearer_is_refused(
    client: SignatureRxClient, router: respx.MockRouter
) -> None:
    router.post(BASE + "/oauth/token").mock(
        return_value=httpx.Response(
            200, json={"access_token": "x", "token_type": "mac", "expires_in": 60}
        )
    )
    with pytest.raises(UnexpectedResponseError, match="token_type"):
        await client.list_clinics(ALICE)


async def test_token_body_with_success_false_is_rejected(
    client: SignatureRxClient, router: respx.MockRouter
) -> None:
    router.post(BASE + "/oauth/token").mock(
        return_value=httpx.Response(200, json={"success": False, "message": "Client suspended."})
    )
    with pytest.raises(RejectedError, match="Client suspended"):
        await client.list_clinics(ALICE)


async def test_wrong_prescriber_credentials_in_a_200(
    client: SignatureRxClient, platform: FakePlatform
) -> None:
    wrong = PrescriberCredentials("prescriber-1", ALICE.email, "not-the-password", "123456")
    with pytest.raises(RejectedError) as info:
        await client.issue(wrong, canonical_payload())
    error = info.value
    assert error.reason is RejectReason.INVALID_PRESCRIBER_CREDENTIALS
    assert error.platform_message == "Invalid prescriber credentials."
    assert error.status_code == 200
    assert "prescriber-1" in str(error)
    assert "not-the-password" not in str(error) and ALICE.email not in str(error)
    assert not platform.issued


async def test_concurrent_sends_with_wrong_credentials_make_one_login(
    router: respx.MockRouter, http: httpx.AsyncClient, settings: Settings, clock: Clock
) -> None:
    platform = FakePlatform(router, auth_delay=0.01)
    client = SignatureRxClient(settings, http=http, clock=clock)
    wrong = PrescriberCredentials("prescriber-1", ALICE.email, "not-the-password", "123456")
    results = await asyncio.gather(
        *(client.list_clinics(wrong) for _ in range(20)), return_exceptions=True
    )
    assert all(
        isinstance(r, RejectedError) and r.reason is RejectReason.INVALID_PRESCRIBER_CREDENTIALS
        for r in results
    )
    assert platform.login_route.call_count == 1
    await client.list_clinics(ALICE)  # corrected credentials are tried at once
    assert platform.login_route.call_count == 2
    clock.advance(31)  # and the refusal is forgotten after a while
    with pytest.raises(RejectedError):
        await client.list_clinics(wrong)
    assert platform.login_route.call_count == 3


async def test_changed_prescriber_credentials_force_a_new_login(
    client: SignatureRxClient, platform: FakePlatform
) -> None:
    await client.list_clinics(ALICE)
    platform.accounts[ALICE.email] = ("rotated-password", "123456", 501)
    rotated = PrescriberCredentials(ALICE.key, ALICE.email, "rotated-password", "123456")
    await client.list_clinics(rotated)
    assert platform.logins == 2


# --- token caching, expiry and concurrency --------------------------------------------------------


async def test_tokens_are_cached_across_calls(
    client: SignatureRxClient, platform: FakePlatform
) -> None:
    for index in range(25):
        await client.issue(ALICE, canonical_payload(f"rx-{index}"))
    assert (platform.grants, platform.logins, len(platform.issued)) == (1, 1, 25)
    assert (client.token_grants, client.logins) == (1, 1)


async def test_each_prescriber_gets_a_session_but_they_share_the_access_token(
    client: SignatureRxClient, platform: FakePlatform
) -> None:
    await client.list_clinics(ALICE)
    await client.list_clinics(BEN)
    await client.list_clinics(ALICE)
    assert (platform.grants, platform.logins) == (1, 2)


async def test_tokens_refresh_before_expiry(
    client: SignatureRxClient, platform: FakePlatform, clock: Clock
) -> None:
    # access 3600 s, session 1800 s, margin 60 s
    await client.list_clinics(ALICE)
    clock.advance(1739)
    await client.list_clinics(ALICE)
    assert (platform.grants, platform.logins) == (1, 1)
    clock.advance(2)  # 1741 s: inside the session's margin
    await client.list_clinics(ALICE)
    assert (platform.grants, platform.logins) == (1, 2)
    clock.advance(3541 - 1741)  # inside the access token's margin
    await client.list_clinics(ALICE)
    assert platform.grants == 2
    # no call was ever refused: refreshing happened before expiry, not after a 401
    assert all(call.response.status_code == 200 for call in platform.clinics_route.calls)


async def test_short_lifetimes_do_not_refresh_on_every_call(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: Clock, tmp_path: Path
) -> None:
    platform = FakePlatform(router, access_lifetime=30, session_lifetime=30)
    client = SignatureRxClient(make_settings(tmp_path), http=http, clock=clock)
    await client.list_clinics(ALICE)
    clock.advance(14)  # margin capped at half the 30 s lifetime
    await client.list_clinics(ALICE)
    assert (platform.grants, platform.logins) == (1, 1)
    clock.advance(2)
    await client.list_clinics(ALICE)
    assert (platform.grants, platform.logins) == (2, 2)


async def test_missing_expires_in_falls_back_to_a_short_lifetime(
    client: SignatureRxClient, router: respx.MockRouter, clock: Clock
) -> None:
    token = router.post(BASE + "/oauth/token").mock(
        return_value=httpx.Response(200, json={"access_token": "acc-x", "token_type": "bearer"})
    )
    router.post(API + "/login").mock(
        return_value=httpx.Response(200, json={"success": True, "data": {"token": "sess-x"}})
    )
    router.get(API + "/clinics").mock(
        return_value=httpx.Response(200, json=load("clinics_success.json"))
    )
    await client.list_clinics(ALICE)
    clock.advance(100)
    await client.list_clinics(ALICE)
    assert token.call_count == 1
    clock.advance(141)  # past 300 s minus the 60 s margin
    await client.list_clinics(ALICE)
    assert token.call_count == 2


async def test_fifty_concurrent_sends_share_one_grant_and_one_login(
    router: respx.MockRouter, http: httpx.AsyncClient, settings: Settings
) -> None:
    platform = FakePlatform(router, auth_delay=0.02)
    client = SignatureRxClient(settings, http=http)
    results = await asyncio.gather(
        *(client.issue(ALICE, canonical_payload(f"rx-{i}")) for i in range(50))
    )
    assert len({r.provider_id for r in results}) == 50
    assert (platform.grants, platform.logins) == (1, 1)
    assert platform.token_route.call_count == 1 and platform.login_route.call_count == 1


async def test_concurrent_prescribers_share_the_grant(
    router: respx.MockRouter, http: httpx.AsyncClient, settings: Settings
) -> None:
    platform = FakePlatform(router, auth_delay=0.02)
    client = SignatureRxClient(settings, http=http)
    await asyncio.gather(*(client.list_clinics(ALICE if i % 2 else BEN) for i in range(40)))
    assert (platform.grants, platform.logins) == (1, 2)


# --- 401: re-authenticate once, retry once --------------------------------------------------------


async def test_401_reauthenticates_once_and_retries(
    client: SignatureRxClient, platform: FakePlatform
) -> None:
    await client.list_clinics(ALICE)
    platform.revoke_access_tokens()
    platform.revoke_sessions()
    issued = await client.issue(ALICE, canonical_payload())
    assert issued.provider_id
    assert (platform.grants, platform.logins) == (2, 2)
    assert platform.issue_route.call_count == 2  # the refused one and the retry
    assert len(platform.issued) == 1


async def test_expired_session_alone_is_recovered(
    client: SignatureRxClient, platform: FakePlatform
) -> None:
    await client.list_clinics(ALICE)
    platform.revoke_sessions()
    await client.list_clinics(ALICE)
    assert platform.logins == 2


async def test_second_401_is_retryable_and_stops(
    client: SignatureRxClient, platform: FakePlatform, router: respx.MockRouter
) -> None:
    always = router.get(API + "/contacts").mock(return_value=unauthenticated())
    with pytest.raises(RetryableError) as info:
        await client.list_contacts(ALICE)
    assert info.value.status_code == 401
    assert info.value.ambiguous is False
    assert always.call_count == 2
    assert (platform.grants, platform.logins) == (2, 2)


async def test_concurrent_401s_cause_one_reauthentication(
    router: respx.MockRouter, http: httpx.AsyncClient, settings: Settings
) -> None:
    platform = FakePlatform(router, auth_delay=0.01)
    client = SignatureRxClient(settings, http=http)
    await client.list_clinics(ALICE)
    platform.revoke_access_tokens()
    platform.revoke_sessions()
    await asyncio.gather(*(client.list_clinics(ALICE) for _ in range(30)))
    assert (platform.grants, platform.logins) == (2, 2)


async def test_login_401_regrants_the_access_token_once(
    client: SignatureRxClient, platform: FakePlatform
) -> None:
    await client.list_clinics(ALICE)
    platform.revoke_access_tokens()
    platform.revoke_sessions()
    await client.list_clinics(BEN)  # BEN's login meets the stale access token first
    assert platform.grants == 2
    assert platform.login_route.call_count == 3  # ALICE, BEN refused, BEN again


async def test_login_401_twice_is_retryable(
    client: SignatureRxClient, router: respx.MockRouter
) -> None:
    token = router.post(BASE + "/oauth/token").mock(
        return_value=httpx.Response(200, json=load("token_response.json"))
    )
    login = router.post(API + "/login").mock(return_value=unauthenticated())
    with pytest.raises(RetryableError) as info:
        await client.list_clinics(ALICE)
    assert info.value.operation == "login" and info.value.status_code == 401
    assert (token.call_count, login.call_count) == (2, 2)


# --- the envelope: success is checked whatever the status -----------------------------------------


@pytest.mark.parametrize(
    ("fixture", "reason", "hint_part"),
    [
        ("issue_wrong_pin.json", RejectReason.INVALID_SECURE_PIN, "PIN"),
        ("issue_unauthorized_clinic.json", RejectReason.UNAUTHORIZED_CLINIC, "clinic 994"),
    ],
)
async def test_success_false_in_a_200_is_rejected_with_the_platform_message(
    client: SignatureRxClient,
    platform: FakePlatform,
    router: respx.MockRouter,
    fixture: str,
    reason: RejectReason,
    hint_part: str,
) -> None:
    router.post(PRESCRIPTIONS).mock(return_value=httpx.Response(200, json=load(fixture)))
    with pytest.raises(RejectedError) as info:
        await client.issue(ALICE, canonical_payload())
    assert info.value.reason is reason
    assert info.value.platform_message == load(fixture)["message"]
    assert info.value.message == load(fixture)["message"]
    assert info.value.hint is not None and hint_part in info.value.hint


async def test_wrong_pin_via_the_fake_platform(
    client: SignatureRxClient, platform: FakePlatform
) -> None:
    payload = canonical_payload().model_copy(update={"secure_pin": "000000"})
    with pytest.raises(RejectedError) as info:
        await client.issue(ALICE, payload)
    assert info.value.reason is RejectReason.INVALID_SECURE_PIN
    assert "000000" not in str(info.value)


async def test_unauthorized_clinic_names_the_internal_id_for_a_display_id(
    settings: Settings, http: httpx.AsyncClient, platform: FakePlatform
) -> None:
    client = SignatureRxClient(
        settings, http=http, known_clinics=[Clinic(994, "201334", "Demo clinic")]
    )
    with pytest.raises(RejectedError) as info:
        await client.issue(ALICE, canonical_payload(clinic_id=201334))
    error = info.value
    assert error.reason is RejectReason.UNAUTHORIZED_CLINIC
    assert error.platform_message == "You trying to issue prescription to unauthorized clinic."
    assert error.hint == (
        "clinic 201334 is the dashboard display ID; configure the internal ID 994 "
        "(RXROUTE_ERX_CLINIC_ID)"
    )
    assert "configure the internal ID 994" in str(error)
    assert platform.clinics_route.call_count == 0  # the known mapping sufficed


async def test_unauthorized_clinic_looks_up_clinics_when_none_are_known(
    client: SignatureRxClient, platform: FakePlatform
) -> None:
    with pytest.raises(RejectedError) as info:
        await client.issue(ALICE, canonical_payload(clinic_id=201335))
    assert info.value.hint is not None
    assert "201335 is the dashboard display ID; configure the internal ID 995" in info.value.hint
    assert platform.clinics_route.call_count == 1


async def test_unauthorized_clinic_with_a_known_internal_id(
    client: SignatureRxClient, platform: FakePlatform
) -> None:
    with pytest.raises(RejectedError) as info:
        await client.issue(ALICE, canonical_payload(clinic_id=995))
    assert info.value.hint is not None and "may not issue" in info.value.hint


async def test_unauthorized_clinic_unknown_everywhere(
    client: SignatureRxClient, platform: FakePlatform
) -> None:
    with pytest.raises(RejectedError) as info:
        await client.issue(ALICE, canonical_payload(clinic_id=7))
    assert info.value.hint is not None
    assert "not one of the prescriber's clinics" in info.value.hint
    assert "994 (display 201334)" in info.value.hint


async def test_unauthorized_clinic_hint_survives_a_failed_lookup(
    client: SignatureRxClient, platform: FakePlatform
) -> None:
    platform.clinics_route.mock(return_value=httpx.Response(503))
    with pytest.raises(RejectedError) as info:
        await client.issue(ALICE, canonical_payload(clinic_id=201334))
    assert info.value.hint is not None
    assert "internal API ID, not the display ID" in info.value.hint


async def test_unauthorized_clinic_without_lookup(
    settings: Settings, http: httpx.AsyncClient, platform: FakePlatform
) -> None:
    client = SignatureRxClient(settings, http=http, lookup_clinics_on_unauthorized=False)
    with pytest.raises(RejectedError) as info:
        await client.issue(ALICE, canonical_payload(clinic_id=201334))
    assert info.value.hint is not None and "list_clinics shows both" in info.value.hint
    assert platform.clinics_route.call_count == 0


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("Prescriber account is inactive.", RejectReason.INACTIVE_PRESCRIBER),
        ("Unknown contact.", RejectReason.UNKNOWN_CONTACT),
        ("Something else went wrong.", RejectReason.OTHER),
    ],
)
async def test_other_business_errors(
    client: SignatureRxClient,
    platform: FakePlatform,
    router: respx.MockRouter,
    message: str,
    reason: RejectReason,
) -> None:
    router.post(PRESCRIPTIONS).mock(
        return_value=httpx.Response(200, json={"success": False, "message": message})
    )
    with pytest.raises(RejectedError) as info:
        await client.issue(ALICE, canonical_payload())
    assert info.value.reason is reason
    assert info.value.platform_message == message


async def test_422_gives_field_errors(
    client: SignatureRxClient, platform: FakePlatform, router: respx.MockRouter
) -> None:
    router.post(PRESCRIPTIONS).mock(
        return_value=httpx.Response(422, json=load("issue_validation_422.json"))
    )
    with pytest.raises(ValidationRejected) as info:
        await client.issue(ALICE, canonical_payload())
    error = info.value
    assert error.status_code == 422
    assert error.reason is RejectReason.VALIDATION
    assert error.platform_message == "The given data was invalid."
    assert error.field_errors == {
        "patient.post_code": ["The patient.post_code field is required."],
        "medicines.0.qty": ["The medicines.0.qty field is required."],
    }
    assert "patient.post_code" in str(error)


async def test_422_with_odd_errors_shape(
    client: SignatureRxClient, platform: FakePlatform, router: respx.MockRouter
) -> None:
    router.post(PRESCRIPTIONS).mock(
        return_value=httpx.Response(422, json={"success": False, "errors": {"notes": "too long"}})
    )
    with pytest.raises(ValidationRejected) as info:
        await client.issue(ALICE, canonical_payload())
    assert info.value.field_errors == {"notes": ["too long"]}
    router.post(PRESCRIPTIONS).mock(return_value=httpx.Response(422, json={"errors": ["x"]}))
    with pytest.raises(ValidationRejected) as info:
        await client.issue(ALICE, canonical_payload())
    assert info.value.field_errors == {}


async def test_4xx_with_success_true_is_still_an_error(
    client: SignatureRxClient, platform: FakePlatform, router: respx.MockRouter
) -> None:
    router.post(PRESCRIPTIONS).mock(
        return_value=httpx.Response(403, json={"success": True, "message": "Forbidden."})
    )
    with pytest.raises(RejectedError) as info:
        await client.issue(ALICE, canonical_payload())
    assert info.value.status_code == 403


async def test_200_without_success_flag_is_not_a_success(
    client: SignatureRxClient, platform: FakePlatform, router: respx.MockRouter
) -> None:
    router.post(PRESCRIPTIONS).mock(
        return_value=httpx.Response(
            200, json={"data": {"prescription": {"id": "SRX1", "status": "issued"}}}
        )
    )
    with pytest.raises(UnexpectedResponseError) as info:
        await client.issue(ALICE, canonical_payload())
    assert info.value.ambiguous is True


# --- transport failures and server errors ---------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
async def test_5xx_and_429_are_retryable_not_ambiguous(
    client: SignatureRxClient, platform: FakePlatform, router: respx.MockRouter, status: int
) -> None:
    router.post(PRESCRIPTIONS).mock(
        return_value=httpx.Response(status, text="<html>busy</html>", headers={"Retry-After": "7"})
    )
    with pytest.raises(RetryableError) as info:
        await client.issue(ALICE, canonical_payload())
    assert info.value.ambiguous is False
    assert info.value.status_code == status
    assert info.value.retry_after_seconds == 7.0
    assert not isinstance(info.value, UnexpectedResponseError)


@pytest.mark.parametrize("retry_after", ["soon", "-3"])
async def test_unusable_retry_after_is_ignored(
    client: SignatureRxClient, platform: FakePlatform, router: respx.MockRouter, retry_after: str
) -> None:
    router.get(API + "/contacts").mock(
        return_value=httpx.Response(429, headers={"Retry-After": retry_after})
    )
    with pytest.raises(RetryableError) as info:
        await client.list_contacts(ALICE)
    assert info.value.retry_after_seconds is None


async def test_5xx_on_the_token_endpoint_is_retryable(
    client: SignatureRxClient, router: respx.MockRouter
) -> None:
    router.post(BASE + "/oauth/token").mock(return_value=httpx.Response(503))
    with pytest.raises(RetryableError) as info:
        await client.list_clinics(ALICE)
    assert info.value.operation == "token" and info.value.ambiguous is False


@pytest.mark.parametrize(
    ("exception", "ambiguous"),
    [
        (httpx.ConnectError, False),
        (httpx.ConnectTimeout, False),
        (httpx.PoolTimeout, False),
        (httpx.ReadTimeout, True),
        (httpx.RemoteProtocolError, True),
        (httpx.ReadError, True),
        (httpx.WriteTimeout, True),
    ],
)
async def test_transport_errors_are_retryable_and_flag_ambiguity(
    client: SignatureRxClient,
    platform: FakePlatform,
    router: respx.MockRouter,
    exception: type[Exception],
    ambiguous: bool,
) -> None:
    router.post(PRESCRIPTIONS).mock(side_effect=exception)
    with pytest.raises(RetryableError) as info:
        await client.issue(ALICE, canonical_payload())
    assert info.value.ambiguous is ambiguous
    assert info.value.operation == "issue"
    assert isinstance(info.value.__cause__, exception)


async def test_connect_error_on_auth_is_retryable(
    client: SignatureRxClient, router: respx.MockRouter
) -> None:
    router.post(BASE + "/oauth/token").mock(side_effect=httpx.ConnectError)
    with pytest.raises(RetryableError) as info:
        await client.list_clinics(ALICE)
    assert info.value.operation == "token" and not info.value.ambiguous


# --- response shape: the ID only from data.prescription.id ----------------------------------------


async def test_top_level_id_without_nested_id_is_an_error(
    client: SignatureRxClient, platform: FakePlatform, router: respx.MockRouter
) -> None:
    router.post(PRESCRIPTIONS).mock(
        return_value=httpx.Response(200, json=load("issue_top_level_id_only.json"))
    )
    with pytest.raises(UnexpectedResponseError) as info:
        await client.issue(ALICE, canonical_payload())
    assert info.value.ambiguous is True  # the platform may have issued it: look up first
    assert "data.prescription" in str(info.value)


@pytest.mark.parametrize(
    "body",
    [
        {"success": True, "data": {"prescription": {"status": "issued"}}},
        {"success": True, "data": {"prescription": {"id": "", "status": "issued"}}},
        {"success": True, "data": {"prescription": {"id": "SRX1"}}},
        {"success": True, "data": None},
        {"success": True},
        {"success": True, "data": {"prescription": "SRX1"}},
    ],
)
async def test_incomplete_success_bodies_are_errors(
    client: SignatureRxClient, platform: FakePlatform, router: respx.MockRouter, body: object
) -> None:
    router.post(PRESCRIPTIONS).mock(return_value=httpx.Response(200, json=body))
    with pytest.raises(UnexpectedResponseError):
        await client.issue(ALICE, canonical_payload())


async def test_numeric_prescription_id_is_kept_as_text(
    client: SignatureRxClient, platform: FakePlatform, router: respx.MockRouter
) -> None:
    router.post(PRESCRIPTIONS).mock(
        return_value=httpx.Response(
            200, json={"success": True, "data": {"prescription": {"id": 12345, "status": "issued"}}}
        )
    )
    issued = await client.issue(ALICE, canonical_payload())
    assert issued.provider_id == "12345"
    assert issued.token is None


async def test_answer_for_another_client_ref_is_an_error(
    client: SignatureRxClient, platform: FakePlatform, router: respx.MockRouter
) -> None:
    body = load("issue_success.json")
    body["data"]["prescription"]["client_ref_id"] = "someone-else"
    router.post(PRESCRIPTIONS).mock(return_value=httpx.Response(200, json=body))
    with pytest.raises(UnexpectedResponseError) as info:
        await client.issue(ALICE, canonical_payload())
    assert info.value.ambiguous is True


@pytest.mark.parametrize(
    ("method", "status", "content", "error", "ambiguous"),
    [
        ("issue", 200, b"<html>oops</html>", UnexpectedResponseError, True),
        ("issue", 200, b'{"success": true, "data": ', UnexpectedResponseError, True),
        ("issue", 200, b"[1, 2]", UnexpectedResponseError, True),
        ("issue", 200, b"", UnexpectedResponseError, True),
        ("contacts", 200, b"not json", UnexpectedResponseError, False),
        ("contacts", 200, b'"text"', UnexpectedResponseError, False),
    ],
)
async def test_malformed_bodies_are_typed_errors(
    client: SignatureRxClient,
    platform: FakePlatform,
    router: respx.MockRouter,
    method: str,
    status: int,
    content: bytes,
    error: type[RetryableError],
    ambiguous: bool,
) -> None:
    response = httpx.Response(status, content=content, headers={"Content-Type": "application/json"})
    if method == "issue":
        router.post(PRESCRIPTIONS).mock(return_value=response)
        call = client.issue(ALICE, canonical_payload())
    else:
        router.get(API + "/contacts").mock(return_value=response)
        call = client.list_contacts(ALICE)
    with pytest.raises(error) as info:
        await call
    assert info.value.ambiguous is ambiguous


@pytest.mark.parametrize(
    ("status", "reason"), [(404, RejectReason.NOT_FOUND), (405, RejectReason.OTHER)]
)
async def test_non_json_4xx_is_rejected_with_a_config_hint(
    client: SignatureRxClient,
    platform: FakePlatform,
    router: respx.MockRouter,
    status: int,
    reason: RejectReason,
) -> None:
    router.get(API + "/contacts").mock(
        return_value=httpx.Response(status, text="<html>Not Found</html>")
    )
    with pytest.raises(RejectedError) as info:
        await client.list_contacts(ALICE)
    assert info.value.reason is reason
    assert info.value.hint is not None and "RXROUTE_ERX_BASE_URL" in info.value.hint


async def test_json_array_on_a_4xx_is_rejected(
    client: SignatureRxClient, platform: FakePlatform, router: respx.MockRouter
) -> None:
    router.get(API + "/contacts").mock(return_value=httpx.Response(400, json=["bad"]))
    with pytest.raises(RejectedError) as info:
        await client.list_contacts(ALICE)
    assert info.value.platform_message is None
    assert "no message" in str(info.value)


async def test_401_without_json_is_handled_like_any_401(
    client: SignatureRxClient, platform: FakePlatform, router: respx.MockRouter
) -> None:
    route = router.get(API + "/contacts").mock(return_value=httpx.Response(401, text="nope"))
    with pytest.raises(RetryableError):
        await client.list_contacts(ALICE)
    assert route.call_count == 2


async def test_token_401_without_json_is_a_bad_client(
    client: SignatureRxClient, router: respx.MockRouter
) -> None:
    router.post(BASE + "/oauth/token").mock(return_value=httpx.Response(401, text="nope"))
    with pytest.raises(RejectedError) as info:
        await client.list_contacts(ALICE)
    assert info.value.reason is RejectReason.INVALID_CLIENT


# --- lookup, get, void, lists ---------------------------------------------------------------------


async def test_find_by_client_ref_finds_what_was_issued(
    client: SignatureRxClient, platform: FakePlatform
) -> None:
    issued = await client.issue(ALICE, canonical_payload("rx-42"))
    await client.issue(ALICE, canonical_payload("rx-43"))
    found = await client.find_by_client_ref(ALICE, "rx-42")
    assert [f.provider_id for f in found] == [issued.provider_id]
    assert found[0].client_ref_id == "rx-42" and found[0].rxroute_status == "issued"
    assert platform.list_route.calls.last.request.url.params["client_ref_id"] == "rx-42"
    assert await client.find_by_client_ref(ALICE, "rx-never") == []


async def test_find_by_client_ref_ignores_other_refs_if_the_filter_is_ignored(
    client: SignatureRxClient, platform: FakePlatform, router: respx.MockRouter
) -> None:
    router.get(PRESCRIPTIONS).mock(
        return_value=httpx.Response(
            200,
            json={
                "success": True,
                "data": {
                    "prescriptions": [
                        {"id": "SRX1", "status": "issued", "client_ref_id": "rx-1"},
                        {"id": "SRX2", "status": "signed", "client_ref_id": "rx-2"},
                    ]
                },
            },
        )
    )
    found = await client.find_by_client_ref(ALICE, "rx-2")
    assert [(f.provider_id, f.status) for f in found] == [("SRX2", "signed")]


async def test_find_by_client_ref_refuses_unconfirmable_records(
    client: SignatureRxClient, platform: FakePlatform, router: respx.MockRouter
) -> None:
    router.get(PRESCRIPTIONS).mock(
        return_value=httpx.Response(
            200,
            json={"success": True, "data": {"prescriptions": [{"id": "SRX1", "status": "issued"}]}},
        )
    )
    with pytest.raises(UnexpectedResponseError, match="cannot tell"):
        await client.find_by_client_ref(ALICE, "rx-1")


async def test_find_by_client_ref_needs_a_ref(client: SignatureRxClient) -> None:
    with pytest.raises(LocalValidationError) as info:
        await client.find_by_client_ref(ALICE, "  ")
    assert info.value.field == "client_ref_id"


async def test_get_and_void(client: SignatureRxClient, platform: FakePlatform) -> None:
    issued = await client.issue(ALICE, canonical_payload())
    current = await client.get(ALICE, issued.provider_id)
    assert (current.provider_id, current.status) == (issued.provider_id, "issued")
    voided = await client.void(ALICE, issued.provider_id)
    assert voided.status == "voided" and voided.rxroute_status == "voided"


async def test_void_of_a_dispensed_prescription_is_rejected(
    client: SignatureRxClient, platform: FakePlatform
) -> None:
    issued = await client.issue(ALICE, canonical_payload())
    platform.prescriptions[issued.provider_id]["status"] = "dispensed"
    with pytest.raises(RejectedError) as info:
        await client.void(ALICE, issued.provider_id)
    assert info.value.reason is RejectReason.ALREADY_DISPENSED
    assert info.value.platform_message == "Prescription already dispensed."


async def test_get_unknown_is_not_found(client: SignatureRxClient, platform: FakePlatform) -> None:
    with pytest.raises(RejectedError) as info:
        await client.get(ALICE, "SRXNOTTHERE")
    assert info.value.reason is RejectReason.NOT_FOUND and info.value.status_code == 404


@pytest.mark.parametrize("bad", ["", "../clinics", "SRX 1", "a/b", "x" * 65, "SRX?x=1"])
async def test_prescription_ids_are_checked_before_use_in_a_path(
    client: SignatureRxClient, platform: FakePlatform, bad: str
) -> None:
    with pytest.raises(LocalValidationError) as info:
        await client.get(ALICE, bad)
    assert info.value.field == "prescription_id"
    with pytest.raises(LocalValidationError):
        await client.void(ALICE, bad)
    assert platform.token_route.call_count == 0


async def test_list_contacts(client: SignatureRxClient, platform: FakePlatform) -> None:
    contacts = await client.list_contacts(ALICE)
    assert [(c.id, c.post_code) for c in contacts] == [(5001, "LS1 2AB")]


# --- capture mode ---------------------------------------------------------------------------------


async def test_capture_mode_records_redacted_traffic(
    tmp_path: Path, http: httpx.AsyncClient, platform: FakePlatform
) -> None:
    settings = make_settings(tmp_path, erx_capture=True)
    client = SignatureRxClient(settings, http=http)
    await client.issue(ALICE, canonical_payload())
    files = sorted((tmp_path / "capture").glob("*.json"))
    assert [json.loads(f.read_text())["operation"] for f in files] == ["token", "login", "issue"]
    everything = "\n".join(f.read_text() for f in files)
    secrets_and_phi = [
        CLIENT_SECRET,
        ALICE.password,
        ALICE.email,
        ALICE.secure_pin,
        "acc-1",
        "sess-1",
        "tok-1",
        "Jamie",
        "Testpatient",
        "patient@example.com",
        "447700900123",
        "1985",
        "12 Example Street",
        "Leeds",
        "LS1 4AP",
        "9990000018",
        "Semaglutide",
        "Inject 0.25mg",
        "Synthetic test prescription",
    ]
    leaked = [s for s in secrets_and_phi if s in everything]
    assert leaked == []
    issue = json.loads(files[2].read_text())
    assert issue["request"]["headers"]["Authorization"] == "Bearer <redacted>"
    assert issue["request"]["headers"]["X-Prescriber-Token"] == "<redacted>"
    assert issue["request"]["body"]["clinic_id"] == 994
    assert issue["request"]["body"]["medicines"][0]["VPID"] == "39954111000001109"
    assert issue["response"]["body"]["data"]["prescription"]["id"].startswith("SRXC")
    token = json.loads(files[0].read_text())
    assert token["request"]["body"]["client_secret"] == "<redacted>"
    assert token["request"]["body"]["client_id"] == "rxroute-test-client"
    assert token["response"]["body"]["access_token"] == "<redacted>"


async def test_capture_records_transport_errors_and_unparsed_bodies(
    tmp_path: Path, http: httpx.AsyncClient, platform: FakePlatform, router: respx.MockRouter
) -> None:
    client = SignatureRxClient(make_settings(tmp_path, erx_capture=True), http=http)
    router.get(API + "/contacts").mock(side_effect=httpx.ReadTimeout)
    router.get(API + "/clinics").mock(return_value=httpx.Response(200, text="<html>Jamie</html>"))
    with pytest.raises(RetryableError):
        await client.list_contacts(ALICE)
    with pytest.raises(UnexpectedResponseError):
        await client.list_clinics(ALICE)
    records = [json.loads(f.read_text()) for f in sorted((tmp_path / "capture").glob("*.json"))]
    by_op = {r["operation"]: r for r in records}
    assert by_op["list_contacts"]["error"] == "ReadTimeout"
    assert by_op["list_contacts"]["response"] is None
    assert by_op["list_clinics"]["response"]["body"].startswith("<unparsed body")
    assert "Jamie" not in json.dumps(records)


async def test_capture_is_off_by_default(
    tmp_path: Path, client: SignatureRxClient, platform: FakePlatform
) -> None:
    await client.list_clinics(ALICE)
    assert not (tmp_path / "capture").exists()


@pytest.mark.parametrize("environment", [Environment.STAGING, Environment.PRODUCTION])
def test_client_refuses_capture_outside_development(
    tmp_path: Path, environment: Environment
) -> None:
    settings = make_settings(tmp_path, erx_capture=True).model_copy(
        update={"environment": environment}
    )
    with pytest.raises(CaptureRefusedError, match="RXROUTE_ERX_CAPTURE"):
        SignatureRxClient(settings)


def test_settings_refuse_capture_outside_development(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="RXROUTE_ERX_CAPTURE"):
        make_settings(
            tmp_path,
            erx_capture=True,
            environment="staging",
            encryption_keys="k" * 44,
            session_secret="real-session-secret",
            csrf_secret="real-csrf-secret",
            link_secret="real-link-secret",
            webhook_secret="real-webhook-secret",
            erx_client_secret="real-client-secret",
        )


# --- lifecycle of the HTTP client -----------------------------------------------------------------


async def test_owned_http_client_is_closed(settings: Settings, platform: FakePlatform) -> None:
    async with SignatureRxClient(settings) as client:
        await client.list_clinics(ALICE)
        inner = client._http
    assert inner.is_closed


async def test_injected_http_client_is_left_open(
    settings: Settings, http: httpx.AsyncClient
) -> None:
    async with SignatureRxClient(settings, http=http):
        pass
    assert not http.is_closed


def test_paths_follow_settings(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        erx_base_url="https://erx.example.com/",
        erx_api_prefix="api/v2/",
        erx_token_path="auth/token",
    )
    client = SignatureRxClient(settings)
    assert client.paths.token == "https://erx.example.com/auth/token"
    assert client.paths.login == "https://erx.example.com/api/v2/login"
    assert client.paths.prescription("SRX1") == "https://erx.example.com/api/v2/prescriptions/SRX1"
    assert client.paths.void("SRX1") == "https://erx.example.com/api/v2/prescriptions/SRX1/void"
