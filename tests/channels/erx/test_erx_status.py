from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rxroute.channels.erx.contract import PROVIDER_STATUSES
from rxroute.channels.erx.errors import ErxError
from rxroute.channels.erx.status import (
    TERMINAL,
    ProviderStatus,
    UnknownProviderStatus,
    from_provider,
    parse,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("issued", "issued"),
        ("signed", "signed"),
        ("printed", "printed"),
        ("dispensed", "dispensed"),
        ("expired", "expired"),
        ("voided", "voided"),
        (" Dispensed ", "dispensed"),
    ],
)
def test_known_statuses_map(raw: str, expected: str) -> None:
    assert from_provider(raw) == expected


def test_every_contract_status_is_handled() -> None:
    assert {s.value for s in ProviderStatus} == set(PROVIDER_STATUSES)
    assert {from_provider(s) for s in PROVIDER_STATUSES} == set(PROVIDER_STATUSES)
    assert {ProviderStatus.DISPENSED, ProviderStatus.EXPIRED, ProviderStatus.VOIDED} == TERMINAL


@given(st.text(max_size=80).filter(lambda s: s.strip().lower() not in PROVIDER_STATUSES))
def test_anything_else_is_refused(raw: str) -> None:
    with pytest.raises(UnknownProviderStatus) as info:
        from_provider(raw)
    assert isinstance(info.value, ErxError) and isinstance(info.value, ValueError)
    assert len(str(info.value)) < 200


def test_non_string_is_refused() -> None:
    with pytest.raises(UnknownProviderStatus):
        parse(None)  # type: ignore[arg-type]
    with pytest.raises(UnknownProviderStatus, match="cancelled"):
        from_provider("cancelled")
