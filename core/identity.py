"""Bearer JWTs issued by the ecosystem's identity service: their configuration and their verification.

Settings build the configuration with `jwt_config()` while Django starts, so that a bad key or a
missing issuer stops start-up; this module therefore imports nothing from Django's app registry.
Only asymmetric algorithms are accepted (RS256 with an RSA key, ES256 with a P-256 key), and only
those that fit the configured key: a token naming `none`, `HS256` (the public key used as an HMAC
secret) or the other key type's algorithm is refused before any signature is computed.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from django.core.exceptions import ImproperlyConfigured
from jwt.exceptions import InvalidSubjectError

SUPPORTED_ALGORITHMS = ("RS256", "ES256")
REQUIRED_CLAIMS = ("exp", "sub", "iss", "aud")
MIN_RSA_BITS = 2048
# A JWS in compact serialization: three base64url parts (the signature is empty for alg "none").
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


@dataclass(frozen=True)
class JWTConfig:
    """How to verify identity-service tokens: the public key, what it may sign with, and for whom."""

    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey = field(repr=False)
    issuer: str
    audience: str
    algorithms: tuple[str, ...]
    leeway: int = 30


def looks_like_jwt(credential: str) -> bool:
    return _COMPACT_JWS.fullmatch(credential) is not None


def jwt_config(
    *,
    public_key: str = "",
    public_key_file: str = "",
    issuer: str = "",
    audience: str = "",
    algorithms: list[str] | tuple[str, ...] = SUPPORTED_ALGORITHMS,
    leeway: int = 30,
) -> JWTConfig | None:
    """The JWT configuration from the NUCLEUS_JWT_* variables; None when no key is set (JWTs are off).

    Raises ImproperlyConfigured, saying what to change, for anything that would not verify tokens.
    """
    if public_key and public_key_file:
        raise ImproperlyConfigured(
            "Both NUCLEUS_JWT_PUBLIC_KEY and NUCLEUS_JWT_PUBLIC_KEY_FILE are set: set only one of them."
        )
    if not public_key and not public_key_file:
        if issuer or audience:
            raise ImproperlyConfigured(
                "NUCLEUS_JWT_ISSUER or NUCLEUS_JWT_AUDIENCE is set but no public key: set "
                "NUCLEUS_JWT_PUBLIC_KEY (PEM) or NUCLEUS_JWT_PUBLIC_KEY_FILE to accept identity-service "
                "JWTs, or unset both to accept Nucleus tokens only."
            )
        return None
    if public_key_file:
        source = f"NUCLEUS_JWT_PUBLIC_KEY_FILE={public_key_file}"
        try:
            pem = Path(public_key_file).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise ImproperlyConfigured(
                f"{source} cannot be read ({exc}): point it at a readable PEM file holding the identity "
                "service's public key (-----BEGIN PUBLIC KEY-----)."
            ) from None
    else:
        source = "NUCLEUS_JWT_PUBLIC_KEY"
        # Environment files cannot always hold newlines: accept them written as \n.
        pem = public_key.replace("\\n", "\n")
    key = _public_key(pem, source)
    missing = [name for name, value in (("ISSUER", issuer), ("AUDIENCE", audience)) if not value]
    if missing:
        names = " and ".join(f"NUCLEUS_JWT_{name}" for name in missing)
        raise ImproperlyConfigured(
            f"{source} is set but {names} is not: set it to the identity service's `iss` and to the "
            "`aud` its tokens for Nucleus carry, e.g. NUCLEUS_JWT_ISSUER=https://id.example.com "
            "NUCLEUS_JWT_AUDIENCE=nucleus."
        )
    unknown = [name for name in algorithms if name not in SUPPORTED_ALGORITHMS]
    if unknown or not algorithms:
        raise ImproperlyConfigured(
            f"NUCLEUS_JWT_ALGORITHMS={','.join(algorithms)!r} is not allowed: list RS256, ES256 or both "
            "(symmetric algorithms and none are never accepted)."
        )
    usable = tuple(name for name in algorithms if name == _algorithm_of(key))
    if not usable:
        raise ImproperlyConfigured(
            f"{source} is a key for {_algorithm_of(key)}, but NUCLEUS_JWT_ALGORITHMS allows only "
            f"{','.join(algorithms)}: add {_algorithm_of(key)}, or configure the matching key."
        )
    if leeway < 0:
        raise ImproperlyConfigured("NUCLEUS_JWT_LEEWAY_SECONDS must be 0 or more (seconds of clock skew).")
    return JWTConfig(public_key=key, issuer=issuer, audience=audience, algorithms=usable, leeway=leeway)


def _public_key(pem: str, source: str):
    try:
        key = load_pem_public_key(pem.strip().encode("ascii"))
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise ImproperlyConfigured(
            f"{source} is not a PEM public key ({exc}). Give the identity service's public key, the "
            "block from -----BEGIN PUBLIC KEY----- to -----END PUBLIC KEY-----; never a private key."
        ) from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ImproperlyConfigured(
                f"{source} is a {key.key_size}-bit RSA key: RS256 needs at least {MIN_RSA_BITS} bits."
            )
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise ImproperlyConfigured(
        f"{source} is a {type(key).__name__.removeprefix('_')}: use an RSA key (RS256) or an EC P-256 "
        "key (ES256)."
    )


def _algorithm_of(key) -> str:
    return "RS256" if isinstance(key, rsa.RSAPublicKey) else "ES256"


class JWTRejected(Exception):
    """A token that does not authenticate anyone; the message says why, for the 401 problem."""


# Why a token is refused, most specific class first (several derive from InvalidTokenError).
_REASONS = (
    (jwt.InvalidAlgorithmError, "The token's algorithm is not accepted; sign with {algorithms}."),
    (jwt.InvalidSignatureError, "The token's signature is not valid."),
    (jwt.ExpiredSignatureError, "The token has expired."),
    (jwt.ImmatureSignatureError, "The token is not valid yet."),
    (jwt.InvalidIssuerError, "The token was not issued by the expected issuer."),
    (jwt.InvalidAudienceError, "The token is not meant for this audience."),
    (InvalidSubjectError, "The token's subject (sub) must be a service name."),
    (jwt.DecodeError, "The token is malformed."),
    (jwt.InvalidTokenError, "The token is not valid."),
)


def jwt_claims(token: str, config: JWTConfig) -> dict:
    """The verified claims of token (signature, algorithm, exp, nbf, iat, iss, aud, sub); else JWTRejected."""
    try:
        return jwt.decode(
            token,
            key=config.public_key,
            algorithms=list(config.algorithms),
            issuer=config.issuer,
            audience=config.audience,
            leeway=config.leeway,
            options={"require": list(REQUIRED_CLAIMS)},
        )
    except jwt.MissingRequiredClaimError as exc:
        raise JWTRejected(f"The token lacks the required claim {exc.claim!r}.") from None
    except jwt.PyJWTError as exc:
        for error_class, reason in _REASONS:
            if isinstance(exc, error_class):
                raise JWTRejected(reason.format(algorithms=" or ".join(config.algorithms))) from None
        raise JWTRejected("The token is not valid.") from None
