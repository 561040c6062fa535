"""Shared fixtures: a fresh sandbox per test, spoken to over HTTP only."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rxroute.sandbox import SandboxApp, SandboxConfig, create_app, load_config

CLIENT_ID = "rxroute-demo-client"
CLIENT_SECRET = "demo-only-sandbox-client-secret"
ALICE = ("dr.alice.hartfield@example.com", "sandbox-prescriber-alice", "123456")
CAROL = ("dr.carol.inactive@example.com", "sandbox-prescriber-carol", "111111")
WEBHOOK_SECRET = "demo-only-webhook-secret"


def fast_config(**faults: Any) -> SandboxConfig:
    """Default accounts, with signing immediate and retries quick enough for a test run."""
    config = load_config(None)
    timings = config.timings.model_copy(
        update={
            "sign_delay_seconds": 0.0,
            "webhook_backoff_seconds": 0.05,
            "webhook_backoff_max_seconds": 0.2,
            "webhook_timeout_seconds": 2.0,
            "reorder_hold_seconds": 0.5,
        }
    )
    merged = config.faults.model_copy(update={"seed": 1234, **faults})
    return config.model_copy(update={"timings": timings, "faults": merged})


@pytest.fixture
async def app() -> AsyncIterator[SandboxApp]:
    sandbox_app = create_app(fast_config())
    yield sandbox_app
    await sandbox_app.sandbox.aclose()


@pytest.fixture
async def client(app: SandboxApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox.test") as c:
        yield c


async def get_access_token(client: httpx.AsyncClient) -> str:
    response = await client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def login(
    client: httpx.AsyncClient, prescriber: tuple[str, str, str] = ALICE
) -> dict[str, str]:
    """Both tokens, as the headers every later call must carry."""
    access = await get_access_token(client)
    response = await client.post(
        "/api/v1/login",
        headers={"Authorization": f"Bearer {access}"},
        json={"email": prescriber[0], "password": prescriber[1]},
    )
    body = response.json()
    assert body["success"] is True, body
    return {"Authorization": f"Bearer {access}", "X-Prescriber-Token": body["data"]["token"]}


def issue_payload(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "action": "issueToContact",
        "clinic_id": 994,
        "contact_id": 5012,
        "secure_pin": "123456",
        "prescriber_ip": "203.0.113.7",
        "notify": True,
        "client_ref_id": "rx-0001",
        "notes": "Take with food.",
        "patient": {
            "first_name": "Jane",
            "last_name": "Testpatient",
            "gender": "Female",
            "email": "jane@example.com",
            "phone": "447700900123",
            "birth_day": "07",
            "birth_month": "03",
            "birth_year": "1985",
            "address_ln1": "1 High Street",
            "address_ln2": "",
            "city": "Exeter",
            "post_code": "EX1 1AA",
            "country": "GB",
        },
        "medicines": [{"description": "Semaglutide 0.25mg pen", "qty": 1, "directions": "Weekly."}],
    }
    payload.update(overrides)
    return payload


async def issue(
    client: httpx.AsyncClient, headers: dict[str, str], **overrides: Any
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/prescriptions", headers=headers, json=issue_payload(**overrides)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["success"] is True, body
    return body


# --- a real webhook receiver on 127.0.0.1 ------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _QuietServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:
        return None


class ThreadedServer:
    """Any ASGI app on a real port in a thread, for tests that need real TCP."""

    def __init__(self, asgi_app: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            asgi_app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self.server = _QuietServer(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        stop = threading.Event()
        for _ in range(500):
            if self.server.started:
                return self
            stop.wait(0.01)
        raise RuntimeError("test server did not start")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(5)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Records webhooks; ``fail_first`` answers 500 to that many requests first."""

    fail_first: int = 0
    received: list[Received] = field(default_factory=list)
    answered: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def events(self) -> list[dict[str, Any]]:
        import json

        with self.lock:
            return [json.loads(r.body) for r in self.received]

    async def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 10
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(self.events()):
            if loop.time() > deadline:
                raise AssertionError(f"timed out; received {self.events()}")
            await asyncio.sleep(0.02)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    async def hook(request: Request) -> Response:
        body = await request.body()
        with state.lock:
            state.answered += 1
            if state.answered <= state.fail_first:
                return JSONResponse({"error": "try later"}, status_code=500)
            state.received.append(Received(dict(request.headers), body))
        return JSONResponse({"ok": True})

    with ThreadedServer(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as server:
        state.url = server.url + "/hook"
        yield state
