"""The pharmacy list as CSV files: the export, the template, and the uploaded file carried
from the import's preview to its apply.

The export writes the import's columns (:data:`rxroute.admin.service.PHARMACY_FIELDS`) the
way the import reads them, so an exported list imports back with no changes.
"""

from __future__ import annotations

import base64
import zlib

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.admin.csv_import import MAX_IMPORT_BYTES, ImportFileError, write_csv
from rxroute.admin.service import PHARMACY_FIELDS
from rxroute.models import Pharmacy

# --- the uploaded file, carried from the preview to the apply ---------------------------


def pack(data: bytes) -> str:
    """The file as a form value (compressed, URL-safe base64) for the preview's apply form."""
    return base64.urlsafe_b64encode(zlib.compress(data, 6)).decode("ascii")


def unpack(value: str) -> bytes:
    """The file back from :func:`pack`; :class:`ImportFileError` when it is not one."""
    try:
        compressed = base64.urlsafe_b64decode(value.encode("ascii"))
        inflater = zlib.decompressobj()
        data = inflater.decompress(compressed, MAX_IMPORT_BYTES + 1)
    except (ValueError, UnicodeEncodeError, zlib.error) as exc:
        raise ImportFileError(
            "The previewed file did not come back intact; upload it again."
        ) from exc
    if inflater.unconsumed_tail or len(data) > MAX_IMPORT_BYTES:
        raise ImportFileError("The previewed file is too large; upload it again.")
    return data


def as_text(value: object) -> str:
    """A stored value as the CSV writes it (booleans as yes/no, None as empty)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def values_of(pharmacy: Pharmacy) -> dict[str, str]:
    """The pharmacy as a row of the import's columns."""
    return {
        "code": pharmacy.code or "",
        "name": pharmacy.name,
        "address_line1": pharmacy.address_line1,
        "address_line2": pharmacy.address_line2,
        "town": pharmacy.town,
        "postcode": pharmacy.postcode,
        "region": pharmacy.region,
        "email": pharmacy.email or "",
        "platform_contact_id": as_text(pharmacy.platform_contact_id),
        "active": as_text(pharmacy.active),
        "phone": pharmacy.phone or "",
        "opening_hours": pharmacy.opening_hours or "",
    }


# --- export ----------------------------------------------------------------------------


def template_csv() -> str:
    """The header row alone: what an admin fills in."""
    return write_csv(PHARMACY_FIELDS, [])


async def export_csv(session: AsyncSession) -> str:
    """Every pharmacy in the import's columns, so the export imports back unchanged."""
    rows = []
    for pharmacy in await session.scalars(
        select(Pharmacy).order_by(Pharmacy.region, Pharmacy.name, Pharmacy.id)
    ):
        values = values_of(pharmacy)
        rows.append([values[name] for name in PHARMACY_FIELDS])
    return write_csv(PHARMACY_FIELDS, rows)
