"""Encryption at rest: round trip, wrong key, rotation, malformed keys."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from rxroute.config import Settings
from rxroute.crypto import DecryptionError, EncryptionKeyError, SecretBox

PIN = "123456"


def _key() -> str:
    return Fernet.generate_key().decode()


def test_round_trip_and_ciphertext_hides_the_value() -> None:
    box = SecretBox([_key()])
    token = box.encrypt(PIN)
    assert token != PIN
    assert PIN not in token
    assert box.decrypt(token) == PIN
    # Fernet is randomised: the same value never encrypts to the same token twice.
    assert box.encrypt(PIN) != token


def test_round_trip_unicode() -> None:
    box = SecretBox([_key()])
    assert box.decrypt(box.encrypt("pässwörd-✓")) == "pässwörd-✓"


def test_wrong_key_raises_never_garbage() -> None:
    token = SecretBox([_key()]).encrypt(PIN)
    with pytest.raises(DecryptionError, match="RXROUTE_ENCRYPTION_KEYS"):
        SecretBox([_key()]).decrypt(token)


def test_tampered_ciphertext_raises() -> None:
    box = SecretBox([_key()])
    token = box.encrypt(PIN)
    tampered = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
    with pytest.raises(DecryptionError):
        box.decrypt(tampered)
    with pytest.raises(DecryptionError):
        box.decrypt("not a fernet token at all")


def test_rotation_new_key_first_old_key_still_decrypts() -> None:
    old, new = _key(), _key()
    old_token = SecretBox([old]).encrypt(PIN)
    rotated = SecretBox([new, old])
    assert rotated.decrypt(old_token) == PIN
    fresh = rotated.encrypt("654321")
    # Encrypted with the new key: the new key alone opens it, the old key alone does not.
    assert SecretBox([new]).decrypt(fresh) == "654321"
    with pytest.raises(DecryptionError):
        SecretBox([old]).decrypt(fresh)
    # Once the old key is retired, its ciphertexts no longer open.
    with pytest.raises(DecryptionError):
        SecretBox([new]).decrypt(old_token)


def test_from_settings_splits_comma_separated_keys() -> None:
    old, new = _key(), _key()
    old_token = SecretBox([old]).encrypt(PIN)
    settings = Settings(encryption_keys=SecretStr(f" {new} , {old} ,"), _env_file=None)  # type: ignore[call-arg]
    box = SecretBox.from_settings(settings)
    assert box.decrypt(old_token) == PIN
    assert SecretBox([new]).decrypt(box.encrypt(PIN)) == PIN


@pytest.mark.parametrize(
    "keys", [["not-a-key"], ["short"], [""], ["x" * 44]], ids=["word", "short", "empty", "44x"]
)
def test_malformed_key_names_the_variable(keys: list[str]) -> None:
    with pytest.raises(EncryptionKeyError, match="RXROUTE_ENCRYPTION_KEYS"):
        SecretBox(keys)


def test_second_key_malformed_says_which() -> None:
    with pytest.raises(EncryptionKeyError, match="key #2"):
        SecretBox([_key(), "bogus"])


def test_no_keys_names_the_variable() -> None:
    with pytest.raises(EncryptionKeyError, match="RXROUTE_ENCRYPTION_KEYS"):
        SecretBox([])
    settings = Settings(encryption_keys=SecretStr(" , "), _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(EncryptionKeyError, match="RXROUTE_ENCRYPTION_KEYS is empty"):
        SecretBox.from_settings(settings)


def test_demo_key_is_a_valid_fernet_key() -> None:
    box = SecretBox.from_settings(Settings(_env_file=None))  # type: ignore[call-arg]
    assert box.decrypt(box.encrypt(PIN)) == PIN
