from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import respx
from erx_helpers import BASE, Clock, FakePlatform, make_settings

from rxroute.channels.erx.signaturerx import SignatureRxClient
from rxroute.config import Settings


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as mock:
        yield mock


@pytest.fixture
def platform(router: respx.MockRouter) -> FakePlatform:
    return FakePlatform(router)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def client(settings: Settings, http: httpx.AsyncClient, clock: Clock) -> SignatureRxClient:
    return SignatureRxClient(settings, http=http, clock=clock)


__all__ = ["BASE"]
