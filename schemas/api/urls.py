"""Routes of the schema registry under /api/v1/."""

from core.api.urls import route
from schemas.api import views

urlpatterns = [
    *route("schemas/", views.SchemaListView.as_view(), "schema-list"),
    *route("schemas/<str:name>/", views.SchemaDetailView.as_view(), "schema-detail"),
    *route("schemas/<str:name>/versions/", views.SchemaVersionListView.as_view(), "schema-version-list"),
    *route(
        "schemas/<str:name>/versions/<str:version>/",
        views.SchemaVersionDetailView.as_view(),
        "schema-version-detail",
    ),
    *route(
        "schemas/<str:name>/compatibility/", views.SchemaCompatibilityView.as_view(), "schema-compatibility"
    ),
    *route("system/migrations/", views.MigrationStatusView.as_view(), "system-migrations"),
]
