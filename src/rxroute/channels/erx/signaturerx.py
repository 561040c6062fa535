"""The Region B platform client: rxroute's operations over the platform's HTTP API.

Everything the case study learned the hard way lives in this package once, and this module
puts it together behind :class:`~rxroute.channels.erx.base.ErxChannel`: two-step
authentication with both tokens on every call (lesson 1, :mod:`.tokens`), ``success``
checked in every body whatever the HTTP status (lesson 3, :mod:`.envelope`), the
prescription ID taken only from ``data.prescription.id`` and the internal-vs-display clinic
ID hint (lessons 4 and 2, :mod:`.mapping`), one timed, captured HTTP exchange
(:mod:`.transport`), and an exact call format pinned by recorded fixtures (lesson 6,
:mod:`.contract`). Failures are typed (:mod:`.errors`) so the send job decides
retry-or-not without reading messages.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from types import TracebackType

import httpx
import structlog

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
)
from rxroute.channels.erx.mapping import (
    checked_id,
    clinic_hint_from,
    generic_clinic_hint,
    parse,
    remote,
)
from rxroute.channels.erx.tokens import Authenticator
from rxroute.channels.erx.transport import Transport
from rxroute.config import Environment, Settings

log = structlog.get_logger(__name__)


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
        self._paths = c.Paths.from_settings(settings)
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(
            timeout=settings.erx_timeout_seconds, limits=connection_limits(settings)
        )
        self._known_clinics = tuple(known_clinics)
        self._lookup_clinics = lookup_clinics_on_unauthorized
        capture = CaptureWriter(settings.erx_capture_dir) if settings.erx_capture else None
        transport = Transport(self._http, settings.erx_timeout_seconds, capture)
        self._auth = Authenticator(settings, transport, self._paths, clock)

    @property
    def paths(self) -> c.Paths:
        return self._paths

    @property
    def token_grants(self) -> int:
        """How often step 1 (client credentials) really ran: for the bench and metrics."""
        return self._auth.token_grants

    @property
    def logins(self) -> int:
        """How often step 2 (prescriber login) really ran: for the bench and metrics."""
        return self._auth.logins

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
            body = await self._auth.call(
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
        record = parse(body, c.PrescriptionData, "issue", ambiguous=True).prescription
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
        body = await self._auth.call(
            prescriber,
            "GET",
            self._paths.prescriptions,
            "find_by_client_ref",
            params={c.QUERY_CLIENT_REF_ID: client_ref_id},
        )
        listing = parse(body, c.PrescriptionListData, "find_by_client_ref", ambiguous=False)
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
                found.append(remote(record, raw))
        log.info("erx.lookup", client_ref_id=client_ref_id, found=len(found))
        return found

    async def get(
        self, prescriber: PrescriberCredentials, prescription_id: str
    ) -> RemotePrescription:
        url = self._paths.prescription(checked_id(prescription_id))
        body = await self._auth.call(prescriber, "GET", url, "get")
        record = parse(body, c.PrescriptionData, "get", ambiguous=False).prescription
        return remote(record, body[c.FIELD_DATA][c.FIELD_PRESCRIPTION])

    async def void(
        self, prescriber: PrescriberCredentials, prescription_id: str
    ) -> RemotePrescription:
        url = self._paths.void(checked_id(prescription_id))
        body = await self._auth.call(prescriber, "POST", url, "void")
        record = parse(body, c.PrescriptionData, "void", ambiguous=True).prescription
        log.info("erx.void.ok", provider_id=record.id, status=record.status)
        return remote(record, body[c.FIELD_DATA][c.FIELD_PRESCRIPTION])

    async def check_client_credentials(self) -> None:
        """Step 1 alone: get (or reuse) the access token; for ``rxroute preflight``."""
        await self._auth.access_token()

    async def check_login(self, prescriber: PrescriberCredentials) -> None:
        """Step 2 alone: get (or reuse) the prescriber's session token; for preflight."""
        await self._auth.session_token(prescriber)

    async def list_clinics(self, prescriber: PrescriberCredentials) -> list[Clinic]:
        body = await self._auth.call(prescriber, "GET", self._paths.clinics, "list_clinics")
        data = parse(body, c.ClinicListData, "list_clinics", ambiguous=False)
        return [Clinic(r.id, r.unique_id, r.name) for r in data.clinics]

    async def list_contacts(self, prescriber: PrescriberCredentials) -> list[Contact]:
        body = await self._auth.call(prescriber, "GET", self._paths.contacts, "list_contacts")
        data = parse(body, c.ContactListData, "list_contacts", ambiguous=False)
        return [Contact(r.id, r.name, r.email, r.post_code) for r in data.contacts]

    # --- the unauthorized-clinic hint --------------------------------------------------------

    async def _clinic_hint(self, prescriber: PrescriberCredentials, clinic_id: int) -> str:
        """Lesson 2: say which number to configure, not just "unauthorized"."""
        clinics = list(self._known_clinics)
        hint = clinic_hint_from(clinic_id, clinics)
        if hint is not None or not self._lookup_clinics:
            return hint or generic_clinic_hint(clinic_id)
        try:
            clinics = await self.list_clinics(prescriber)
        except (RetryableError, RejectedError) as exc:
            log.info("erx.clinic_hint.lookup_failed", error=type(exc).__name__)
            return generic_clinic_hint(clinic_id)
        return clinic_hint_from(clinic_id, clinics) or generic_clinic_hint(clinic_id)
