"""manage.py truncate_stream NAME --before OFFSET [--force]: drop a stream's oldest events."""

from django.core.management.base import BaseCommand, CommandError

from core import services
from core.errors import NucleusError
from core.management.commands._common import database_reason
from core.models import Collection


class Command(BaseCommand):
    help = (
        "Delete the events of stream NAME with offsets below OFFSET. Refuses while a consumer has not "
        "processed them, unless --force. Offsets are never reused."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="The stream collection.")
        parser.add_argument("--before", type=int, required=True, help="Keep events from this offset on.")
        parser.add_argument("--force", action="store_true", help="Drop events consumers have not processed.")

    def handle(self, *args, name, before, force, **options):
        with database_reason():
            stream = Collection.objects.filter(name=name).first()
            if stream is None:
                raise CommandError(f"There is no collection {name!r}.")
            try:
                removed = services.stream_truncate(stream=stream, before=before, force=force)
            except NucleusError as exc:
                raise CommandError(exc.detail)
            stream.refresh_from_db()
        self.stdout.write(
            f"Removed {removed} events of {name} before offset {before}; last offset is {stream.last_offset}."
        )
