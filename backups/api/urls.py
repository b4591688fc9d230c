"""Routes of the backups API under /api/v1/."""

from backups.api import views
from core.api.urls import route

urlpatterns = [
    *route("backups/", views.BackupListView.as_view(), "backup-list"),
    *route("backups/<str:backup_id>/", views.BackupDetailView.as_view(), "backup-detail"),
    *route("backups/<str:backup_id>/verify/", views.BackupVerifyView.as_view(), "backup-verify"),
    *route("backups/<str:backup_id>/restore/", views.BackupRestoreView.as_view(), "backup-restore"),
]
