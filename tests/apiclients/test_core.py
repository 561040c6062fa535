"""API clients: keys stored as hashes, scopes parsed strictly, rotation and revocation."""

from __future__ import annotations

import hashlib

import pytest
from fastapi import HTTPException
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.apiclients.dependencies import _check_scope, authenticate_key
from rxroute.apiclients.keys import KEY_PREFIX, new_key
from rxroute.apiclients.scopes import Scope, parse_scopes
from rxroute.apiclients.service import (
    ApiClientError,
    create_client,
    revoke_client,
    rotate_client,
)
from rxroute.models import ApiClient
from rxroute.prescriptions.errors import Conflict, InvalidChoice
from rxroute.prescriptions.writing import DraftItem, create_draft
from rxroute.runtime import Runtime
from tests.factories import make_patient, make_prescriber


def test_keys_are_prefixed_random_and_only_their_hash_is_kept() -> None:
    first, second = new_key(), new_key()
    assert first.plain.startswith(KEY_PREFIX) and len(first.plain) > 40
    assert first.plain != second.plain
    assert first.digest == hashlib.sha256(first.plain.encode()).hexdigest()
    assert first.prefix == first.plain[:12]


def test_scopes_parse_strictly() -> None:
    assert parse_scopes("prescriptions:read, patients:write,prescriptions:read") == [
        Scope.PRESCRIPTIONS_READ,
        Scope.PATIENTS_WRITE,
    ]
    with pytest.raises(ValueError, match="unknown scope 'prescriptions:delete'"):
        parse_scopes("prescriptions:delete")
    with pytest.raises(ValueError, match="at least one"):
        parse_scopes(" , ")


async def test_a_client_authenticates_until_rotated_or_revoked(session: AsyncSession) -> None:
    issued = await create_client(session, name="Acme Health", scopes=[Scope.PRESCRIPTIONS_READ])
    stored = await session.scalar(select(ApiClient).where(ApiClient.name == "Acme Health"))
    assert stored is not None and issued.plain_key not in (stored.key_hash, stored.key_prefix)

    found = await authenticate_key(session, issued.plain_key)
    assert found.id == stored.id and found.last_used_at is not None
    assert _check_scope(found, Scope.PRESCRIPTIONS_READ) is found
    with pytest.raises(HTTPException) as missing:
        _check_scope(found, Scope.PRESCRIPTIONS_SEND)
    assert missing.value.status_code == 403 and "prescriptions:send" in missing.value.detail

    rotated = await rotate_client(session, "Acme Health")
    with pytest.raises(HTTPException) as old:
        await authenticate_key(session, issued.plain_key)
    assert old.value.status_code == 401
    assert (await authenticate_key(session, rotated.plain_key)).id == stored.id

    await revoke_client(session, "Acme Health")
    with pytest.raises(HTTPException) as revoked:
        await authenticate_key(session, rotated.plain_key)
    assert revoked.value.status_code == 401 and "revoked" in revoked.value.detail
    with pytest.raises(ApiClientError, match="revoked"):
        await rotate_client(session, "Acme Health")


async def test_client_names_are_checked_and_unique(session: AsyncSession) -> None:
    await create_client(session, name="acme", scopes=[Scope.PHARMACIES_READ])
    with pytest.raises(ApiClientError) as taken:
        await create_client(session, name=" acme ", scopes=[Scope.PHARMACIES_READ])
    assert taken.value.status_code == 409
    with pytest.raises(ApiClientError, match="name: 1 to 100"):
        await create_client(session, name="<script>", scopes=[Scope.PHARMACIES_READ])
    with pytest.raises(ApiClientError) as missing:
        await revoke_client(session, "nobody")
    assert missing.value.status_code == 404


async def test_a_draft_is_written_with_its_items_in_order(
    db: Runtime, session: AsyncSession
) -> None:
    patient = await make_patient(session, region="A")
    prescriber = await make_prescriber(session, db.secret_box)
    lines = [DraftItem("Amoxicillin 500mg capsules", "21", "One three times a day")]
    lines.append(DraftItem("Paracetamol 500mg tablets", "32", "Two when needed", "322236009"))
    draft = await create_draft(
        session, patient=patient, prescriber=prescriber, items=lines, external_id="ext-1"
    )
    assert draft.status == "draft" and draft.region == "A" and draft.external_id == "ext-1"
    assert [item.description for item in draft.items] == [line.description for line in lines]
    assert draft.items[1].dmd_vpid == "322236009"

    with pytest.raises(Conflict, match="external_id"):
        await create_draft(
            session, patient=patient, prescriber=prescriber, items=lines, external_id="ext-1"
        )
    with pytest.raises(InvalidChoice, match="at least one item"):
        await create_draft(session, patient=patient, prescriber=prescriber, items=[])
    prescriber.active = False
    with pytest.raises(InvalidChoice, match="deactivated"):
        await create_draft(session, patient=patient, prescriber=prescriber, items=lines)
