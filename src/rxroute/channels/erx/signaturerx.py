"""The Region B platform client over httpx.

Everything the case study learned the hard way lives here once: two-step authentication with
both tokens on every call (lesson 1), the internal-vs-display clinic ID hint (lesson 2),
``success`` checked in every body whatever the HTTP status (lesson 3), the prescription ID
taken only from ``data.prescription.id`` (lesson 4), and an exact call format pinned by
recorded fixtures (lesson 6). Failures are typed (:mod:`.errors`) so the send job decides
retry-or-not without reading messages.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NoReturn, TypeVar

import httpx
import structlog
from pydantic import BaseModel, ValidationError

from rxroute.channels.erx import contract as c
from rxroute.channels.erx.base import (
    Clinic,
    Contact,
    IssuedPrescription,
    PrescriberCredentials,
    RemotePrescription,
)
from rxroute.channels.erx.capture import CaptureWriter
from rxroute.channels.erx.connections import connection_limits
from rxroute.channels.erx.errors import (
    CaptureRefusedError,
    FieldProblem,
    LocalValidationError,
    RejectedError,
    RejectReason,
    RetryableError,
    UnexpectedResponseError,
    ValidationRejected,
)
from rxroute.config import Environment, Settings
from rxroute.observability.metrics import PLATFORM_REQUEST_SECONDS, PLATFORM_TOKENS

log = structlog.get_logger(__name__)

_Model = TypeVar("_Model", bound=BaseModel)

#: Used when the platform omits ``expires_in``: short, so a wrong guess costs a few logins,
#: and a 401 re-authenticates anyway.
FALLBACK_TOKEN_LIFETIME_SECONDS = 300
#: How long a refused prescriber login is answered from memory for the same credentials.
LOGIN_REFUSAL_MEMORY_SECONDS = 30.0
#: Prescription IDs go into URL paths; anything else is refused rather than escaped.
_PRESCRIPTION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


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


class _Unauthenticated(Exception):
    """Internal signal: the platform answered 401 to an authenticated call."""


def _credential_fingerprint(credentials: PrescriberCredentials) -> str:
    """Changes when a prescriber's login changes, so a cached session is not reused for it."""
    material = f"{credentials.email}\x00{credentials.password}".encode()
    return hashlib.sha256(material).hexdigest()


