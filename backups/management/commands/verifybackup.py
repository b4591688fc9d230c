"""manage.py verifybackup [ID|latest]: checksum, test restore into a scratch database, row counts."""

from django.core.management.base import BaseCommand, CommandError

from backups import selectors, services
from backups.management.commands._common import command_error, quiet_service_logs
from backups.models import Backup
from core.errors import NucleusError
from core.principals import Actor


class Command(BaseCommand):
    help = (
        "Verify a backup: its sha256 against the manifest, then a restore into a scratch database (or a "
        "temporary SQLite file) whose row counts must equal the manifest's; the scratch copy is dropped. "
        "Exits non-zero if any check fails."
    )

    def add_arguments(self, parser):
        parser.add_argument("backup", nargs="?", default="latest", help="A backup id, or latest (default).")

    def handle(self, *args, backup, **options):
        quiet_service_logs(int(options["verbosity"]))
        if not services.catalog_tables_exist():
            raise CommandError("The catalog tables do not exist: run manage.py migrate first.")
        chosen = self._backup(backup)
        try:
            result = services.backup_verify(backup=chosen, actor=Actor.system("verifybackup"))
        except NucleusError as exc:
            raise command_error(exc)
        for check in result["checks"]:
            self.stdout.write(f"{'ok  ' if check['ok'] else 'FAIL'} {check['name']:10} {check['detail']}")
        if not result["ok"]:
            failed = next(check for check in result["checks"] if not check["ok"])
            raise CommandError(
                f"Backup {chosen.id} failed verification: {failed['name']}: {failed['detail']}"
            )
        self.stdout.write(f"Backup {chosen.id} verified in {result['duration_ms']} ms.")

    def _backup(self, wanted: str) -> Backup:
        for attempt in range(2):
            if wanted == "latest":
                found = selectors.backup_latest(engine=services.live_engine(), usable_only=False)
            else:
                found = Backup.objects.filter(pk=wanted).first()
            if found is not None:
                return found
            if attempt == 0:
                services.catalog_rebuild()  # perhaps storage has it and the catalog does not yet
        raise CommandError(
            f"There is no {services.live_engine()} backup to verify."
            if wanted == "latest"
            else f"There is no backup {wanted!r} in backup storage."
        )
