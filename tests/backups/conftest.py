"""Every backup test writes into its own backup folder, through the storage Django configures."""

import pytest


@pytest.fixture(autouse=True)
def backup_dir(tmp_path, settings):
    folder = tmp_path / "backups"
    settings.NUCLEUS_BACKUP_DIR = folder
    settings.STORAGES = {
        **settings.STORAGES,
        "dbbackup": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(folder), "file_permissions_mode": 0o600},
        },
    }
    return folder
