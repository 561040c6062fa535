"""A sandbox with a state file remembers, across a restart, what it issued (as ``rxroute
demo`` runs it), so rxroute's database and the platform do not disagree afterwards."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from rxroute.sandbox import SandboxConfig, SandboxServer

from .conftest import fast_config, issue, login


def _config(state: Path) -> SandboxConfig:
    return fast_config().model_copy(update={"state_file": str(state)})


async def test_prescriptions_mailbox_and_clock_survive_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "var" / "sandbox-state.json"
    async with (
        SandboxServer(_config(state)) as first,
        httpx.AsyncClient(base_url=first.url, trust_env=False) as api,
    ):
        headers = await login(api)
        kept = (await issue(api, headers, client_ref_id="rx-kept"))["data"]["prescription"]
        dispensed = (await issue(api, headers, client_ref_id="rx-done"))["data"]["prescription"]
        await api.post("/_sandbox/clock/advance", json={"seconds": 5})
        assert (await api.post(f"/_sandbox/prescriptions/{dispensed['id']}/dispense")).is_success
        await api.put("/_sandbox/faults", json={"error_rate": 1.0})
        before = (await api.get(f"/_sandbox/prescriptions/{kept['id']}")).json()["data"]
    assert state.exists()

    async with (
        SandboxServer(_config(state)) as second,
        httpx.AsyncClient(base_url=second.url, trust_env=False) as api,
    ):
        after = (await api.get(f"/_sandbox/prescriptions/{kept['id']}")).json()["data"]
        assert after["prescription"]["status"] == "signed"
        assert after["prescription"]["status_history"] == before["prescription"]["status_history"]
        assert (await api.get("/_sandbox/clock")).json()["offset_seconds"] == 5
        stats = (await api.get("/_sandbox/stats")).json()
        assert stats["issued_by_client_ref_id"] == {"rx-kept": 1, "rx-done": 1}
        assert stats["prescriptions_by_status"] == {"signed": 1, "dispensed": 1}
        mailbox = (await api.get("/_sandbox/mailbox")).json()["messages"]
        assert {m["prescription_id"] for m in mailbox} == {kept["id"], dispensed["id"]}
        # The pharmacy's link still opens it; the used one is still used up.
        token = after["prescription"]["token"]
        assert (await api.get(f"/portal/{token}")).status_code == 200
        assert (await api.get(f"/portal/{dispensed['token']}")).status_code == 410
        # Faults are not kept: a restart is a way out of a staged failure.
        assert (await api.get("/_sandbox/faults")).json()["error_rate"] == 0.0
        # The client logs in again (tokens are not kept) and finds it by its reference.
        headers = await login(api)
        found = await api.get(
            "/api/v1/prescriptions", params={"client_ref_id": "rx-kept"}, headers=headers
        )
        assert [p["id"] for p in found.json()["data"]["prescriptions"]] == [kept["id"]]
        # Reset empties the file too.
        await api.post("/_sandbox/reset")
    assert json.loads(state.read_text())["prescriptions"] == []


async def test_an_unreadable_state_file_is_set_aside_and_the_sandbox_starts(
    tmp_path: Path,
) -> None:
    state = tmp_path / "sandbox-state.json"
    state.write_text("{not json", encoding="utf-8")
    async with (
        SandboxServer(_config(state)) as server,
        httpx.AsyncClient(base_url=server.url, trust_env=False) as api,
    ):
        assert (await api.get("/_sandbox/prescriptions")).json() == {"prescriptions": []}
    assert (tmp_path / "sandbox-state.json.unreadable").read_text() == "{not json"


async def test_without_a_state_file_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with (
        SandboxServer(fast_config()) as server,
        httpx.AsyncClient(base_url=server.url, trust_env=False) as api,
    ):
        await issue(api, await login(api))
    assert list(tmp_path.iterdir()) == []
