"""Region A: a prescription goes to the pharmacy as a PDF attached to an email.

The pieces here need no database: the caller loads the prescription, builds a
:class:`~rxroute.channels.email.document.PrescriptionDocument`, and this package renders,
signs the confirmation link, composes and sends.
"""

from rxroute.channels.email.document import (
    PatientDetails,
    PharmacyDetails,
    PrescriberDetails,
    PrescriptionDocument,
    PrescriptionItem,
)
from rxroute.channels.email.errors import EmailRejected, EmailRetryable, EmailSendError
from rxroute.channels.email.links import (
    LinkExpired,
    LinkInvalid,
    make_dispense_token,
    read_dispense_token,
)
from rxroute.channels.email.message import build_prescription_email
from rxroute.channels.email.pdf import render_prescription_pdf
from rxroute.channels.email.smtp import send_email

__all__ = [
    "EmailRejected",
    "EmailRetryable",
    "EmailSendError",
    "LinkExpired",
    "LinkInvalid",
    "PatientDetails",
    "PharmacyDetails",
    "PrescriberDetails",
    "PrescriptionDocument",
    "PrescriptionItem",
    "build_prescription_email",
    "make_dispense_token",
    "read_dispense_token",
    "render_prescription_pdf",
    "send_email",
]
