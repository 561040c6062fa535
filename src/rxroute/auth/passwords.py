"""argon2id password hashing (argon2-cffi's defaults follow RFC 9106's recommendation)."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()
#: Verified against when the email is unknown, so a wrong email costs as long as a wrong
#: password and response times do not reveal which accounts exist.
_DUMMY_HASH = _hasher.hash("rxroute-timing-equaliser")

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1000


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def unusable_password_hash() -> str:
    """A hash no password matches in practice (of 256 random bits nobody keeps), for an
    account whose password is not set yet or was reset: a real argon2 hash, so checking a
    guess against it costs as much as against a real one and reveals nothing."""
    return _hasher.hash(secrets.token_urlsafe(32))


def verify_password(password_hash: str | None, password: str) -> bool:
    """Always runs one argon2 verification, against a dummy hash when there is no account."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with other argon2 parameters than today's: the next
    successful sign-in stores a fresh hash, so raising the cost reaches every account."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


def password_problem(password: str) -> str | None:
    """Why a new password is not acceptable, or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"use at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"use at most {MAX_PASSWORD_LENGTH} characters"
    if not password.strip():
        return "use more than spaces"
    return None