class SignatureRxClient:
    """:class:`~rxroute.channels.erx.base.ErxChannel` over the platform's HTTP API.

    ``http`` may be injected (tests, connection sharing); otherwise the client owns one and
    closes it in :meth:`aclose`. URLs are absolute, built from settings, so an injected
    client needs no ``base_url``. ``clock`` is monotonic seconds, injectable for expiry
    tests. ``known_clinics`` lets the unauthorized-clinic error name the internal ID to use.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        http: httpx.AsyncClient | None = None,
        known_clinics: Sequence[Clinic] = (),
        clock: Callable[[], float] = time.monotonic,
        lookup_clinics_on_unauthorized: bool = True,
    ) -> None:
        if settings.erx_capture and settings.environment is not Environment.DEVELOPMENT:
            raise CaptureRefusedError(
                "RXROUTE_ERX_CAPTURE records full platform traffic and is refused outside "
                f"development (environment is {settings.environment.value}); unset it"
            )
        self._settings = settings
        self._paths = c.Paths.from_settings(settings)
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(
            timeout=settings.erx_timeout_seconds, limits=connection_limits(settings)
        )
        self._timeout = httpx.Timeout(settings.erx_timeout_seconds)
        self._known_clinics = tuple(known_clinics)
        self._clock = clock
        self._margin = float(settings.erx_token_refresh_margin_seconds)
        self._lookup_clinics = lookup_clinics_on_unauthorized
        self._access = _TokenSlot()
        self._sessions: dict[str, _TokenSlot] = {}
        self._capture = CaptureWriter(settings.erx_capture_dir) if settings.erx_capture else None
        #: Counters for the bench and for metrics: how often each auth step really ran.
        self.token_grants = 0
        self.logins = 0

    @property
    def paths(self) -> c.Paths:
        return self._paths

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> SignatureRxClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- public API (ErxChannel) ---------------------------------------------------------

    async def issue(
        self, prescriber: PrescriberCredentials, payload: c.IssuePayload
    ) -> IssuedPrescription:
        """Issue once. Never retried here: the platform does not deduplicate."""
        try:
            body = await self._authed(
                prescriber, "POST", self._paths.prescriptions, "issue", json=payload.to_wire()
            )
        except RejectedError as exc:
            if exc.reason is RejectReason.UNAUTHORIZED_CLINIC:
                exc.hint = await self._clinic_hint(prescriber, payload.clinic_id)
            log.warning(
                "erx.issue.rejected",
                client_ref_id=payload.client_ref_id,
                prescriber=prescriber.key,
                reason=exc.reason.value,
            )
            raise
        record = self._parse(body, c.PrescriptionData, "issue", ambiguous=True).prescription
        if record.client_ref_id is not None and record.client_ref_id != payload.client_ref_id:
            raise UnexpectedResponseError(
                f"issue answered for client_ref_id {record.client_ref_id!r}, "
                f"sent {payload.client_ref_id!r}",
                ambiguous=True,
                operation="issue",
            )
        log.info(
            "erx.issue.ok",
            client_ref_id=payload.client_ref_id,
            provider_id=record.id,
            status=record.status,
        )
        raw = body[c.FIELD_DATA][c.FIELD_PRESCRIPTION]
        return IssuedPrescription(
            provider_id=record.id,
            status=record.status,
            token=record.token,
            client_ref_id=record.client_ref_id,
            raw=raw,
        )

    async def find_by_client_ref(
        self, prescriber: PrescriberCredentials, client_ref_id: str
    ) -> list[RemotePrescription]:
        """What the platform holds for one of our prescriptions; the check before any re-issue.

        Only records that echo our ``client_ref_id`` count. A record without one cannot be
        confirmed either way, so that is an error: guessing "not there" would issue twice.
        """
        if not client_ref_id.strip():
            raise LocalValidationError([FieldProblem("client_ref_id", "is required")])
        body = await self._authed(
            prescriber,
            "GET",
            self._paths.prescriptions,
            "find_by_client_ref",
            params={c.QUERY_CLIENT_REF_ID: client_ref_id},
        )
        listing = self._parse(body, c.PrescriptionListData, "find_by_client_ref", ambiguous=False)
        raws = body[c.FIELD_DATA][c.FIELD_PRESCRIPTIONS]
        found: list[RemotePrescription] = []
        for record, raw in zip(listing.prescriptions, raws, strict=True):
            if record.client_ref_id is None:
                raise UnexpectedResponseError(
                    "client_ref_id lookup returned a prescription without client_ref_id; "
                    "cannot tell whether it is ours",
                    ambiguous=False,
                    operation="find_by_client_ref",
                )
            if record.client_ref_id == client_ref_id:
                found.append(_remote(record, raw))
        log.info("erx.lookup", client_ref_id=client_ref_id, found=len(found))
        return found

    async def get(
        self, prescriber: PrescriberCredentials, prescription_id: str
    ) -> RemotePrescription:
        url = self._paths.prescription(_checked_id(prescription_id))
        body = await self._authed(prescriber, "GET", url, "get")
        record = self._parse(body, c.PrescriptionData, "get", ambiguous=False).prescription
        return _remote(record, body[c.FIELD_DATA][c.FIELD_PRESCRIPTION])

    async def void(
        self, prescriber: PrescriberCredentials, prescription_id: str
    ) -> RemotePrescription:
        url = self._paths.void(_checked_id(prescription_id))
        body = await self._authed(prescriber, "POST", url, "void")
        record = self._parse(body, c.PrescriptionData, "void", ambiguous=True).prescription
        log.info("erx.void.ok", provider_id=record.id, status=record.status)
        return _remote(record, body[c.FIELD_DATA][c.FIELD_PRESCRIPTION])

    async def check_client_credentials(self) -> None:
        """Step 1 alone: get (or reuse) the access token; for ``rxroute preflight``."""
        await self._access_token()

    async def check_login(self, prescriber: PrescriberCredentials) -> None:
        """Step 2 alone: get (or reuse) the prescriber's session token; for preflight."""
        await self._session_token(prescriber)

    async def list_clinics(self, prescriber: PrescriberCredentials) -> list[Clinic]:
        body = await self._authed(prescriber, "GET", self._paths.clinics, "list_clinics")
        data = self._parse(body, c.ClinicListData, "list_clinics", ambiguous=False)
        return [Clinic(r.id, r.unique_id, r.name) for r in data.clinics]

    async def list_contacts(self, prescriber: PrescriberCredentials) -> list[Contact]:
        body = await self._authed(prescriber, "GET", self._paths.contacts, "list_contacts")
        data = self._parse(body, c.ContactListData, "list_contacts", ambiguous=False)
        return [Contact(r.id, r.name, r.email, r.post_code) for r in data.contacts]

    # --- authentication --------------------------------------------------------------------

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

    async def _access_token(self) -> str:
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
        response = await self._send(
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
        body = self._json_or_raise(response, "token")
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
        body = self._check_envelope(response, body, "token", require_success=False)
        parsed = self._parse(body, c.TokenResponse, "token", ambiguous=False, root=True)
        if parsed.token_type.lower() != c.TOKEN_TYPE_BEARER:
            raise UnexpectedResponseError(
                f"token endpoint returned token_type {parsed.token_type!r}, expected bearer",
                ambiguous=False,
                operation="token",
            )
        log.info("erx.token.granted", expires_in=parsed.expires_in)
        return _Token(parsed.access_token, self._expiry(issued_at, parsed.expires_in))

    def _session_slot(self, key: str) -> _TokenSlot:
        slot = self._sessions.get(key)
        if slot is None:
            slot = self._sessions[key] = _TokenSlot()
        return slot

    async def _session_token(self, prescriber: PrescriberCredentials) -> str:
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
            access = await self._access_token()
            issued_at = self._clock()
            self.logins += 1
            PLATFORM_TOKENS.labels(kind="session").inc()
            response = await self._send(
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
            body = self._check_envelope(
                response,
                self._json_or_raise(response, "login"),
                "login",
                prescriber=prescriber,
            )
            data = self._parse(body, c.LoginData, "login", ambiguous=False)
            log.info("erx.login.ok", prescriber=prescriber.key, expires_in=data.expires_in)
            return _Token(data.token, self._expiry(issued_at, data.expires_in), fingerprint)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _authed(
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
            session = await self._session_token(prescriber)
            access = await self._access_token()
            response = await self._send(
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
            return self._check_envelope(
                response,
                self._json_or_raise(response, operation),
                operation,
                prescriber=prescriber,
            )
        raise AssertionError("unreachable")  # pragma: no cover

    # --- transport and response checks ---------------------------------------------------------

    async def _send(
        self,
        method: str,
        url: str,
        operation: str,
        *,
        headers: Mapping[str, str],
        json: Any = None,
        data: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        request = self._http.build_request(
            method,
            url,
            headers=dict(headers),
            json=json,
            data=data,
            params=params,
            timeout=self._timeout,
        )
        started = time.perf_counter()
        try:
            response = await self._http.send(request)
        except httpx.TransportError as exc:
            PLATFORM_REQUEST_SECONDS.labels(operation=operation, result=type(exc).__name__).observe(
                time.perf_counter() - started
            )
            await self._transport_failure(operation, request, exc)
        PLATFORM_REQUEST_SECONDS.labels(
            operation=operation, result=str(response.status_code)
        ).observe(time.perf_counter() - started)
        await self._record(operation, request, response, None)
        log.debug("erx.http", operation=operation, status=response.status_code)
        return response

    async def _transport_failure(
        self, operation: str, request: httpx.Request, exc: httpx.TransportError
    ) -> NoReturn:
        """Raise the typed failure for a request that got no answer: retryable, and
        ambiguous unless the error proves nothing left this process."""
        await self._record(operation, request, None, exc)
        log.warning("erx.transport", operation=operation, error=type(exc).__name__)
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
            # Nothing left this process: safe to retry, nothing to look up.
            raise RetryableError(
                f"{operation}: could not reach the platform ({type(exc).__name__})",
                ambiguous=False,
                operation=operation,
            ) from exc
        # ReadTimeout, RemoteProtocolError, ReadError, write errors...: the request may have
        # been received and acted on.
        raise RetryableError(
            f"{operation}: no answer after sending ({type(exc).__name__})",
            ambiguous=True,
            operation=operation,
        ) from exc

    async def _record(
        self,
        operation: str,
        request: httpx.Request,
        response: httpx.Response | None,
        error: BaseException | None,
    ) -> None:
        if self._capture is None:
            return
        path = await asyncio.to_thread(self._capture.record, operation, request, response, error)
        log.debug("erx.capture", operation=operation, file=str(path))

    def _json_or_raise(self, response: httpx.Response, operation: str) -> Any:
        """The decoded body, after the status codes whose body we do not need to read."""
        status = response.status_code
        if status == 429 or status >= 500:
            raise RetryableError(
                f"{operation}: platform answered HTTP {status}",
                ambiguous=False,
                operation=operation,
                status_code=status,
                retry_after_seconds=_retry_after(response),
            )
        try:
            return response.json()
        except ValueError:
            pass
        if 200 <= status < 300:
            method = response.request.method
            raise UnexpectedResponseError(
                f"{operation}: HTTP {status} body is not JSON",
                ambiguous=method in _STATE_CHANGING,
                operation=operation,
                status_code=status,
            )
        if status == 401:
            return {}
        raise RejectedError(
            None,
            reason=RejectReason.NOT_FOUND if status == 404 else RejectReason.OTHER,
            hint=(
                f"HTTP {status} with a non-JSON body: check RXROUTE_ERX_BASE_URL and the "
                "API paths in settings"
            ),
            operation=operation,
            status_code=status,
        )

    def _check_envelope(
        self,
        response: httpx.Response,
        body: Any,
        operation: str,
        *,
        require_success: bool = True,
        prescriber: PrescriberCredentials | None = None,
    ) -> dict[str, Any]:
        """Lesson 3: ``success`` decides, never the HTTP status alone."""
        status = response.status_code
        method = response.request.method
        if not isinstance(body, dict):
            if 200 <= status < 300:
                raise UnexpectedResponseError(
                    f"{operation}: HTTP {status} body is not a JSON object",
                    ambiguous=method in _STATE_CHANGING,
                    operation=operation,
                    status_code=status,
                )
            raise RejectedError(None, operation=operation, status_code=status)
        message = body.get(c.FIELD_MESSAGE)
        message = message if isinstance(message, str) else None
        if status == 422:
            errors = body.get(c.FIELD_ERRORS)
            raise ValidationRejected(
                message, field_errors=_field_errors(errors), operation=operation, status_code=422
            )
        success = body.get(c.FIELD_SUCCESS)
        if 200 <= status < 300 and (success is True or (not require_success and success is None)):
            return body
        if 200 <= status < 300 and success is None:
            raise UnexpectedResponseError(
                f"{operation}: HTTP {status} body has no '{c.FIELD_SUCCESS}' flag",
                ambiguous=method in _STATE_CHANGING,
                operation=operation,
                status_code=status,
            )
        reason, hint = self._classify(message, operation, prescriber)
        if status == 404 and reason is RejectReason.OTHER:
            reason = RejectReason.NOT_FOUND
        raise RejectedError(
            message, reason=reason, hint=hint, operation=operation, status_code=status
        )

    def _classify(
        self, message: str | None, operation: str, prescriber: PrescriberCredentials | None
    ) -> tuple[RejectReason, str | None]:
        text = (message or "").strip()
        lowered = text.lower()
        who = f"prescriber {prescriber.key}" if prescriber is not None else "the prescriber"
        if text == c.MESSAGE_UNAUTHORIZED_CLINIC:
            return RejectReason.UNAUTHORIZED_CLINIC, None  # issue() adds the hint
        if text == c.MESSAGE_INVALID_PRESCRIBER_CREDENTIALS:
            return (
                RejectReason.INVALID_PRESCRIBER_CREDENTIALS,
                f"check the platform email and password stored for {who}",
            )
        if text == c.MESSAGE_INVALID_SECURE_PIN:
            return (
                RejectReason.INVALID_SECURE_PIN,
                "the platform refused the prescriber's 6-digit signing PIN; update it",
            )
        if text == c.MESSAGE_ALREADY_DISPENSED:
            return RejectReason.ALREADY_DISPENSED, "a dispensed prescription cannot be voided"
        if c.KEYWORD_INACTIVE_PRESCRIBER in lowered:
            return (
                RejectReason.INACTIVE_PRESCRIBER,
                f"{who} is not active on the platform; ask the platform's support",
            )
        if operation == "issue" and c.KEYWORD_UNKNOWN_CONTACT in lowered:
            return (
                RejectReason.UNKNOWN_CONTACT,
                "check the pharmacy's platform contact (branch) ID; list_contacts shows them",
            )
        return RejectReason.OTHER, None

    async def _clinic_hint(self, prescriber: PrescriberCredentials, clinic_id: int) -> str:
        """Lesson 2: say which number to configure, not just "unauthorized"."""
        clinics = list(self._known_clinics)
        hint = _clinic_hint_from(clinic_id, clinics)
        if hint is not None or not self._lookup_clinics:
            return hint or _generic_clinic_hint(clinic_id)
        try:
            clinics = await self.list_clinics(prescriber)
        except (RetryableError, RejectedError) as exc:
            log.info("erx.clinic_hint.lookup_failed", error=type(exc).__name__)
            return _generic_clinic_hint(clinic_id)
        return _clinic_hint_from(clinic_id, clinics) or _generic_clinic_hint(clinic_id)

    def _parse(
        self,
        body: Mapping[str, Any],
        model: type[_Model],
        operation: str,
        *,
        ambiguous: bool,
        root: bool = False,
    ) -> _Model:
        """Validate the part we rely on; a missing field is an error naming its path, never a
        default (a 200 with a top-level ``id`` but no ``data.prescription.id`` is not a success).
        """
        target = body if root else body.get(c.FIELD_DATA)
        try:
            return model.model_validate(target)
        except ValidationError as exc:
            prefix = "" if root else f"{c.FIELD_DATA}."
            where = ", ".join(
                prefix + ".".join(str(p) for p in e["loc"]) if e["loc"] else prefix.rstrip(".")
                for e in exc.errors(include_input=False, include_url=False)
            )
            raise UnexpectedResponseError(
                f"{operation}: response lacks or mangles {where or 'data'}",
                ambiguous=ambiguous,
                operation=operation,
            ) from None


# --- helpers ------------------------------------------------------------------------------------


def _checked_id(prescription_id: str) -> str:
    if not _PRESCRIPTION_ID.match(prescription_id or ""):
        raise LocalValidationError(
            [FieldProblem("prescription_id", "is not a platform prescription ID")]
        )
    return prescription_id


def _remote(record: c.PrescriptionRecord, raw: Any) -> RemotePrescription:
    return RemotePrescription(
        provider_id=record.id,
        status=record.status,
        client_ref_id=record.client_ref_id,
        token=record.token,
        contact_id=record.contact_id,
        raw=raw if isinstance(raw, Mapping) else {},
    )


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get(c.HEADER_RETRY_AFTER)
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _field_errors(errors: Any) -> dict[str, list[str]]:
    if not isinstance(errors, Mapping):
        return {}
    result: dict[str, list[str]] = {}
    for key, value in errors.items():
        if isinstance(value, list):
            result[str(key)] = [str(v) for v in value]
        else:
            result[str(key)] = [str(value)]
    return result


def _clinic_hint_from(clinic_id: int, clinics: Sequence[Clinic]) -> str | None:
    for clinic in clinics:
        if clinic.display_id == str(clinic_id) and clinic.internal_id != clinic_id:
            return (
                f"clinic {clinic_id} is the dashboard display ID; configure the internal ID "
                f"{clinic.internal_id} (RXROUTE_ERX_CLINIC_ID)"
            )
    for clinic in clinics:
        if clinic.internal_id == clinic_id:
            return (
                f"clinic {clinic_id} is a known internal ID, but this prescriber may not issue "
                "for it; check the prescriber's clinics on the platform"
            )
    if clinics:
        known = ", ".join(f"{k.internal_id} (display {k.display_id})" for k in clinics)
        return f"clinic {clinic_id} is not one of the prescriber's clinics; internal IDs: {known}"
    return None


def _generic_clinic_hint(clinic_id: int) -> str:
    return (
        f"clinic {clinic_id} was refused: RXROUTE_ERX_CLINIC_ID must be the clinic's internal "
        "API ID, not the display ID shown on the dashboard; list_clinics shows both"
    )
