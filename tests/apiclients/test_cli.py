"""``rxroute apikey``, run as a real process against the test database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.apiclients.keys import KEY_PREFIX, key_digest
from rxroute.models import ApiClient
from rxroute.runtime import Runtime
from tests.apiclients.helpers import bearer

RXROUTE = str(Path(sys.executable).parent / "rxroute")


def _apikey(database_url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RXROUTE_")}
    env.update(RXROUTE_DATABASE_URL=database_url, COLUMNS="100")
    return subprocess.run(
        [RXROUTE, "apikey", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _key_in(stdout: str) -> str:
    keys = [line.strip() for line in stdout.splitlines() if line.strip().startswith(KEY_PREFIX)]
    assert len(keys) == 1, stdout
    return keys[0]


def _input_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


async def _client(session: AsyncSession, name: str) -> ApiClient:
    async with session.begin():
        found = await session.scalar(
            select(ApiClient)
            .where(ApiClient.name == name)
            .execution_options(populate_existing=True)
        )
    assert found is not None
    return found


async def test_create_prints_the_key_once_and_stores_only_its_hash(
    db: Runtime,
    database_url: str,
    tmp_path: Path,
    session: AsyncSession,
    client: httpx.AsyncClient,
) -> None:
    result = _apikey(
        database_url,
        tmp_path,
        "create",
        "--name",
        "Acme Health",
        "--scopes",
        "prescriptions:read,prescriptions:send",
    )
    assert result.returncode == 0, result.stderr
    key = _key_in(result.stdout)
    stored = await _client(session, "Acme Health")
    assert stored.key_hash == key_digest(key)
    assert stored.scopes == ["prescriptions:read", "prescriptions:send"]
    assert f"prefix: {stored.key_prefix}" in result.stdout
    assert "prescriptions:read, prescriptions:send" in result.stdout
    assert key.startswith(stored.key_prefix)

    response = await client.get("/api/v1/prescriptions", headers=bearer(key))
    assert response.status_code == 200, response.text

    listed = _apikey(database_url, tmp_path, "list")
    assert listed.returncode == 0, listed.stderr
    assert "Acme Health" in listed.stdout and stored.key_prefix in listed.stdout
    assert key not in listed.stdout, "the list shows the prefix, never the key"
    for heading in ("name", "prefix", "scopes", "created", "last used", "revoked"):
        assert heading in listed.stdout
    assert "never" not in listed.stdout, "the key was used: the list says when"
    assert "prescriptions:read" in listed.stdout and "prescriptions:send" in listed.stdout


async def test_a_bad_scope_or_a_taken_name_is_one_line_naming_the_field(
    db: Runtime, database_url: str, tmp_path: Path, session: AsyncSession
) -> None:
    bad = _apikey(
        database_url, tmp_path, "create", "--name", "acme", "--scopes", "prescriptions:delete"
    )
    line = _input_error(bad)
    assert "scopes" in line and "prescriptions:delete" in line
    assert "prescriptions:read" in line, "the line lists the scopes that exist"

    first = _apikey(
        database_url, tmp_path, "create", "--name", "acme", "--scopes", "pharmacies:read"
    )
    assert first.returncode == 0, first.stderr
    taken = _apikey(
        database_url, tmp_path, "create", "--name", "acme", "--scopes", "pharmacies:read"
    )
    line = _input_error(taken)
    assert line.startswith("error: name:") and "already exists" in line
    assert KEY_PREFIX not in taken.stdout

    odd = _apikey(database_url, tmp_path, "create", "--name", "!!", "--scopes", "pharmacies:read")
    assert _input_error(odd).startswith("error: name:")
    unknown = _apikey(database_url, tmp_path, "revoke", "nobody")
    assert "no API client called 'nobody'" in _input_error(unknown)
    async with session.begin():
        names = list(await session.scalars(select(ApiClient.name)))
    assert names == ["acme"]


async def test_rotate_then_revoke(
    db: Runtime,
    database_url: str,
    tmp_path: Path,
    session: AsyncSession,
    client: httpx.AsyncClient,
) -> None:
    created = _apikey(
        database_url, tmp_path, "create", "--name", "acme", "--scopes", "prescriptions:read"
    )
    old = _key_in(created.stdout)
    rotated = _apikey(database_url, tmp_path, "rotate", "acme")
    assert rotated.returncode == 0, rotated.stderr
    new = _key_in(rotated.stdout)
    assert new != old
    assert (await client.get("/api/v1/prescriptions", headers=bearer(old))).status_code == 401
    assert (await client.get("/api/v1/prescriptions", headers=bearer(new))).status_code == 200

    revoked = _apikey(database_url, tmp_path, "revoke", "acme")
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked" in revoked.stdout
    refused = await client.get("/api/v1/prescriptions", headers=bearer(new))
    assert refused.status_code == 401
    assert (await _client(session, "acme")).revoked_at is not None

    again = _apikey(database_url, tmp_path, "revoke", "acme")
    assert again.returncode == 0 and "already revoked" in again.stdout
    no_rotation = _apikey(database_url, tmp_path, "rotate", "acme")
    assert "revoked" in _input_error(no_rotation)


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    result = _apikey("postgresql://x@127.0.0.1:1/db", tmp_path, "list")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        line for line in result.stderr.strip().splitlines() if "cannot reach the database" in line
    ]
