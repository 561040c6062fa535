"""Two-step authentication and the strict header format (case study lessons 1 and 6)."""

from __future__ import annotations

import httpx
import pytest

from .conftest import ALICE, CLIENT_ID, CLIENT_SECRET, get_access_token, login


async def test_token_grant_shape(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600


@pytest.mark.parametrize(
    ("client_id", "client_secret"),
    [(CLIENT_ID, "wrong"), ("someone-else", CLIENT_SECRET), ("", "")],
)
async def test_bad_client_credentials_are_401_invalid_client(
    client: httpx.AsyncClient, client_id: str, client_secret: str
) -> None:
    response = await client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
        },
    )
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_client"}


async def test_token_endpoint_wants_a_form_and_the_grant(client: httpx.AsyncClient) -> None:
    as_json = await client.post(
        "/oauth/token",
        json={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
    )
    assert as_json.status_code == 400
    assert as_json.json() == {"error": "invalid_request"}
    wrong_grant = await client.post("/oauth/token", data={"grant_type": "password"})
    assert wrong_grant.status_code == 400
    assert wrong_grant.json() == {"error": "unsupported_grant_type"}


async def test_login_returns_session_token(client: httpx.AsyncClient) -> None:
    access = await get_access_token(client)
    response = await client.post(
        "/api/v1/login",
        headers={"Authorization": f"Bearer {access}"},
        json={"email": ALICE[0], "password": ALICE[1]},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["data"]["expires_in"] == 1800
    assert body["data"]["prescriber"] == {"id": 501}
    assert isinstance(body["data"]["token"], str) and body["data"]["token"]


async def test_wrong_prescriber_credentials_are_http_200_failure(client: httpx.AsyncClient) -> None:
    access = await get_access_token(client)
    response = await client.post(
        "/api/v1/login",
        headers={"Authorization": f"Bearer {access}"},
        json={"email": ALICE[0], "password": "not-it"},
    )
    assert response.status_code == 200
    assert response.json() == {"success": False, "message": "Invalid prescriber credentials."}


async def test_login_needs_the_access_token(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/login", json={"email": ALICE[0], "password": ALICE[1]})
    assert response.status_code == 401
    assert response.json() == {"success": False, "message": "Unauthenticated."}


async def test_login_validation_is_422(client: httpx.AsyncClient) -> None:
    access = await get_access_token(client)
    response = await client.post(
        "/api/v1/login", headers={"Authorization": f"Bearer {access}"}, json={"email": ALICE[0]}
    )
    assert response.status_code == 422
    assert "password" in response.json()["errors"]


async def test_correct_headers_pass(client: httpx.AsyncClient) -> None:
    headers = await login(client)
    response = await client.get("/api/v1/clinics", headers=headers)
    assert response.status_code == 200
    assert response.json()["success"] is True


def _variants(access: str, session: str) -> list[dict[str, str]]:
    """Headers each one character (or one header) away from the exact format."""
    return [
        {"Authorization": f"bearer {access}", "X-Prescriber-Token": session},
        {"Authorization": f"BEARER {access}", "X-Prescriber-Token": session},
        {"Authorization": f"Bearer  {access}", "X-Prescriber-Token": session},
        {"Authorization": f"Bearer {access} ", "X-Prescriber-Token": session},
        {"Authorization": f"Bearer{access}", "X-Prescriber-Token": session},
        {"Authorization": f"Token {access}", "X-Prescriber-Token": session},
        {"Authorization": access, "X-Prescriber-Token": session},
        {"Authorization": f"Bearer {access}x", "X-Prescriber-Token": session},
        {"Authorization": f"Bearer {access[:-1]}", "X-Prescriber-Token": session},
        {"Authorization": f"Bearer {access}"},
        {"X-Prescriber-Token": session},
        {"Authorization": f"Bearer {access}", "X-Prescriber-Token": session + "x"},
        {"Authorization": f"Bearer {access}", "X-Prescriber-Token": ""},
        {"Authorization": f"Bearer {access}", "X-Prescriber": session},
        {"Authorization": f"Bearer {access}", "X-Prescriber-Tokens": session},
        {"Authorization": f"Bearer {session}", "X-Prescriber-Token": access},
    ]


async def test_header_off_by_one_is_401(client: httpx.AsyncClient) -> None:
    good = await login(client)
    access = good["Authorization"].removeprefix("Bearer ")
    session = good["X-Prescriber-Token"]
    for headers in _variants(access, session):
        for method, path in (("GET", "/api/v1/clinics"), ("POST", "/api/v1/prescriptions")):
            response = await client.request(method, path, headers=headers, json={})
            assert response.status_code == 401, (headers, path)
            assert response.json() == {"success": False, "message": "Unauthenticated."}


async def test_duplicated_authorization_header_is_401(client: httpx.AsyncClient) -> None:
    good = await login(client)
    headers = [
        ("Authorization", good["Authorization"]),
        ("Authorization", good["Authorization"]),
        ("X-Prescriber-Token", good["X-Prescriber-Token"]),
    ]
    response = await client.get("/api/v1/clinics", headers=headers)
    assert response.status_code == 401


async def test_expired_session_by_clock_is_401(client: httpx.AsyncClient) -> None:
    headers = await login(client)
    assert (await client.get("/api/v1/clinics", headers=headers)).status_code == 200
    await client.post("/_sandbox/clock/advance", json={"seconds": 1800})
    response = await client.get("/api/v1/clinics", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"success": False, "message": "Unauthenticated."}
    # The access token (3600 s) still works for a fresh login.
    access = headers["Authorization"].removeprefix("Bearer ")
    relogin = await client.post(
        "/api/v1/login",
        headers={"Authorization": f"Bearer {access}"},
        json={"email": ALICE[0], "password": ALICE[1]},
    )
    assert relogin.json()["success"] is True


async def test_expired_access_token_by_clock_is_401(client: httpx.AsyncClient) -> None:
    await client.put("/_sandbox/faults", json={"session_token_ttl_seconds": 7200})
    headers = await login(client)
    await client.post("/_sandbox/clock/advance", json={"seconds": 3600})
    assert (await client.get("/api/v1/clinics", headers=headers)).status_code == 401


async def test_short_lifetimes_expire_in_real_time(client: httpx.AsyncClient) -> None:
    faults = await client.put(
        "/_sandbox/faults", json={"access_token_ttl_seconds": 1, "session_token_ttl_seconds": 1}
    )
    assert faults.json()["access_token_ttl_seconds"] == 1
    headers = await login(client)
    assert (await client.get("/api/v1/clinics", headers=headers)).status_code == 200
    import asyncio

    await asyncio.sleep(1.1)
    assert (await client.get("/api/v1/clinics", headers=headers)).status_code == 401


async def test_stats_count_grants_and_logins(client: httpx.AsyncClient) -> None:
    await login(client)
    await login(client)
    stats = (await client.get("/_sandbox/stats")).json()
    assert stats["token_grants"] == 2
    assert stats["prescriber_logins"] == 2
