"""Root URLs: the API under /api/v1/, its OpenAPI document, health checks, metrics and the admin."""

from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_update
from django.contrib import admin
from django.urls import include, path, re_path
from django.views.defaults import page_not_found, server_error
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

# core.api.openapi registers the OpenAPI authentication extensions; it is imported here, not in an
# AppConfig, so that management commands (dbbackup, dbrestore) do not pay for drf-spectacular.
import core.api.openapi  # noqa: F401 - imported for its side effect
from core.api.system import api_not_found, api_server_error, database_error_response, healthz, readyz
from core.metrics import metrics
from schemas.admin import migration_status_view

admin.autodiscover()  # INSTALLED_APPS has SimpleAdminConfig: the admin modules are loaded here

# The API's viewers, from drf-spectacular-sidecar's files (no CDN). Swagger UI's set-up script is a file
# too (?script), so it runs under the site's policy as it is. Redoc styles itself with inline styles
# (styled-components) and searches in a worker made from a blob: URL: its page allows exactly these two
# on top (docs/hardening.md); scripts stay 'self' only on both.
api_docs = SpectacularSwaggerSplitView.as_view(
    url_name="openapi-schema", template_name="nucleus/swagger_ui.html"
)
api_redoc = csp_update({"style-src": [UNSAFE_INLINE], "worker-src": [SELF, "blob:"]})(
    SpectacularRedocView.as_view(url_name="openapi-schema", template_name="nucleus/redoc.html")
)

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("healthz/", healthz),
    path("readyz", readyz, name="readyz"),
    path("readyz/", readyz),
    path("api/v1/", include("core.api.urls")),
    path("api/v1/", include("schemas.api.urls")),
    path("api/v1/", include("backups.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="openapi-schema"),
    path("api/schema", SpectacularAPIView.as_view()),
    path("api/docs/", api_docs, name="openapi-docs"),
    path("api/docs", api_docs),
    path("api/redoc/", api_redoc, name="openapi-redoc"),
    path("api/redoc", api_redoc),
    path("metrics", metrics, name="metrics"),
    path("metrics/", metrics),
    path("admin/migrations/", admin.site.admin_view(migration_status_view), name="admin-migrations"),
    path("admin/", admin.site.urls),
    # Anything else under /api/ is a problem+json 404, also while DEBUG shows HTML pages elsewhere.
    re_path(r"^api/", api_not_found),
]


def handler404(request, exception):
    if request.path.startswith("/api/"):
        return api_not_found(request, exception)
    return page_not_found(request, exception)


def handler500(request):
    if (unavailable := database_error_response(request)) is not None:
        return unavailable
    if request.path.startswith("/api/"):
        return api_server_error(request)
    return server_error(request)
