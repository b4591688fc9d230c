"""DRF authentication: service bearer tokens, identity-service JWTs, and operators' admin sessions."""

import re

from django.conf import settings
from django.utils import timezone
from rest_framework import authentication, exceptions

from core.identity import JWTRejected, jwt_claims, looks_like_jwt
from core.models import SERVICE_NAME_PATTERN, Service
from core.principals import Principal
from core.selectors import token_lookup
from core.services import token_touch
from core.tokens import TOKEN_PREFIX

# Checked before the lookup: a subject holding a NUL or a lone surrogate cannot even be sent to the database.
_SERVICE_NAME = re.compile(SERVICE_NAME_PATTERN[:-1] + r"\Z")


def _bearer(request) -> str | None:
    """The credential of an `Authorization: Bearer <credential>` header, or None for other schemes."""
    header = authentication.get_authorization_header(request).split()
    if not header or header[0].lower() != b"bearer":
        return None
    if len(header) != 2:
        raise exceptions.AuthenticationFailed("The Authorization header must be: Bearer <token>.")
    try:
        return header[1].decode("ascii")
    except UnicodeDecodeError:
        raise exceptions.AuthenticationFailed("The token is not valid.")


class IdentityJWTAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <JWT>` from the identity service: its `sub` names the calling service.

    Active only when settings.NUCLEUS_JWT is configured. It claims a bearer credential that is shaped
    like a JWT and does not start with "nuc_"; everything else is left to ServiceTokenAuthentication,
    which also refuses a JWT while JWTs are not configured ("The token is not valid."). A JWT whose
    service is unknown or inactive gets 401 like a revoked token.
    """

    def authenticate(self, request):
        config = settings.NUCLEUS_JWT
        if config is None:
            return None
        credential = _bearer(request)
        if credential is None or credential.startswith(TOKEN_PREFIX) or not looks_like_jwt(credential):
            return None
        try:
            claims = jwt_claims(credential, config)
        except JWTRejected as exc:
            raise exceptions.AuthenticationFailed(str(exc))
        if not _SERVICE_NAME.match(claims["sub"]):
            raise exceptions.AuthenticationFailed("The token's subject (sub) must be a service name.")
        service = Service.objects.filter(name=claims["sub"]).first()
        if service is None:
            raise exceptions.AuthenticationFailed("The token's subject is not a Nucleus service.")
        if not service.is_active:
            raise exceptions.AuthenticationFailed("The service is inactive.")
        return Principal(service=service), claims

    def authenticate_header(self, request):
        return 'Bearer realm="nucleus"'


class ServiceTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <token>`; inactive services, revoked and expired tokens get 401."""

    def authenticate(self, request):
        plain = _bearer(request)
        if plain is None:
            return None
        token = token_lookup(plain)
        now = timezone.now()
        if token is None:
            raise exceptions.AuthenticationFailed("The token is not valid.")
        if token.revoked_at is not None:
            raise exceptions.AuthenticationFailed("The token has been revoked.")
        if token.expires_at is not None and token.expires_at <= now:
            raise exceptions.AuthenticationFailed("The token has expired.")
        if not token.service.is_active:
            raise exceptions.AuthenticationFailed("The service is inactive.")
        token_touch(token=token, now=now)
        return Principal(service=token.service, token=token), token

    def authenticate_header(self, request):
        return 'Bearer realm="nucleus"'


class OperatorSessionAuthentication(authentication.SessionAuthentication):
    """An operator (active staff user) signed in to the admin; CSRF applies as usual."""

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is None:
            return None
        user, _ = result
        if not user.is_staff:
            return None
        return Principal(user=user), None
