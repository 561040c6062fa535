from __future__ import annotations

import uuid

from pydantic import BaseModel, Field

from rxroute.models import Prescriber


class PrescriberOut(BaseModel):
    """A prescriber as a platform needs it to write prescriptions: which id to name.

    Built field by field from the model, so the platform login, password and signing PIN
    (encrypted columns) cannot reach an answer by a field added later.
    """

    id: uuid.UUID = Field(description="rxroute's id (`prescriber_id` in a prescription body).")
    external_id: str | None = Field(
        description="The platform's own id, if it set one (`prescriber_external_id`)."
    )
    full_name: str
    registration_number: str
    active: bool

    @classmethod
    def of(cls, prescriber: Prescriber) -> PrescriberOut:
        return cls(
            id=prescriber.id,
            external_id=prescriber.external_id,
            full_name=prescriber.full_name,
            registration_number=prescriber.registration_number,
            active=prescriber.active,
        )


class PrescriberList(BaseModel):
    results: list[PrescriberOut]
