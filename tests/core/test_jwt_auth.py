"""Bearer JWTs from the identity service: who they authenticate, every reason they are refused, and
the configuration that start-up accepts or refuses."""

import base64
import hashlib
import hmac
import json
import re
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from django.core.exceptions import ImproperlyConfigured
from rest_framework.test import APIClient

from core.identity import jwt_config
from core.models import Record, Service

ISSUER = "https://id.example.test"
AUDIENCE = "nucleus"
COLLECTIONS = "/api/v1/collections/"
UNSET = object()


def public_pem(private_key) -> str:
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def private_pem(private_key) -> str:
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def rsa_configured(settings, rsa_key):
    """Nucleus accepts RS256 tokens of the identity service (the default algorithms)."""
    settings.NUCLEUS_JWT = jwt_config(public_key=public_pem(rsa_key), issuer=ISSUER, audience=AUDIENCE)
    return settings.NUCLEUS_JWT


@pytest.fixture
def ec_configured(settings, ec_key):
    """Nucleus accepts ES256 tokens of the identity service."""
    settings.NUCLEUS_JWT = jwt_config(public_key=public_pem(ec_key), issuer=ISSUER, audience=AUDIENCE)
    return settings.NUCLEUS_JWT


def claims(**overrides) -> dict:
    """Valid claims for the service `owner`; an override of UNSET leaves that claim out."""
    now = int(time.time())
    values = {"iss": ISSUER, "aud": AUDIENCE, "sub": "owner", "iat": now, "exp": now + 300}
    values.update(overrides)
    return {name: value for name, value in values.items() if value is not UNSET}


def mint(key, algorithm: str = "RS256", **overrides) -> str:
    return jwt.encode(claims(**overrides), key, algorithm=algorithm)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unsigned_parts(algorithm: str, **overrides) -> str:
    header = b64url(json.dumps({"alg": algorithm, "typ": "JWT"}).encode())
    return f"{header}.{b64url(json.dumps(claims(**overrides)).encode())}"


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def assert_refused(response, detail: str) -> None:
    assert response.status_code == 401, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response["WWW-Authenticate"] == 'Bearer realm="nucleus"'
    assert response.json() == {
        "type": "urn:nucleus:problem:not_authenticated",
        "title": "Not authenticated",
        "status": 401,
        "detail": detail,
        "code": "not_authenticated",
    }


# Accepted ---------------------------------------------------------------------------------------


def test_rs256_token_authenticates_as_the_service_it_names(rsa_configured, rsa_key, items):
    response = bearer(mint(rsa_key)).get(COLLECTIONS)
    assert response.status_code == 200, response.content
    assert [collection["name"] for collection in response.json()["results"]] == ["items"]


def test_es256_token_authenticates_as_the_service_it_names(ec_configured, ec_key, items):
    response = bearer(mint(ec_key, "ES256")).get(COLLECTIONS)
    assert response.status_code == 200, response.content
    assert [collection["name"] for collection in response.json()["results"]] == ["items"]


