"""drf-spectacular hooks."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


def only_canonical_paths(endpoints, **kwargs):
    """Document each API path once: the slash-less twins serve the same views."""
    return [
        endpoint
        for endpoint in endpoints
        if endpoint[0].endswith("/") or not endpoint[0].startswith("/api/v1/")
    ]


class ServiceTokenScheme(OpenApiAuthenticationExtension):
    target_class = "core.authentication.ServiceTokenAuthentication"
    name = "ServiceToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A service token: Authorization: Bearer <token>.",
        }


class OperatorSessionScheme(OpenApiAuthenticationExtension):
    target_class = "core.authentication.OperatorSessionAuthentication"
    name = "OperatorSession"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": "sessionid",
            "description": "An operator's admin session.",
        }
