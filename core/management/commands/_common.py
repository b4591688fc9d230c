"""What Nucleus' commands share: a database that cannot serve them is a one-line reason, not a traceback."""

from collections.abc import Iterator
from contextlib import contextmanager

from django.core.management.base import CommandError
from django.db import DatabaseError


@contextmanager
def database_reason() -> Iterator[None]:
    """Turns a database error into a CommandError: "run manage.py migrate" when migrations are pending.

    Costs nothing unless the database fails; then one read of the applied migrations. --traceback
    still shows the original error.
    """
    try:
        yield
    except DatabaseError as exc:
        from core.status import pending_migrations  # the migration loader, only on this rare path

        try:
            pending = pending_migrations()
        except DatabaseError:
            pending = []
        if pending:
            raise CommandError(
                f"The database is not migrated ({len(pending)} migrations pending): "
                "run manage.py migrate first."
            ) from exc
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CommandError(f"The database failed: {reason}") from exc
