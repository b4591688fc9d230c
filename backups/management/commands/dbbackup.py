"""manage.py dbbackup: django-dbbackup's command, writing a manifest beside every dump and a catalog entry.

Every option of django-dbbackup works as documented there, except --encrypt (use encrypted storage).
--clean applies Nucleus' retention (NUCLEUS_BACKUP_KEEP newest per engine, NUCLEUS_BACKUP_KEEP_DAYS).
"""

from dbbackup.management.commands import dbbackup as dbbackup_command
from dbbackup.management.commands._base import make_option
from dbbackup.signals import post_backup, pre_backup
from django.core.management.base import CommandError
from django.db import connection

from backups import services
from backups.management.commands._common import (
    command_error,
    dbbackup_storage,
    human_size,
    quiet_service_logs,
)
from backups.models import BackupKind
from core.errors import NucleusError
from core.management.commands._common import database_reason
from core.principals import Actor


class Command(dbbackup_command.Command):
    help = (
        "Back up the database into backup storage, with a manifest beside the dump (size, sha256, engine, "
        "migrations, row counts) and an entry in the backup catalog."
    )
    # No system checks before a backup or a restore: they import every URL, view and admin of the
    # project (about a third of the start-up time); `manage.py check` and /readyz cover configuration.
    requires_system_checks = []
    option_list = (
        *dbbackup_command.Command.option_list,
        make_option(
            "--note", default="", help="A note stored in the manifest, e.g. why this backup was taken."
        ),
    )

    def handle(self, **options):
        if options.get("encrypt"):
            raise CommandError(
                "--encrypt is not supported by Nucleus backups: keep the backup storage encrypted."
            )
        if (options.get("output_path") or "").startswith("s3://"):
            raise CommandError(
                "--output-path takes a local path; configure S3 as STORAGES['dbbackup'] instead."
            )
        quiet_service_logs(int(options.get("verbosity", 1)))
        self.note = options.get("note", "")
        self.actor = Actor.system("dbbackup")
        try:
            with database_reason():
                # Checked before dumping: a backup the catalog cannot record would be left behind.
                if not services.catalog_tables_exist():
                    raise CommandError("The backup catalog tables do not exist: run manage.py migrate first.")
                # dbbackup's handle, without its decorator, which logs failures with a traceback: a
                # failing command says why in one line.
                dbbackup_command.Command.handle.__wrapped__(self, **options)
        except NucleusError as exc:
            raise command_error(exc)
        finally:
            connection.close()

    def _save_new_backup(self, database):
        self.storage = dbbackup_storage()
        alias = self.connector.database_name
        pre_backup.send(
            sender=self.__class__, database=database, connector=self.connector, servername=self.servername
        )
        options = {
            "actor": self.actor,
            "note": self.note,
            "compress": self.compress,
            "alias": alias,
            "exclude": list(self.connector.exclude),
            "schemas": list(self.schemas or ()),
        }
        if self.path:
            manifest = services.backup_export(path=self.path, **options)
            filename, summary = self.path, f"{manifest['id']}: {self.path} ({human_size(manifest['size'])})"
        else:
            backup = services.backup_create(
                kind=BackupKind.COMMAND, servername=self.servername, filename=self.filename, **options
            )
            filename = backup.file
            summary = f"{backup.id}: {backup.file} ({human_size(backup.size)}, {backup.duration_ms} ms)"
        if not self.quiet:
            self.stdout.write(f"Backed up {database['NAME']} as {summary}, manifest beside it.")
        post_backup.send(
            sender=self.__class__,
            database=database,
            connector=self.connector,
            servername=self.servername,
            filename=filename,
            storage=self.storage,
        )

    def _cleanup_old_backups(self, database=None, servername=None):
        deleted = services.backups_apply_retention(actor=self.actor)
        if deleted and not self.quiet:
            self.stdout.write(f"Retention deleted {len(deleted)} backups: {', '.join(deleted)}.")
