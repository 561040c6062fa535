"""The simulated platform's in-memory state and its rules (its records are in :mod:`.records`).

Everything here is synchronous and runs on the sandbox's event loop, so no locks are needed:
a request handler or the ticker mutates state between awaits. Time comes from a sandbox
clock that tests can advance, so expiry and token lifetimes are testable without sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from typing import Any

from .aimed import AimedFaults
from .config import (
    Clinic,
    Contact,
    Faults,
    OAuthClient,
    Prescriber,
    SandboxConfig,
    Timings,
    WebhookSettings,
)
from .due import DueQueue
from .records import (
    ALREADY_DISPENSED,
    DISPENSED,
    EXPIRED,
    INACTIVE_PRESCRIBER,
    INVALID_PIN,
    ISSUED,
    OPEN_STATUSES,
    PRINTED,
    SIGNED,
    UNAUTHORIZED_CLINIC,
    UNKNOWN_CONTACT,
    VOIDED,
    AccessToken,
    Counters,
    MailMessage,
    PlatformError,
    Prescription,
    SandboxClock,
    SessionToken,
)
from .webhooks import WebhookDispatcher, WebhookEvent, build_event

logger = logging.getLogger("rxroute.sandbox")


class Sandbox:
    """One simulated platform; ``create_app`` wraps it in HTTP."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.clients: dict[str, OAuthClient] = {c.client_id: c for c in config.oauth_clients}
        self.clinics: dict[int, Clinic] = {c.id: c for c in config.clinics}
        self.prescribers: dict[int, Prescriber] = {p.id: p for p in config.prescribers}
        self.contacts: dict[int, Contact] = {c.id: c for c in config.contacts}
        self.clock = SandboxClock()
        self.faults = config.faults.model_copy()
        self.timings = config.timings.model_copy()
        self.webhook = config.webhook.model_copy()
        self.api_rng = random.Random()
        self.webhook_rng = random.Random()
        self.reseed(self.faults.seed)
        self.access_tokens: dict[str, AccessToken] = {}
        self.sessions: dict[str, SessionToken] = {}
        self.prescriptions: dict[str, Prescription] = {}
        self.mailbox: list[MailMessage] = []
        self.counters = Counters()
        self.aimed = AimedFaults()
        # What the clock may still sign or expire, by issue time (see ``due``).
        self._to_sign = DueQueue()
        self._to_expire = DueQueue()
        #: Goes up with every change a state file keeps (prescriptions, mailbox, issue
        #: counts), so saving can tell "nothing changed" without serialising everything.
        self.revision = 0
        self.dispatcher = WebhookDispatcher(
            settings=lambda: self.webhook,
            timings=lambda: self.timings,
            faults=lambda: self.faults,
            rng=lambda: self.webhook_rng,
        )
        self._ticker: asyncio.Task[None] | None = None

    # --- configuration at run time ---------------------------------------------------------

    def reseed(self, seed: int | None) -> None:
        # Separate streams so adding an API call in a test does not change webhook faults.
        base = seed if seed is not None else secrets.randbits(64)
        self.api_rng.seed(f"{base}:api")
        self.webhook_rng.seed(f"{base}:webhooks")

    def update_faults(self, changes: dict[str, Any]) -> Faults:
        merged = Faults.model_validate({**self.faults.model_dump(), **changes})
        self.faults = merged
        if "seed" in changes:
            self.reseed(merged.seed)
        return merged

    def update_timings(self, changes: dict[str, Any]) -> Timings:
        self.timings = Timings.model_validate({**self.timings.model_dump(), **changes})
        return self.timings

    def update_webhook(self, changes: dict[str, Any]) -> WebhookSettings:
        self.webhook = WebhookSettings.model_validate({**self.webhook.model_dump(), **changes})
        return self.webhook

    async def reset(self) -> None:
        """Back to how the sandbox started, accounts untouched."""
        await self.dispatcher.cancel_all()
        self.dispatcher.clear()
        self.clock = SandboxClock()
        self.faults = self.config.faults.model_copy()
        self.timings = self.config.timings.model_copy()
        self.webhook = self.config.webhook.model_copy()
        self.reseed(self.faults.seed)
        self.access_tokens.clear()
        self.sessions.clear()
        self.prescriptions.clear()
        self._to_sign.clear()
        self._to_expire.clear()
        self.mailbox.clear()
        self.counters = Counters()
        self.aimed = AimedFaults()
        self.revision += 1

    def replace_prescriptions(self, prescriptions: list[Prescription]) -> None:
        """Hold exactly these (a state file's), each queued for the clock as its status says."""
        self.prescriptions.clear()
        self._to_sign.clear()
        self._to_expire.clear()
        for prescription in prescriptions:
            self._hold(prescription)
        self.revision += 1

    def _hold(self, prescription: Prescription) -> None:
        self.prescriptions[prescription.id] = prescription
        if prescription.status == ISSUED:
            self._to_sign.push(prescription.issued_at, prescription.id)
        if prescription.status in OPEN_STATUSES:
            self._to_expire.push(prescription.issued_at, prescription.id)

    # --- authentication ---------------------------------------------------------------------

    def grant_token(self, client_id: str, client_secret: str) -> AccessToken | None:
        client = self.clients.get(client_id)
        if client is None or not secrets.compare_digest(client.client_secret, client_secret):
            self.counters.token_refusals += 1
            return None
        token = AccessToken(
            value=secrets.token_urlsafe(32),
            client_id=client_id,
            expires_at=self.clock.now() + self.faults.access_token_ttl_seconds,
        )
        self.access_tokens[token.value] = token
        self.counters.token_grants += 1
        return token

    def valid_access(self, value: str) -> AccessToken | None:
        token = self.access_tokens.get(value)
        if token is None or token.expires_at <= self.clock.now():
            return None
        return token

    def login(self, access: AccessToken, email: str, password: str) -> SessionToken | None:
        prescriber = next(
            (p for p in self.prescribers.values() if p.email.lower() == email.strip().lower()),
            None,
        )
        if prescriber is None or not secrets.compare_digest(prescriber.password, password):
            self.counters.prescriber_login_failures += 1
            return None
        session = SessionToken(
            value=secrets.token_urlsafe(32),
            prescriber_id=prescriber.id,
            client_id=access.client_id,
            expires_at=self.clock.now() + self.faults.session_token_ttl_seconds,
        )
        self.sessions[session.value] = session
        self.counters.prescriber_logins += 1
        return session

    def authenticate(self, access_value: str, session_value: str) -> Prescriber | None:
        access = self.valid_access(access_value)
        session = self.sessions.get(session_value)
        if access is None or session is None or session.expires_at <= self.clock.now():
            return None
        if session.client_id != access.client_id:
            return None
        return self.prescribers.get(session.prescriber_id)

    # --- prescriptions ----------------------------------------------------------------------

    def issue(
        self, prescriber: Prescriber, payload: dict[str, Any], link_base: str
    ) -> Prescription:
        """Apply the platform's business rules to an already-validated request."""
        if not prescriber.active:
            raise PlatformError(INACTIVE_PRESCRIBER)
        clinic_id = int(payload["clinic_id"])
        # The display ID (201334) is no clinic's internal ID, so it lands here too.
        if clinic_id not in prescriber.issuable_clinic_ids or clinic_id not in self.clinics:
            raise PlatformError(UNAUTHORIZED_CLINIC)
        contact = self.contacts.get(int(payload["contact_id"]))
        if contact is None or contact.clinic_id != clinic_id:
            raise PlatformError(UNKNOWN_CONTACT)
        if not secrets.compare_digest(
            prescriber.secure_pin.encode("utf-8"), str(payload["secure_pin"]).encode("utf-8")
        ):
            raise PlatformError(INVALID_PIN)
        now = self.clock.now()
        prescription = Prescription.issued(
            payload,
            taken=self.prescriptions,
            clinic_id=clinic_id,
            contact_id=contact.id,
            prescriber_id=prescriber.id,
            link_base=link_base,
            issued_at=now,
            issued_at_text=self.clock.iso(now),
        )
        self._hold(prescription)
        self.counters.issued_by_client_ref_id[prescription.client_ref_id] += 1
        self.revision += 1
        # No webhook for "issued": the clinic learns of it from this response, and the
        # platform's events are about changes after issue (signed onwards).
        logger.info("issued prescription %s", prescription.id)
        return prescription

    def visible_to(self, prescriber: Prescriber, prescription_id: str) -> Prescription:
        prescription = self.prescriptions.get(prescription_id)
        if prescription is None or prescription.clinic_id not in prescriber.clinic_ids:
            raise PlatformError("Prescription not found.", status_code=404)
        return prescription

    def find_by_ref(self, prescriber: Prescriber, client_ref_id: str | None) -> list[Prescription]:
        return [
            p
            for p in self.prescriptions.values()
            if p.clinic_id in prescriber.clinic_ids
            and (client_ref_id is None or p.client_ref_id == client_ref_id)
        ]

    def get(self, prescription_id: str) -> Prescription:
        prescription = self.prescriptions.get(prescription_id)
        if prescription is None:
            raise PlatformError("Prescription not found.", status_code=404)
        return prescription

    def by_token(self, token: str) -> Prescription | None:
        return next((p for p in self.prescriptions.values() if p.token == token), None)

    def void(self, prescription: Prescription) -> None:
        if prescription.status == DISPENSED:
            raise PlatformError(ALREADY_DISPENSED)
        if prescription.status == VOIDED:
            raise PlatformError("Prescription already voided.")
        if prescription.status == EXPIRED:
            raise PlatformError("Prescription already expired.")
        self._move(prescription, VOIDED)

    def print_(self, prescription: Prescription, group: str | None = None) -> None:
        self._require_open_signed(prescription)
        if group is not None:
            prescription.pharmacy_group = group
            self.revision += 1
        if prescription.status == SIGNED:
            self._move(prescription, PRINTED)

    def dispense(self, prescription: Prescription, group: str | None = None) -> None:
        self._require_open_signed(prescription)
        if group is not None:
            prescription.pharmacy_group = group
        prescription.token_used = True
        self._move(prescription, DISPENSED)

    def expire(self, prescription: Prescription) -> None:
        if prescription.status not in OPEN_STATUSES:
            raise PlatformError(f"Prescription is {prescription.status} and cannot expire.")
        self._move(prescription, EXPIRED)

    def _require_open_signed(self, prescription: Prescription) -> None:
        if prescription.status == DISPENSED:
            raise PlatformError(ALREADY_DISPENSED)
        if prescription.status == ISSUED:
            raise PlatformError("Prescription is not signed yet.")
        if prescription.status not in OPEN_STATUSES:
            raise PlatformError(f"Prescription is {prescription.status}.")

    def group_matches(self, prescription: Prescription, group: str) -> bool:
        """Staging groups every pharmacy that is not Boots under "All Other Pharmacies"."""
        is_boots = self.contacts[prescription.contact_id].name.lower().startswith("boots")
        return (group == "Boots") == is_boots

    def _move(self, prescription: Prescription, status: str) -> None:
        previous = prescription.status
        prescription.status = status
        prescription.history.append({"status": status, "at": self.clock.iso()})
        self.revision += 1
        logger.info("prescription %s %s -> %s", prescription.id, previous, status)
        self._transition_event(prescription, previous, status)

    def _transition_event(self, prescription: Prescription, previous: str, status: str) -> None:
        now_iso = self.clock.iso()
        event_id, body = build_event(
            prescription_id=prescription.id,
            client_ref_id=prescription.client_ref_id,
            status=status,
            previous_status=previous,
            occurred_at=now_iso,
            created_at=now_iso,
        )
        self.dispatcher.emit(
            WebhookEvent(
                id=event_id,
                prescription_id=prescription.id,
                status=status,
                body=body,
                created_at=now_iso,
            )
        )

    def portal_link(self, prescription: Prescription) -> str:
        base = self.config.public_url or prescription.link_base
        return f"{base.rstrip('/')}/portal/{prescription.token}"

    def _send_email(self, prescription: Prescription) -> None:
        contact = self.contacts[prescription.contact_id]
        patient = prescription.patient
        name = f"{patient.get('first_name', '')} {patient.get('last_name', '')}".strip()
        dob = f"{patient.get('birth_day')}/{patient.get('birth_month')}/{patient.get('birth_year')}"
        link = self.portal_link(prescription)
        body = (
            f"Dear {contact.name},\n\n"
            f"A new private prescription has been issued to your pharmacy.\n\n"
            f"Patient: {name}\nDate of birth: {dob}\nPrescription ID: {prescription.id}\n\n"
            f"Open it securely on the platform (the link works until it is dispensed):\n"
            f"{link}\n\n"
            f"This is an automated message from the e-prescription sandbox.\n"
        )
        self.mailbox.append(
            MailMessage(
                id=len(self.mailbox) + 1,
                to=contact.email,
                subject=f"New prescription {prescription.id}",
                body=body,
                link=link,
                prescription_id=prescription.id,
                sent_at=self.clock.iso(),
            )
        )
        self.revision += 1

    # --- time -------------------------------------------------------------------------------

    def tick(self) -> None:
        """Sign what is due and expire what is stale; cheap enough to run on every request:
        it pops only what is due (an entry whose prescription moved on meanwhile is dropped)."""
        now = self.clock.now()
        for prescription_id in self._to_sign.pop_due(self.timings.sign_delay_seconds, now):
            prescription = self.prescriptions.get(prescription_id)
            if prescription is not None and prescription.status == ISSUED:
                self._move(prescription, SIGNED)
                if prescription.notify:
                    self._send_email(prescription)
        for prescription_id in self._to_expire.pop_due(self.timings.expire_after_seconds, now):
            prescription = self.prescriptions.get(prescription_id)
            if prescription is not None and prescription.status in OPEN_STATUSES:
                self._move(prescription, EXPIRED)

    def ensure_ticker(self) -> None:
        """Start the background clock on first use: ASGI test transports run no lifespan."""
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())

    async def _tick_forever(self) -> None:
        while True:
            self.tick()
            await asyncio.sleep(0.05)

    async def aclose(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
            self._ticker = None
        await self.dispatcher.aclose()
