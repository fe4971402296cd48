"""Passwords (argon2id), signed cookie values and CSRF tokens for the console.

The session cookie carries a random token and its HMAC-SHA256 under the database's session
secret (``console_settings``): a forged or altered cookie is refused before any query, and the
database keeps only the token's SHA-256, so a leaked sessions table opens no session.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _hasher() -> Any:
    from argon2 import PasswordHasher

    # argon2-cffi's defaults are RFC 9106's "low memory" argon2id profile.
    return PasswordHasher()


def hash_password(password: str) -> str:
    """An argon2id PHC string."""
    return str(_hasher().hash(password))


#: Verified against when the user name is unknown, so the answer takes the same time.
_DUMMY: list[str] = []


def verify_password(password_hash: str | None, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    if password_hash is None:
        if not _DUMMY:
            _DUMMY.append(hash_password(secrets.token_hex(16)))
        password_hash = _DUMMY[0]
        password = password + "\0never"
    try:
        return bool(_hasher().verify(password_hash, password))
    except (VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def sign_value(secret: bytes, value: str) -> str:
    mac = hmac.new(secret, value.encode(), hashlib.sha256).hexdigest()
    return f"{value}.{mac}"


def unsign_value(secret: bytes, signed: str | None) -> str | None:
    """The value of a signed cookie, or None when it is missing or does not verify."""
    if not signed or "." not in signed or len(signed) > 512:
        return None
    value, _, mac = signed.rpartition(".")
    want = hmac.new(secret, value.encode(), hashlib.sha256).hexdigest()
    return value if hmac.compare_digest(mac, want) else None


def same_token(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))
