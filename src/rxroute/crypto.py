"""Encryption at rest for prescriber platform credentials and signing PINs.

Fernet (AES-128-CBC + HMAC-SHA256) through ``MultiFernet``: the first key of
``RXROUTE_ENCRYPTION_KEYS`` encrypts, every key decrypts, so keys rotate without downtime.
A value that no key opens raises :class:`DecryptionError` - it never decrypts to garbage.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from rxroute.config import Settings


class EncryptionKeyError(ValueError):
    """RXROUTE_ENCRYPTION_KEYS is missing or malformed."""


class DecryptionError(RuntimeError):
    """Stored ciphertext cannot be opened with any configured key (wrong or rotated-out key)."""


class SecretBox:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise EncryptionKeyError(
                "RXROUTE_ENCRYPTION_KEYS is empty; generate one with "
                "`python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`"
            )
        fernets: list[Fernet] = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.encode()))
            except (ValueError, TypeError) as exc:
                raise EncryptionKeyError(
                    f"RXROUTE_ENCRYPTION_KEYS: key #{position} is not a valid Fernet key "
                    "(32 url-safe base64-encoded bytes)"
                ) from exc
        self._fernet = MultiFernet(fernets)

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        raw = settings.encryption_keys.get_secret_value()
        return cls([key.strip() for key in raw.split(",") if key.strip()])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise DecryptionError(
                "a stored credential cannot be decrypted with RXROUTE_ENCRYPTION_KEYS; "
                "the key is wrong or was rotated out"
            ) from exc
