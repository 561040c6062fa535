"""Signing keys, one set per purpose, each with the keys it is rotating away from.

Sessions (cookies and API tokens), CSRF tokens and pharmacy confirmation links each have
their own secret (``RXROUTE_SESSION_SECRET``, ``RXROUTE_CSRF_SECRET``,
``RXROUTE_LINK_SECRET``), so a leaked link key cannot forge a session and each can be
rotated on its own schedule. Rotation needs no downtime: put the old key in the purpose's
``*_PREVIOUS`` list and a new one in its place; new tokens are signed with the new key, and
tokens signed with any listed key keep verifying until they expire on their own (then drop
the old key).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

from rxroute.config import Settings


@dataclass(frozen=True)
class KeyRing:
    """The key that signs, and every key that verifies (current first)."""

    current: str
    previous: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.current or not all(self.previous):
            # An empty key would make every token forgeable; refuse rather than sign with it.
            raise ValueError("a signing key is empty")

    @property
    def verifying(self) -> tuple[str, ...]:
        return (self.current, *self.previous)

    @property
    def oldest_first(self) -> list[str]:
        """The order itsdangerous wants: it signs with the last key and verifies with all."""
        return list(reversed(self.verifying))


def _ring(current: SecretStr, previous: list[SecretStr]) -> KeyRing:
    return KeyRing(current.get_secret_value(), tuple(key.get_secret_value() for key in previous))


def session_keys(settings: Settings) -> KeyRing:
    return _ring(settings.session_secret, settings.session_secret_previous)


def csrf_keys(settings: Settings) -> KeyRing:
    return _ring(settings.csrf_secret, settings.csrf_secret_previous)


def link_keys(settings: Settings) -> KeyRing:
    return _ring(settings.link_secret, settings.link_secret_previous)
