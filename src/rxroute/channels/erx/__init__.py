"""Region B: prescriptions issued through the third-party e-prescription platform."""

from rxroute.channels.erx.base import (
    Clinic,
    Contact,
    ErxChannel,
    IssuedPrescription,
    PrescriberCredentials,
    RemotePrescription,
)
from rxroute.channels.erx.contract import IssuePayload, MedicinePayload, PatientPayload
from rxroute.channels.erx.errors import (
    ErxError,
    LocalValidationError,
    RejectedError,
    RejectReason,
    RetryableError,
    UnexpectedResponseError,
    ValidationRejected,
)
from rxroute.channels.erx.payload import MedicineItem, PatientDetails, build_issue_payload
from rxroute.channels.erx.signaturerx import SignatureRxClient
from rxroute.channels.erx.status import ProviderStatus, UnknownProviderStatus, from_provider

__all__ = [
    "Clinic",
    "Contact",
    "ErxChannel",
    "ErxError",
    "IssuePayload",
    "IssuedPrescription",
    "LocalValidationError",
    "MedicineItem",
    "MedicinePayload",
    "PatientDetails",
    "PatientPayload",
    "PrescriberCredentials",
    "ProviderStatus",
    "RejectReason",
    "RejectedError",
    "RemotePrescription",
    "RetryableError",
    "SignatureRxClient",
    "UnexpectedResponseError",
    "UnknownProviderStatus",
    "ValidationRejected",
    "build_issue_payload",
    "from_provider",
]
