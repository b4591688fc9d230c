"""DRF authentication: service bearer tokens, and operators' admin sessions."""

from django.utils import timezone
from rest_framework import authentication, exceptions

from core.principals import Principal
from core.selectors import token_lookup
from core.services import token_touch


class ServiceTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <token>`; inactive services, revoked and expired tokens get 401."""

    keyword = "bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("The Authorization header must be: Bearer <token>.")
        try:
            plain = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("The token is not valid.")
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
