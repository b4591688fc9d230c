"""Manifest signatures: an HMAC-SHA256 over a manifest's canonical JSON, keyed from the settings.

The key is derived from NUCLEUS_BACKUP_SIGNING_KEY (by default SECRET_KEY) with Django's salted_hmac and
a salt of its own, so that no other use of the secret yields the same key. Every field is signed except
`signature` itself and `file`, which is where the dump lies (a renamed backup stays valid; its content
is bound by `sha256`). Verification also accepts NUCLEUS_BACKUP_SIGNING_KEY_FALLBACKS (and, while the
key is SECRET_KEY, SECRET_KEY_FALLBACKS), so that keys can be rotated; `manage.py resignbackups` then
signs every manifest with the current key.
"""

import json
from enum import StrEnum

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.utils.crypto import constant_time_compare, salted_hmac

SALT = "nucleus.backups.manifest"
SIGNATURE = "signature"
UNSIGNED_FIELDS = (SIGNATURE, "file")


class Trust(StrEnum):
    CURRENT = "current"  # signed with the current key
    FALLBACK = "fallback"  # signed with a previous key: trusted, to be re-signed
    UNSIGNED = "unsigned"  # no signature: from before signing, or written by hand
    INVALID = "invalid"  # a signature no known key made: edited after signing, or forged


def signing_secrets() -> tuple[str, list[str]]:
    """The current secret and the previous ones, as configured."""
    explicit = settings.NUCLEUS_BACKUP_SIGNING_KEY
    fallbacks = list(settings.NUCLEUS_BACKUP_SIGNING_KEY_FALLBACKS)
    if not explicit:
        fallbacks += list(getattr(settings, "SECRET_KEY_FALLBACKS", []))
    return explicit or settings.SECRET_KEY, fallbacks


def _canonical(manifest: dict) -> bytes:
    payload = {name: value for name, value in manifest.items() if name not in UNSIGNED_FIELDS}
    return json.dumps(
        payload, cls=DjangoJSONEncoder, sort_keys=True, separators=(",", ":"), ensure_ascii=True
    ).encode()


def _signature(manifest: dict, secret: str) -> str:
    return salted_hmac(SALT, _canonical(manifest), secret, algorithm="sha256").hexdigest()


def manifest_sign(manifest: dict) -> dict:
    """A copy of the manifest signed with the current key."""
    current, _ = signing_secrets()
    return {**manifest, SIGNATURE: _signature(manifest, current)}


def manifest_trust(manifest: dict) -> Trust:
    """Whether the manifest was signed with the current key, a fallback key, no key, or none we know.

    Costs one HMAC per configured key at most; compares in constant time.
    """
    claimed = manifest.get(SIGNATURE)
    if claimed is None:
        return Trust.UNSIGNED
    if not isinstance(claimed, str):
        return Trust.INVALID
    current, fallbacks = signing_secrets()
    if constant_time_compare(claimed, _signature(manifest, current)):
        return Trust.CURRENT
    if any(constant_time_compare(claimed, _signature(manifest, secret)) for secret in fallbacks):
        return Trust.FALLBACK
    return Trust.INVALID


def trusted(manifest: dict) -> bool:
    return manifest_trust(manifest) in (Trust.CURRENT, Trust.FALLBACK)
