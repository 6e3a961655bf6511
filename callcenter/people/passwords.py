"""Passwords, hashed with argon2id (argon2-cffi's defaults, RFC 9106's second choice).

Hashing is deliberately slow (tens of milliseconds), so it runs in a thread:
the event loop keeps serving calls while someone signs in.
"""

from __future__ import annotations

import asyncio
import functools
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()

#: The shortest password accepted; a generated one is much longer.
MIN_LENGTH = 12


def generate() -> str:
    """A password for someone who was not given one (shown once)."""
    return secrets.token_urlsafe(18)


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_HASHER.hash, password)


async def verify(password_hash: str, password: str) -> bool:
    def check() -> bool:
        try:
            return _HASHER.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


@functools.cache
def dummy_hash() -> str:
    """Checked when the name is unknown, so a wrong name costs what a wrong password does."""
    return _HASHER.hash(secrets.token_urlsafe(18))
