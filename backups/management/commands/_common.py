"""What the backup commands share: one-line failures and quiet service logs."""

import logging

from django.core.management.base import CommandError

from backups.storage import backup_storage, human_size  # noqa: F401 (shared by the commands)
from core.errors import NucleusError


def quiet_service_logs(verbosity: int) -> None:
    """The services log each step; a command shows them only with --verbosity 2 or more."""
    logging.getLogger("nucleus.backups").setLevel(logging.INFO if verbosity >= 2 else logging.WARNING)


def command_error(exc: NucleusError) -> CommandError:
    """A refusal as the one-line reason a command exits non-zero with."""
    return CommandError(f"{exc.detail} ({exc.code})".replace("\n", " "))


def dbbackup_storage():
    """django-dbbackup's storage wrapper (its listing and filters) around the storage Nucleus uses."""
    from dbbackup.storage import get_storage

    wrapper = get_storage()
    wrapper.storage = backup_storage()
    return wrapper
