"""The Region B platform's two-step authentication, and both tokens on every call.

Case study lesson 1: an access token (client credentials) and a prescriber's session token
(login) must both travel on every API call, in the exact format of :mod:`.contract`. The
:class:`Authenticator` caches both, refreshes them before they expire, shares one refresh
among concurrent callers (no stampede of logins), remembers a refused login briefly (no
locked account), and on a 401 re-authenticates once and retries once (:meth:`~Authenticator.call`).
Kept apart from the client's operations so the token rules live in one place.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from rxroute.channels.erx import contract as c
from rxroute.channels.erx.base import PrescriberCredentials
from rxroute.channels.erx.envelope import check_envelope, json_or_raise
from rxroute.channels.erx.errors import (
    RejectedError,
    RejectReason,
    RetryableError,
    UnexpectedResponseError,
)
from rxroute.channels.erx.mapping import parse
from rxroute.channels.erx.transport import Transport
from rxroute.config import Settings
from rxroute.observability.metrics import PLATFORM_TOKENS

log = structlog.get_logger(__name__)

#: Used when the platform omits ``expires_in``: short, so a wrong guess costs a few logins,
#: and a 401 re-authenticates anyway.
FALLBACK_TOKEN_LIFETIME_SECONDS = 300
#: How long a refused prescriber login is answered from memory for the same credentials.
LOGIN_REFUSAL_MEMORY_SECONDS = 30.0


@dataclass
class _Token:
    value: str
    expires_at: float
    fingerprint: str = ""


class _TokenSlot:
    """One cached token and the lock that makes concurrent callers share one refresh."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.token: _Token | None = None
        #: A refused login, remembered briefly per credential fingerprint so fifty queued
        #: sends make one failed login, not fifty (platforms lock accounts for less).
        self.refusal: tuple[str, float, RejectedError] | None = None

    def invalidate_if(self, value: str) -> None:
        """Drop the token only if it is still the one that failed.

        Fifty callers that all got a 401 with the same stale token must cause one refresh,
        not fifty: the first to get here drops it, the rest see a fresh token and keep it.
        """
        if self.token is not None and self.token.value == value:
            self.token = None


def _credential_fingerprint(credentials: PrescriberCredentials) -> str:
    """Changes when a prescriber's login changes, so a cached session is not reused for it."""
    material = f"{credentials.email}\x00{credentials.password}".encode()
    return hashlib.sha256(material).hexdigest()


