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
            "description": "A Nucleus service token (it starts with nuc_): Authorization: Bearer <token>.",
        }


class IdentityJWTScheme(OpenApiAuthenticationExtension):
    target_class = "core.authentication.IdentityJWTAuthentication"
    name = "IdentityJWT"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": (
                "A JWT from the ecosystem's identity service, where the deployment configures one "
                "(NUCLEUS_JWT_PUBLIC_KEY, NUCLEUS_JWT_ISSUER, NUCLEUS_JWT_AUDIENCE): "
                "Authorization: Bearer <JWT>, signed RS256 or ES256, with `iss` and `aud` as configured, "
                "`exp`, and `sub` naming an active service, which the request then acts as."
            ),
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