def test_jwt_writes_are_recorded_as_the_service(rsa_configured, rsa_key, items):
    response = bearer(mint(rsa_key)).post(
        f"{COLLECTIONS}items/records/", {"key": "a", "data": {"n": 1}}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["created_by"] == "service:owner"
    assert Record.objects.get(key="a").created_by == "service:owner"


def test_jwt_of_another_service_has_that_service_s_access(rsa_configured, rsa_key, items, outsider):
    assert bearer(mint(rsa_key, sub="reader")).get(f"{COLLECTIONS}items/").status_code == 200
    reader_write = bearer(mint(rsa_key, sub="reader")).post(
        f"{COLLECTIONS}items/records/", {"data": {}}, format="json"
    )
    assert reader_write.status_code == 403
    assert bearer(mint(rsa_key, sub="outsider")).get(f"{COLLECTIONS}items/").status_code == 404


def test_audience_may_be_a_list_that_contains_nucleus(rsa_configured, rsa_key, owner):
    response = bearer(mint(rsa_key, aud=["billing", AUDIENCE])).get(COLLECTIONS)
    assert response.status_code == 200, response.content


def test_nucleus_tokens_keep_working_while_jwts_are_configured(rsa_configured, owner):
    assert owner.get(COLLECTIONS).status_code == 200


# Refused ----------------------------------------------------------------------------------------


def test_token_signed_by_another_key_is_refused(rsa_configured, other_rsa_key, owner):
    assert_refused(bearer(mint(other_rsa_key)).get(COLLECTIONS), "The token's signature is not valid.")


def test_token_with_altered_claims_is_refused(rsa_configured, rsa_key, owner):
    header, _, signature = mint(rsa_key, sub="reader").split(".")
    forged_payload = b64url(json.dumps(claims(sub="owner")).encode())
    forged = f"{header}.{forged_payload}.{signature}"
    assert_refused(bearer(forged).get(COLLECTIONS), "The token's signature is not valid.")


def test_token_from_another_issuer_is_refused(rsa_configured, rsa_key, owner):
    token = mint(rsa_key, iss="https://evil.example.test")
    assert_refused(bearer(token).get(COLLECTIONS), "The token was not issued by the expected issuer.")


def test_token_for_another_audience_is_refused(rsa_configured, rsa_key, owner):
    token = mint(rsa_key, aud="billing")
    assert_refused(bearer(token).get(COLLECTIONS), "The token is not meant for this audience.")


def test_expired_token_is_refused(rsa_configured, rsa_key, owner):
    token = mint(rsa_key, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)
    assert_refused(bearer(token).get(COLLECTIONS), "The token has expired.")


def test_token_not_valid_yet_is_refused(rsa_configured, rsa_key, owner):
    token = mint(rsa_key, nbf=int(time.time()) + 3600)
    assert_refused(bearer(token).get(COLLECTIONS), "The token is not valid yet.")


@pytest.mark.parametrize("claim", ["sub", "exp", "iss", "aud"])
def test_token_without_a_required_claim_is_refused(rsa_configured, rsa_key, owner, claim):
    token = mint(rsa_key, **{claim: UNSET})
    assert_refused(bearer(token).get(COLLECTIONS), f"The token lacks the required claim {claim!r}.")


def test_token_whose_subject_is_not_a_string_is_refused(rsa_configured, rsa_key, owner):
    token = mint(rsa_key, sub=42)
    assert_refused(bearer(token).get(COLLECTIONS), "The token's subject (sub) must be a service name.")


@pytest.mark.parametrize(
    "subject",
    ["\x00", "owner\x00", "\ud800", "owner\udfff", "", "Owner", "owner\n", "o" * 5000],
    ids=["nul", "nul-after-name", "high-surrogate", "low-surrogate", "empty", "upper", "newline", "long"],
)
def test_it_refuses_a_signed_token_whose_subject_cannot_be_a_service_name(
    rsa_configured, rsa_key, owner, subject
):
    # Validly signed: only the subject is wrong. A NUL or a lone surrogate once reached the database (500).
    token = mint(rsa_key, sub=subject)
    assert_refused(bearer(token).get(COLLECTIONS), "The token's subject (sub) must be a service name.")


def test_token_for_an_unknown_service_is_refused(rsa_configured, rsa_key, owner):
    token = mint(rsa_key, sub="nobody")
    assert_refused(bearer(token).get(COLLECTIONS), "The token's subject is not a Nucleus service.")


def test_token_for_an_inactive_service_is_refused(rsa_configured, rsa_key, owner):
    Service.objects.filter(name="owner").update(is_active=False)
    assert_refused(bearer(mint(rsa_key)).get(COLLECTIONS), "The service is inactive.")


def test_unsigned_token_alg_none_is_refused(rsa_configured, owner):
    token = unsigned_parts("none") + "."
    assert_refused(bearer(token).get(COLLECTIONS), "The token's algorithm is not accepted; sign with RS256.")


def test_hs256_token_keyed_with_the_public_key_is_refused(rsa_configured, rsa_key, owner):
    """Algorithm confusion: the public key, known to everyone, used as an HMAC secret."""
    signing_input = unsigned_parts("HS256")
    secret = public_pem(rsa_key).encode("ascii")
    signature = b64url(hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest())
    token = f"{signing_input}.{signature}"
    assert_refused(bearer(token).get(COLLECTIONS), "The token's algorithm is not accepted; sign with RS256.")


def test_es256_token_is_refused_when_the_key_is_rsa(rsa_configured, ec_key, owner):
    assert_refused(
        bearer(mint(ec_key, "ES256")).get(COLLECTIONS),
        "The token's algorithm is not accepted; sign with RS256.",
    )


def test_malformed_jwt_is_refused(rsa_configured, owner):
    assert_refused(bearer("eyJub3QiOiJqc29u.e30.c2ln").get(COLLECTIONS), "The token is malformed.")


def test_jwt_is_just_an_invalid_token_while_jwts_are_not_configured(settings, rsa_key, owner):
    settings.NUCLEUS_JWT = None
    assert_refused(bearer(mint(rsa_key)).get(COLLECTIONS), "The token is not valid.")


def test_unknown_nucleus_token_is_not_read_as_a_jwt(rsa_configured, owner):
    assert_refused(bearer("nuc_a.b.c").get(COLLECTIONS), "The token is not valid.")


# Configuration ----------------------------------------------------------------------------------


def test_no_key_means_jwts_are_off():
    assert jwt_config() is None


def test_key_may_be_given_as_a_file(tmp_path, ec_key):
    path = tmp_path / "identity.pem"
    path.write_text(public_pem(ec_key))
    config = jwt_config(public_key_file=str(path), issuer=ISSUER, audience=AUDIENCE)
    assert config.algorithms == ("ES256",)
    assert (config.issuer, config.audience) == (ISSUER, AUDIENCE)


def test_key_may_be_given_with_escaped_newlines(rsa_key):
    one_line = public_pem(rsa_key).replace("\n", "\\n")
    assert jwt_config(public_key=one_line, issuer=ISSUER, audience=AUDIENCE).algorithms == ("RS256",)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"public_key_file": "/nonexistent/identity.pem"}, "NUCLEUS_JWT_PUBLIC_KEY_FILE=/nonexistent"),
        ({"public_key": "not a pem"}, "NUCLEUS_JWT_PUBLIC_KEY is not a PEM public key"),
        ({"issuer": ""}, "NUCLEUS_JWT_ISSUER is not: set it"),
        ({"audience": ""}, "NUCLEUS_JWT_AUDIENCE is not: set it"),
        ({"algorithms": ["RS256", "HS256"]}, "list RS256, ES256 or both"),
        ({"algorithms": ["none"]}, "list RS256, ES256 or both"),
        ({"algorithms": ["ES256"]}, "allows only ES256: add RS256"),
        ({"leeway": -1}, "NUCLEUS_JWT_LEEWAY_SECONDS"),
    ],
)
def test_misconfiguration_says_how_to_fix_it(rsa_key, arguments, message):
    values = {"public_key": public_pem(rsa_key), "issuer": ISSUER, "audience": AUDIENCE, **arguments}
    if "public_key_file" in arguments:
        del values["public_key"]
    with pytest.raises(ImproperlyConfigured) as raised:
        jwt_config(**values)
    assert message in str(raised.value)


def test_a_private_key_is_refused(rsa_key):
    with pytest.raises(ImproperlyConfigured, match="never a private key"):
        jwt_config(public_key=private_pem(rsa_key), issuer=ISSUER, audience=AUDIENCE)


def test_weak_or_unsupported_keys_are_refused():
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ImproperlyConfigured, match="1024-bit RSA key"):
        jwt_config(public_key=public_pem(small), issuer=ISSUER, audience=AUDIENCE)
    for key in (ec.generate_private_key(ec.SECP384R1()), ed25519.Ed25519PrivateKey.generate()):
        with pytest.raises(ImproperlyConfigured, match=re.escape("RSA key (RS256) or an EC P-256")):
            jwt_config(public_key=public_pem(key), issuer=ISSUER, audience=AUDIENCE)


def test_key_and_key_file_together_are_refused(tmp_path, rsa_key):
    with pytest.raises(ImproperlyConfigured, match="set only one"):
        jwt_config(public_key=public_pem(rsa_key), public_key_file=str(tmp_path / "k.pem"))


def test_issuer_without_a_key_is_refused():
    with pytest.raises(ImproperlyConfigured, match="no public key"):
        jwt_config(issuer=ISSUER, audience=AUDIENCE)
