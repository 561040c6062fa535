from __future__ import annotations

import uuid

from pydantic import BaseModel

from rxroute.models import Pharmacy
from rxroute.pharmacies.repository import PharmacyCard


class PharmacyOut(BaseModel):
    id: uuid.UUID
    name: str
    address_line1: str
    address_line2: str
    town: str
    postcode: str
    full_address: str
    region: str
    #: Shown to patients when known (an admin's entry or the CSV import); null otherwise.
    phone: str | None = None
    opening_hours: str | None = None

    @classmethod
    def of(cls, pharmacy: Pharmacy | PharmacyCard) -> PharmacyOut:
        return cls(
            id=pharmacy.id,
            name=pharmacy.name,
            address_line1=pharmacy.address_line1,
            address_line2=pharmacy.address_line2,
            town=pharmacy.town,
            postcode=pharmacy.postcode,
            full_address=pharmacy.full_address,
            region=pharmacy.region,
            phone=pharmacy.phone,
            opening_hours=pharmacy.opening_hours,
        )


class PharmacyList(BaseModel):
    region: str
    query: str
    results: list[PharmacyOut]
