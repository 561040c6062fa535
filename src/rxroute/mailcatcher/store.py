"""Received messages, parsed once and kept in memory for the demo's web view.

The SMTP thread writes and the web thread reads, so access goes through one lock; the store
is bounded because a catcher left running through a load test must not grow without end.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

__all__ = ["Attachment", "MessageStore", "StoredMessage", "parse_message"]

DEFAULT_CAPACITY = 500


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: int
    received_at: datetime
    #: SMTP envelope: who the relay was told the message is from and for.
    envelope_from: str
    envelope_to: tuple[str, ...]
    #: Header values as written by the sender (untrusted).
    from_header: str
    to_header: str
    subject: str
    text_body: str | None
    html_body: str | None
    attachments: tuple[Attachment, ...]
    raw: bytes


def parse_message(
    message_id: int,
    raw: bytes,
    *,
    envelope_from: str,
    envelope_to: tuple[str, ...],
    received_at: datetime | None = None,
) -> StoredMessage:
    """Parse leniently: a malformed message is still stored, with what could be read."""
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(parsed, EmailMessage)  # policy.default always builds EmailMessage
    return StoredMessage(
        id=message_id,
        received_at=received_at or datetime.now(UTC),
        envelope_from=envelope_from,
        envelope_to=envelope_to,
        from_header=str(parsed.get("From", "")),
        to_header=str(parsed.get("To", "")),
        subject=str(parsed.get("Subject", "")),
        text_body=_body(parsed, "plain"),
        html_body=_body(parsed, "html"),
        attachments=tuple(_attachments(parsed)),
        raw=raw,
    )


def _body(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_subtype() != subtype:
        return None
    try:
        content = part.get_content()
    except (LookupError, ValueError):
        # Unknown charset or broken transfer encoding: show the bytes as best we can.
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else None
    return content if isinstance(content, str) else None


def _attachments(message: EmailMessage) -> list[Attachment]:
    found: list[Attachment] = []
    for index, part in enumerate(message.iter_attachments(), start=1):
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename() or f"attachment-{index}"
        found.append(Attachment(filename=filename, content_type=part.get_content_type(), data=data))
    return found


class MessageStore:
    """The last ``capacity`` messages, oldest first, with IDs that are never reused."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._lock = threading.Lock()
        self._messages: deque[StoredMessage] = deque(maxlen=capacity)
        self._next_id = 1

    def add(self, raw: bytes, *, envelope_from: str, envelope_to: tuple[str, ...]) -> StoredMessage:
        # Parsing under the lock keeps IDs and order in step; demo volumes make it cheap.
        with self._lock:
            stored = parse_message(
                self._next_id, raw, envelope_from=envelope_from, envelope_to=envelope_to
            )
            self._next_id += 1
            self._messages.append(stored)
        return stored

    def all(self) -> list[StoredMessage]:
        with self._lock:
            return list(self._messages)

    def get(self, message_id: int) -> StoredMessage | None:
        with self._lock:
            for message in self._messages:
                if message.id == message_id:
                    return message
        return None

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
