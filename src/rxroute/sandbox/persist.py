"""The sandbox's state in a file, so a restarted sandbox still knows what it issued.

The sandbox keeps everything in memory. Alone, that is the point (every test starts clean);
in ``rxroute demo`` it made the two sides disagree after a restart: rxroute's database still
held prescriptions "issued on the platform" that the fresh sandbox had never heard of, so
their lookups, voids and portal links failed. With a state file (``rxroute demo`` uses
``var/sandbox-state.json``, next to its database, and ``rxroute demo --reset`` deletes both)
the sandbox saves what the platform would remember - its prescriptions, the pharmacies'
mailbox, its clock and how often each ``client_ref_id`` was issued - and loads it on start.

Not kept, on purpose: tokens (a client logs in again, as after any platform restart), faults
and aimed faults (a restart is a clean way out of a staged failure), and webhook deliveries
still queued (rxroute's reconciliation polls for any event lost that way).

Saved when the sandbox stops and, while it runs, within a second of any change, by writing a
temporary file and renaming it over the old one, so a crash leaves the previous whole file.
"Any change" is read from the sandbox's ``revision`` and its clock, not by serialising the
state to compare: at 100,000 prescriptions one serialisation takes about ten seconds of CPU,
which, once a second, left a loaded sandbox no time to answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from .records import MailMessage, Prescription
from .state import Sandbox

logger = logging.getLogger("rxroute.sandbox")

#: Bumped when the file's shape changes; a file of another version is set aside, not read.
VERSION = 1


class StateFileError(RuntimeError):
    """The state file cannot be read or written; the message names the file."""


def snapshot(sandbox: Sandbox) -> dict[str, Any]:
    return {
        "version": VERSION,
        "clock_offset_seconds": sandbox.clock.offset,
        "prescriptions": [asdict(p) for p in sandbox.prescriptions.values()],
        "mailbox": [m.as_dict() for m in sandbox.mailbox],
        "issued_by_client_ref_id": dict(sandbox.counters.issued_by_client_ref_id),
    }


def restore(sandbox: Sandbox, saved: dict[str, Any]) -> None:
    """Put a snapshot's state into a freshly created sandbox."""
    known = {f.name for f in fields(Prescription)}
    sandbox.clock.offset = float(saved.get("clock_offset_seconds", 0.0))
    prescriptions = [
        Prescription(**{k: v for k, v in row.items() if k in known})
        for row in saved.get("prescriptions", [])
    ]
    mailbox = [MailMessage(**row) for row in saved.get("mailbox", [])]
    sandbox.replace_prescriptions(prescriptions)
    sandbox.mailbox[:] = mailbox
    sandbox.counters.issued_by_client_ref_id.update(saved.get("issued_by_client_ref_id", {}))


class StateFile:
    """One sandbox's state file: :meth:`load` once at start, :meth:`save` whenever."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._written: str | None = None
        #: The sandbox's revision and clock offset when the file last matched it.
        self._matched: tuple[int, float] | None = None

    def load(self, sandbox: Sandbox) -> bool:
        """Restore ``sandbox`` from the file; False when there is none yet.

        An unreadable file (another version, or damaged) is renamed aside with a warning, so
        the sandbox starts clean instead of refusing to start.
        """
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StateFileError(f"cannot read the sandbox state file {self.path}: {exc}") from exc
        try:
            saved = json.loads(text)
            if not isinstance(saved, dict) or saved.get("version") != VERSION:
                raise ValueError("another version")
            restore(sandbox, saved)
            self._matched = (sandbox.revision, sandbox.clock.offset)
        except (ValueError, TypeError, KeyError) as exc:
            aside = self.path.with_name(self.path.name + ".unreadable")
            os.replace(self.path, aside)
            logger.warning("sandbox state file set aside (%s): starting clean", type(exc).__name__)
            return False
        self._written = text
        return True

    def save(self, sandbox: Sandbox) -> bool:
        """Write the state if it changed since the last write; True if it wrote."""
        mark = (sandbox.revision, sandbox.clock.offset)
        if mark == self._matched:
            return False
        text = json.dumps(snapshot(sandbox), sort_keys=True)
        if text == self._written:
            self._matched = mark
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise StateFileError(f"cannot write the sandbox state file {self.path}: {exc}") from exc
        self._written = text
        self._matched = mark
        return True


async def save_while_running(state: StateFile, sandbox: Sandbox, every: float = 1.0) -> None:
    """Save every ``every`` seconds if anything changed, until cancelled (then save once)."""
    try:
        while True:
            await asyncio.sleep(every)
            _save_or_warn(state, sandbox)
    finally:
        _save_or_warn(state, sandbox)


def _save_or_warn(state: StateFile, sandbox: Sandbox) -> None:
    # A full disk must not stop the platform answering: it only stops remembering.
    try:
        state.save(sandbox)
    except StateFileError as exc:
        logger.warning("%s", exc)
