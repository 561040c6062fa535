"""Tables, one module each. Importing this package registers them all on ``Base.metadata``."""

from rxroute.models.admin_audit import AdminAuditEvent, AuditAction, AuditEntity
from rxroute.models.api_client import ApiClient
from rxroute.models.auth_session import AuthSession, RevokeReason, SessionKind
from rxroute.models.case_note import CaseNote
from rxroute.models.clinic import Clinic
from rxroute.models.delivery import OPEN_STATES, Delivery, DeliveryState
from rxroute.models.delivery_attempt import DeliveryAttempt
from rxroute.models.event_delivery import EventDelivery, EventDeliveryState
from rxroute.models.event_endpoint import EventEndpoint
from rxroute.models.formulary_item import FormularyItem
from rxroute.models.idempotency_key import IdempotencyKey
from rxroute.models.invitation import Invitation, InvitationPurpose
from rxroute.models.outbox_event import OutboxEvent
from rxroute.models.patient import Patient
from rxroute.models.patient_notification import NotificationState, PatientNotification
from rxroute.models.pharmacy import Pharmacy
from rxroute.models.prescriber import Prescriber
from rxroute.models.prescription import Prescription
from rxroute.models.prescription_item import PrescriptionItem
from rxroute.models.status_event import PrescriptionStatusEvent
from rxroute.models.user import Role, User
from rxroute.models.webhook_event import InboundWebhookEvent, WebhookEventState

__all__ = [
    "OPEN_STATES",
    "AdminAuditEvent",
    "ApiClient",
    "AuditAction",
    "AuditEntity",
    "AuthSession",
    "CaseNote",
    "Clinic",
    "Delivery",
    "DeliveryAttempt",
    "DeliveryState",
    "EventDelivery",
    "EventDeliveryState",
    "EventEndpoint",
    "FormularyItem",
    "IdempotencyKey",
    "InboundWebhookEvent",
    "Invitation",
    "InvitationPurpose",
    "NotificationState",
    "OutboxEvent",
    "Patient",
    "PatientNotification",
    "Pharmacy",
    "Prescriber",
    "Prescription",
    "PrescriptionItem",
    "PrescriptionStatusEvent",
    "RevokeReason",
    "Role",
    "SessionKind",
    "User",
    "WebhookEventState",
]