class Authenticator:
    """Both tokens for one client: the access token, and a session per prescriber ``key``.

    ``clock`` is monotonic seconds, injectable for expiry tests.
    """

    def __init__(
        self,
        settings: Settings,
        transport: Transport,
        paths: c.Paths,
        clock: Callable[[], float],
    ) -> None:
        self._settings = settings
        self._transport = transport
        self._paths = paths
        self._clock = clock
        self._margin = float(settings.erx_token_refresh_margin_seconds)
        self._access = _TokenSlot()
        self._sessions: dict[str, _TokenSlot] = {}
        #: Counters for the bench and for metrics: how often each auth step really ran.
        self.token_grants = 0
        self.logins = 0

    async def call(
        self,
        prescriber: PrescriberCredentials,
        method: str,
        url: str,
        operation: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """One API call with both tokens; on a 401, re-authenticate once and retry once."""
        for attempt in (1, 2):
            # Session first: a login may re-grant the access token, and the call must then
            # carry the new one, not the one that was stale before the login.
            session = await self.session_token(prescriber)
            access = await self.access_token()
            response = await self._transport.send(
                method,
                url,
                operation,
                headers={
                    c.HEADER_AUTHORIZATION: c.bearer(access),
                    c.HEADER_PRESCRIBER_TOKEN: session,
                    c.HEADER_ACCEPT: c.CONTENT_TYPE_JSON,
                },
                json=json,
                params=params,
            )
            if response.status_code == 401:
                # Which token expired is not said: drop both (if still the failing ones).
                self._access.invalidate_if(access)
                self._session_slot(prescriber.key).invalidate_if(session)
                if attempt == 1:
                    log.info("erx.reauthenticate", operation=operation, prescriber=prescriber.key)
                    continue
                raise RetryableError(
                    f"{operation}: still unauthenticated after re-authenticating once "
                    "(check the Authorization / X-Prescriber-Token format against the fixtures)",
                    ambiguous=False,
                    operation=operation,
                    status_code=401,
                )
            return check_envelope(
                response,
                json_or_raise(response, operation),
                operation,
                prescriber=prescriber,
            )
        raise AssertionError("unreachable")  # pragma: no cover

    # --- step 1: the access token ----------------------------------------------------------

    def _fresh(self, token: _Token | None, fingerprint: str = "") -> bool:
        return (
            token is not None
            and token.fingerprint == fingerprint
            and self._clock() < token.expires_at
        )

    def _expiry(self, issued_at: float, lifetime: int | None) -> float:
        """When to stop using a token: ``margin`` early, but never more than half its life.

        The cap keeps short test lifetimes (shorter than the margin) from forcing a refresh
        on every single call.
        """
        seconds = float(lifetime or FALLBACK_TOKEN_LIFETIME_SECONDS)
        return issued_at + seconds - min(self._margin, seconds / 2)

    async def access_token(self) -> str:
        slot = self._access
        if self._fresh(slot.token):
            assert slot.token is not None
            return slot.token.value
        async with slot.lock:
            if self._fresh(slot.token):
                assert slot.token is not None
                return slot.token.value
            slot.token = await self._grant()
            return slot.token.value

    async def _grant(self) -> _Token:
        issued_at = self._clock()
        self.token_grants += 1
        PLATFORM_TOKENS.labels(kind="access").inc()
        response = await self._transport.send(
            "POST",
            self._paths.token,
            "token",
            headers={c.HEADER_ACCEPT: c.CONTENT_TYPE_JSON},
            data={
                c.GRANT_TYPE: c.GRANT_TYPE_CLIENT_CREDENTIALS,
                c.FIELD_CLIENT_ID: self._settings.erx_client_id,
                c.FIELD_CLIENT_SECRET: self._settings.erx_client_secret.get_secret_value(),
            },
        )
        body = json_or_raise(response, "token")
        if response.status_code in (400, 401) and isinstance(body, Mapping):
            error = body.get(c.FIELD_OAUTH_ERROR)
            bad_client = error == c.OAUTH_ERROR_INVALID_CLIENT or response.status_code == 401
            raise RejectedError(
                str(error or body.get(c.FIELD_MESSAGE) or "unauthorized"),
                reason=RejectReason.INVALID_CLIENT if bad_client else RejectReason.OTHER,
                hint=(
                    "the platform refused rxroute's API client: check RXROUTE_ERX_CLIENT_ID "
                    f"(now {self._settings.erx_client_id!r}) and RXROUTE_ERX_CLIENT_SECRET; "
                    "staging and production issue different credentials"
                    if bad_client
                    else "the token request was refused; check RXROUTE_ERX_TOKEN_PATH"
                ),
                operation="token",
                status_code=response.status_code,
            )
        body = check_envelope(response, body, "token", require_success=False)
        parsed = parse(body, c.TokenResponse, "token", ambiguous=False, root=True)
        if parsed.token_type.lower() != c.TOKEN_TYPE_BEARER:
            raise UnexpectedResponseError(
                f"token endpoint returned token_type {parsed.token_type!r}, expected bearer",
                ambiguous=False,
                operation="token",
            )
        log.info("erx.token.granted", expires_in=parsed.expires_in)
        return _Token(parsed.access_token, self._expiry(issued_at, parsed.expires_in))

    # --- step 2: the prescriber's session token --------------------------------------------

    def _session_slot(self, key: str) -> _TokenSlot:
        slot = self._sessions.get(key)
        if slot is None:
            slot = self._sessions[key] = _TokenSlot()
        return slot

    async def session_token(self, prescriber: PrescriberCredentials) -> str:
        slot = self._session_slot(prescriber.key)
        fingerprint = _credential_fingerprint(prescriber)
        if self._fresh(slot.token, fingerprint):
            assert slot.token is not None
            return slot.token.value
        async with slot.lock:
            if self._fresh(slot.token, fingerprint):
                assert slot.token is not None
                return slot.token.value
            if slot.refusal is not None:
                refused_fingerprint, until, error = slot.refusal
                if refused_fingerprint == fingerprint and self._clock() < until:
                    raise RejectedError(
                        error.platform_message,
                        reason=error.reason,
                        hint=error.hint,
                        operation=error.operation,
                        status_code=error.status_code,
                    )
                slot.refusal = None
            try:
                slot.token = await self._login(prescriber, fingerprint)
            except RejectedError as exc:
                slot.refusal = (fingerprint, self._clock() + LOGIN_REFUSAL_MEMORY_SECONDS, exc)
                raise
            return slot.token.value

    async def _login(self, prescriber: PrescriberCredentials, fingerprint: str) -> _Token:
        """Step 2; a 401 here means the access token went stale: re-grant once, retry once."""
        for attempt in (1, 2):
            access = await self.access_token()
            issued_at = self._clock()
            self.logins += 1
            PLATFORM_TOKENS.labels(kind="session").inc()
            response = await self._transport.send(
                "POST",
                self._paths.login,
                "login",
                headers={
                    c.HEADER_AUTHORIZATION: c.bearer(access),
                    c.HEADER_ACCEPT: c.CONTENT_TYPE_JSON,
                },
                json={c.FIELD_EMAIL: prescriber.email, c.FIELD_PASSWORD: prescriber.password},
            )
            if response.status_code == 401:
                self._access.invalidate_if(access)
                if attempt == 1:
                    log.info("erx.login.reauthenticate", prescriber=prescriber.key)
                    continue
                raise RetryableError(
                    "login still unauthenticated after a fresh access token",
                    ambiguous=False,
                    operation="login",
                    status_code=401,
                )
            body = check_envelope(
                response,
                json_or_raise(response, "login"),
                "login",
                prescriber=prescriber,
            )
            data = parse(body, c.LoginData, "login", ambiguous=False)
            log.info("erx.login.ok", prescriber=prescriber.key, expires_in=data.expires_in)
            return _Token(data.token, self._expiry(issued_at, data.expires_in), fingerprint)
        raise AssertionError("unreachable")  # pragma: no cover
