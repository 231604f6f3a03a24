"""API tokens: their format and the hash stored in place of them. Pure: no I/O.

A token is ``tp_`` followed by 43 URL-safe characters (32 random bytes), shown to its owner
once. The database keeps only its SHA-256 and its first 11 characters (``tp_`` + 8), enough to
tell tokens apart in a listing and far too few to guess the rest (208 unknown bits remain).
Lookup by hash needs no constant-time comparison: the timing of an index lookup on the hash
reveals nothing usable about the token.
"""

from __future__ import annotations

import hashlib
import re
import secrets

TOKEN_PREFIX = "tp_"
_TOKEN_BYTES = 32
TOKEN_LENGTH = len(TOKEN_PREFIX) + 43  # base64url of 32 bytes, unpadded
DISPLAY_PREFIX_LENGTH = len(TOKEN_PREFIX) + 8
_TOKEN = re.compile(re.escape(TOKEN_PREFIX) + r"[A-Za-z0-9_-]{43}")


def new_token() -> str:
    """A fresh random API token."""
    return TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)


def is_well_formed(token: str) -> bool:
    """Whether ``token`` has the shape of an API token (checked before any database lookup)."""
    return _TOKEN.fullmatch(token) is not None


def hash_token(token: str) -> bytes:
    """The SHA-256 digest (32 bytes) stored in place of ``token``."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def display_prefix(token: str) -> str:
    """The first characters of ``token``, stored to tell tokens apart: ``tp_`` + 8."""
    return token[:DISPLAY_PREFIX_LENGTH]
