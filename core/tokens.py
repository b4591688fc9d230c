"""Service tokens as stored: only their SHA-256, which is enough to find one and safe to keep."""

import hashlib

TOKEN_PREFIX = "nuc_"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
