"""One sign-in service behind the API token endpoint and the sign-in page: throttled per
(account, client) with growing delays, per client and per account, without letting an
attacker lock a user out; argon2 for unknown accounts too; rehash on new parameters; a
pre-session CSRF token on the form."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.auth import passwords
from rxroute.auth.csrf import SIGN_IN_COOKIE
from rxroute.auth.passwords import verify_password
from rxroute.auth.ratelimit import SignInLimiter
from rxroute.config import Settings
from rxroute.models import AuthSession, Role, User
from rxroute.runtime import Runtime
from tests.auth.helpers import form_token, post_login
from tests.factories import PASSWORD, make_user

EMAIL = "real.admin@example.com"
ATTACKER = "203.0.113.66"
USER_IP = "198.51.100.20"

ClientAt = Callable[[str], httpx.AsyncClient]


@pytest.fixture
async def client_at(db: Runtime, settings: Settings) -> AsyncIterator[ClientAt]:
    """Clients of one app, each seen coming from the address it is given."""
    from rxroute.app import create_app

    app = create_app(settings)
    opened: list[httpx.AsyncClient] = []

    def at(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        opened.append(httpx.AsyncClient(transport=transport, base_url="http://rxroute.test"))
        return opened[-1]

    yield at
    for client in opened:
        await client.aclose()


@pytest.fixture
async def admin(session: AsyncSession) -> User:
    user = await make_user(session, Role.ADMIN, email=EMAIL)
    await session.commit()
    return user


async def test_api_token_endpoint_is_rate_limited(client_at: ClientAt, admin: User) -> None:
    attacker = client_at(ATTACKER)
    answers = [
        (await attacker.post("/api/v1/auth/token", json={"email": EMAIL, "password": f"guess-{n}"}))
        for n in range(4)
    ]
    assert [a.status_code for a in answers] == [401, 401, 401, 429]
    refused = answers[-1]
    assert int(refused.headers["retry-after"]) >= 1
    assert "too many failed sign-ins" in refused.json()["detail"]
    # Refused before the password is looked at: even the right one waits.
    right = await attacker.post("/api/v1/auth/token", json={"email": EMAIL, "password": PASSWORD})
    assert right.status_code == 429


async def test_page_and_api_share_one_limiter(client_at: ClientAt, admin: User) -> None:
    attacker = client_at(ATTACKER)
    for n in range(3):
        response = await post_login(attacker, EMAIL, f"guess-{n}")
        assert response.status_code == 401
    api = await attacker.post("/api/v1/auth/token", json={"email": EMAIL, "password": "guess"})
    assert api.status_code == 429
    page = await post_login(attacker, EMAIL, "guess")
    assert page.status_code == 429
    assert "Too many attempts" in page.text
    assert page.headers["retry-after"]


async def test_an_attacker_cannot_lock_the_user_out(client_at: ClientAt, admin: User) -> None:
    """The incident: failures from elsewhere (even for a nonexistent email) locked the real
    admin out of their correct password. Now the attacker's own address slows down, and the
    admin signs in from theirs, by the API and by the page."""
    attacker = client_at(ATTACKER)
    for n in range(12):
        await attacker.post("/api/v1/auth/token", json={"email": EMAIL, "password": f"g{n}"})
        await attacker.post(
            "/api/v1/auth/token", json={"email": "nobody@example.com", "password": f"g{n}"}
        )
    locked = await attacker.post("/api/v1/auth/token", json={"email": EMAIL, "password": "x"})
    assert locked.status_code == 429

    user = client_at(USER_IP)
    api = await user.post("/api/v1/auth/token", json={"email": EMAIL, "password": PASSWORD})
    assert api.status_code == 200, api.text
    page = await post_login(user, EMAIL, PASSWORD)
    assert page.status_code == 303
    assert page.headers["location"] == "/admin"


async def test_parallel_guesses_cannot_slip_past_the_limit(
    client_at: ClientAt, admin: User
) -> None:
    attacker = client_at(ATTACKER)
    answers = await asyncio.gather(
        *(
            attacker.post("/api/v1/auth/token", json={"email": EMAIL, "password": f"g{n}"})
            for n in range(8)
        )
    )
    codes = sorted(answer.status_code for answer in answers)
    assert codes == [401, 401, 401, 429, 429, 429, 429, 429]


def test_delays_grow_per_account_and_client() -> None:
    limiter = SignInLimiter()
    now = 1000.0
    for _ in range(3):
        assert limiter.retry_after(EMAIL, ATTACKER, now) == 0
        limiter.attempt(EMAIL, ATTACKER, now)
    waits = []
    for _ in range(5):
        wait = limiter.retry_after(EMAIL, ATTACKER, now)
        waits.append(wait)
        now += wait
        limiter.attempt(EMAIL, ATTACKER, now)
    assert waits == [1, 2, 4, 8, 16]
    # The same account from another client, and another account from this client: free.
    assert limiter.retry_after(EMAIL, USER_IP, now) == 0
    assert limiter.retry_after("other@example.com", ATTACKER, now) == 0
    # Capped.
    for _ in range(30):
        limiter.attempt(EMAIL, ATTACKER, now)
    assert limiter.retry_after(EMAIL, ATTACKER, now) == limiter.max_delay_seconds


def test_a_client_spraying_many_accounts_runs_out_of_budget() -> None:
    limiter = SignInLimiter(client_budget=10, client_window_seconds=600)
    for n in range(10):
        assert limiter.retry_after(f"user{n}@example.com", ATTACKER, 0.0) == 0
        limiter.attempt(f"user{n}@example.com", ATTACKER, 0.0)
    assert limiter.retry_after("fresh@example.com", ATTACKER, 1.0) == 599
    assert limiter.retry_after("fresh@example.com", USER_IP, 1.0) == 0
    assert limiter.retry_after("fresh@example.com", ATTACKER, 601.0) == 0


def test_an_account_under_wide_attack_still_admits_a_client_that_has_not_failed() -> None:
    limiter = SignInLimiter(account_ceiling=5)
    for n in range(5):  # five addresses, one failure each: the account is now "crowded"
        limiter.attempt(EMAIL, f"192.0.2.{n}", 0.0)
    # A failing address now waits after its first failure, instead of after three...
    assert limiter.retry_after(EMAIL, "192.0.2.1", 0.0) == 1
    # ...but one that has not failed (the real user) is never refused.
    assert limiter.retry_after(EMAIL, USER_IP, 0.0) == 0


def test_success_takes_the_attempt_back() -> None:
    limiter = SignInLimiter(client_budget=2)
    limiter.attempt(EMAIL, USER_IP, 0.0)
    limiter.succeeded(limiter.attempt(EMAIL, USER_IP, 0.0))
    assert limiter.retry_after("other@example.com", USER_IP, 0.0) == 0
    limiter.attempt(EMAIL, USER_IP, 0.0)
    assert limiter.retry_after("other@example.com", USER_IP, 0.0) == limiter.client_window_seconds


@pytest.fixture
def argon2_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every argon2 verification (the hash verified against)."""
    calls: list[str] = []
    real = PasswordHasher.verify

    def spy(self: PasswordHasher, hash: str | bytes, password: str | bytes) -> bool:
        calls.append(hash if isinstance(hash, str) else hash.decode())
        return real(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", spy)
    return calls


async def test_unknown_email_costs_one_argon2_verification_on_both_paths(
    client: httpx.AsyncClient, admin: User, argon2_calls: list[str]
) -> None:
    api = await client.post(
        "/api/v1/auth/token", json={"email": "nobody@example.com", "password": PASSWORD}
    )
    assert api.status_code == 401
    assert argon2_calls == [passwords._DUMMY_HASH]
    page = await post_login(client, "nobody@example.com", PASSWORD)
    assert page.status_code == 401
    assert argon2_calls == [passwords._DUMMY_HASH] * 2
    known = await post_login(client, EMAIL, "wrong password")
    assert known.status_code == 401
    assert len(argon2_calls) == 3 and argon2_calls[-1] == admin.password_hash


async def test_inactive_account_costs_the_same_and_gets_the_same_answer(
    client: httpx.AsyncClient, session: AsyncSession, admin: User, argon2_calls: list[str]
) -> None:
    admin.active = False
    await session.commit()
    page = await post_login(client, EMAIL, PASSWORD)
    assert page.status_code == 401
    assert "Email or password is wrong." in page.text
    assert len(argon2_calls) == 1


@pytest.mark.real_password_cost
async def test_password_is_rehashed_when_argon2_parameters_change(
    client: httpx.AsyncClient, session: AsyncSession, admin: User
) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
    admin.password_hash = weak.hash(PASSWORD)
    await session.commit()
    old = admin.password_hash

    wrong = await client.post("/api/v1/auth/token", json={"email": EMAIL, "password": "nope"})
    assert wrong.status_code == 401
    await session.refresh(admin)
    assert admin.password_hash == old  # only a right password may be rehashed

    right = await client.post("/api/v1/auth/token", json={"email": EMAIL, "password": PASSWORD})
    assert right.status_code == 200
    await session.refresh(admin)
    assert admin.password_hash != old
    assert not passwords.needs_rehash(admin.password_hash)
    assert verify_password(admin.password_hash, PASSWORD)
    current = PasswordHasher()
    assert f"m={current.memory_cost},t={current.time_cost},p={current.parallelism}" in (
        admin.password_hash
    )


async def test_sign_in_form_without_its_csrf_token_is_refused(
    client: httpx.AsyncClient, session: AsyncSession, admin: User
) -> None:
    credentials = {"email": EMAIL, "password": PASSWORD}
    no_token = await client.post("/login", data=credentials)
    assert no_token.status_code == 403
    assert "did not come from rxroute" in no_token.text
    assert not client.cookies.get("rxroute_session")

    page = await client.get("/login")
    token = form_token(page.text)
    assert client.cookies.get(SIGN_IN_COOKIE)
    forged = await client.post("/login", data={**credentials, "csrf_token": "0" * 40})
    assert forged.status_code == 403

    # A token copied from someone else's form does not match this browser's cookie.
    other = httpx.AsyncClient(transport=client._transport, base_url="http://rxroute.test")
    async with other:
        stolen = await other.post("/login", data={**credentials, "csrf_token": token})
        assert stolen.status_code == 403
        assert not other.cookies.get("rxroute_session")

    assert await session.scalar(select(AuthSession.id)) is None
    ok = await client.post("/login", data={**credentials, "csrf_token": token})
    assert ok.status_code == 303
    assert client.cookies.get("rxroute_session")


async def test_the_refused_form_comes_back_usable(client: httpx.AsyncClient, admin: User) -> None:
    refused = await client.post("/login", data={"email": EMAIL, "password": PASSWORD})
    assert refused.status_code == 403
    assert f'value="{EMAIL}"' in refused.text  # what was typed is kept (not the password)
    again = await client.post(
        "/login",
        data={"email": EMAIL, "password": PASSWORD, "csrf_token": form_token(refused.text)},
    )
    assert again.status_code == 303
