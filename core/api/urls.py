"""Routes of /api/v1/: every path answers with and without its trailing slash, without redirects."""

from django.urls import path

from core.api import views


def route(pattern: str, view, name: str) -> list:
    """The named route with a trailing slash, and the same view without it (left out of the OpenAPI)."""
    return [
        path(pattern, view, name=name),
        path(pattern.rstrip("/"), view),
    ]


urlpatterns = [
    *route("collections/", views.CollectionListView.as_view(), "collection-list"),
    *route("collections/<str:name>/", views.CollectionDetailView.as_view(), "collection-detail"),
    *route("collections/<str:name>/grants/", views.GrantListView.as_view(), "grant-list"),
    *route("collections/<str:name>/grants/<str:service>/", views.GrantDetailView.as_view(), "grant-detail"),
    *route("collections/<str:name>/records/", views.RecordListView.as_view(), "record-list"),
    *route("collections/<str:name>/records/bulk/", views.RecordBulkView.as_view(), "record-bulk"),
    *route("collections/<str:name>/records/<str:key>/", views.RecordDetailView.as_view(), "record-detail"),
    *route(
        "collections/<str:name>/records/<str:key>/history/",
        views.RecordHistoryView.as_view(),
        "record-history",
    ),
    *route(
        "collections/<str:name>/records/<str:key>/revert/", views.RecordRevertView.as_view(), "record-revert"
    ),
    *route("collections/<str:name>/events/", views.EventListView.as_view(), "event-list"),
    *route("collections/<str:name>/consumers/", views.ConsumerListView.as_view(), "consumer-list"),
    *route(
        "collections/<str:name>/consumers/<str:consumer>/",
        views.ConsumerDetailView.as_view(),
        "consumer-detail",
    ),
    *route("transactions/", views.TransactionView.as_view(), "transaction-list"),
]
