"""What the send job needs from a Region B platform, independent of which platform it is.

The job talks to :class:`ErxChannel`; :class:`~rxroute.channels.erx.signaturerx.SignatureRxClient`
is the one implementation, and tests or the demo may substitute another.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from rxroute.channels.erx.contract import IssuePayload
from rxroute.channels.erx.status import from_provider


@dataclass(frozen=True)
class PrescriberCredentials:
    """A prescriber's platform login. Secrets are kept out of ``repr`` so they never reach logs.

    ``key`` is rxroute's own prescriber ID: it keys the session-token cache.
    """

    key: str
    email: str = field(repr=False)
    password: str = field(repr=False)
    secure_pin: str = field(repr=False)


@dataclass(frozen=True)
class IssuedPrescription:
    """The platform's answer to a successful issue.

    ``status`` is the provider's raw status (``issued``); ``rxroute_status`` maps it.
    ``raw`` is the platform's ``data.prescription`` object: it may hold patient data, so it
    is excluded from ``repr`` and must never be logged.
    """

    provider_id: str
    status: str
    token: str | None
    client_ref_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def rxroute_status(self) -> str:
        return from_provider(self.status)


@dataclass(frozen=True)
class RemotePrescription:
    """A prescription as the platform holds it now (from get, void or the client-ref lookup)."""

    provider_id: str
    status: str
    client_ref_id: str | None
    token: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)
    #: The clinic contact (pharmacy) it is addressed to, when the platform says.
    contact_id: str | None = None

    @property
    def rxroute_status(self) -> str:
        return from_provider(self.status)


@dataclass(frozen=True)
class Clinic:
    """The API wants ``internal_id`` (994); people see ``display_id`` (201334) on the dashboard."""

    internal_id: int
    display_id: str
    name: str = ""


@dataclass(frozen=True)
class Contact:
    """A pharmacy registered as a contact of the clinic; ``id`` is its platform branch ID."""

    id: int
    name: str
    email: str
    post_code: str


@runtime_checkable
class ErxChannel(Protocol):
    async def issue(
        self, prescriber: PrescriberCredentials, payload: IssuePayload
    ) -> IssuedPrescription: ...

    async def find_by_client_ref(
        self, prescriber: PrescriberCredentials, client_ref_id: str
    ) -> list[RemotePrescription]: ...

    async def get(
        self, prescriber: PrescriberCredentials, prescription_id: str
    ) -> RemotePrescription: ...

    async def void(
        self, prescriber: PrescriberCredentials, prescription_id: str
    ) -> RemotePrescription: ...

    async def list_clinics(self, prescriber: PrescriberCredentials) -> list[Clinic]: ...

    async def list_contacts(self, prescriber: PrescriberCredentials) -> list[Contact]: ...
