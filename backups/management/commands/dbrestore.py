"""manage.py dbrestore: django-dbbackup's command, refusing corrupt or foreign dumps and recording restores.

Before anything is touched, the manifest's signature must hold (backups.signing), the dump's sha256
and size must match its manifest, the dump must be of this engine and readable, and every migration it
holds must be known to this code; otherwise the command exits non-zero with a one-line reason. Without
--input-filename/--input-path it restores the newest usable backup of this engine with a signed
manifest. --safety-backup takes a backup of the current database first (the API and the admin always
do). --decrypt is not supported.
"""

from dbbackup.management.commands import dbrestore as dbrestore_command
from dbbackup.management.commands._base import make_option
from dbbackup.signals import post_restore, pre_restore
from django.core.management.base import CommandError

from backups import selectors, services
from backups.management.commands._common import (
    command_error,
    dbbackup_storage,
    human_size,
    quiet_service_logs,
)
from backups.signing import trusted
from backups.storage import ManifestError, backup_storage, manifest_read
from core.errors import NucleusError
from core.principals import Actor


class Command(dbrestore_command.Command):
    help = (
        "Restore a backup from backup storage (or --input-path) after checking its checksum, engine and "
        "migrations, and record the restore."
    )
    # No system checks before a backup or a restore: they import every URL, view and admin of the
    # project (about a third of the start-up time); `manage.py check` and /readyz cover configuration.
    requires_system_checks = []
    option_list = (
        *dbrestore_command.Command.option_list,
        make_option(
            "--safety-backup",
            action="store_true",
            default=False,
            help="Back up the current database first (the API and the admin always do).",
        ),
    )

    def handle(self, *args, **options):
        if options.get("decrypt"):
            raise CommandError("--decrypt is not supported by Nucleus backups: dumps are stored unencrypted.")
        quiet_service_logs(int(options.get("verbosity", 1)))
        self.safety_backup = options.get("safety_backup", False)
        try:
            super().handle(*args, **options)
        except NucleusError as exc:
            raise command_error(exc)

    def _restore_backup(self):
        self.storage = dbbackup_storage()
        backup = None
        if not self.path:
            backup = self._chosen_backup()
        label = self.path or backup.file
        pre_restore.send(
            sender=self.__class__,
            database=self.database,
            database_name=self.database_name,
            filename=label,
            servername=self.servername,
            storage=self.storage,
        )

        def confirm():
            if self.interactive:
                self.stdout.write(
                    f"Restoring {label} replaces everything in database {self.database['NAME']}."
                )
                self._ask_confirmation()

        restore = services.backup_restore(
            backup=backup,
            path=self.path,
            confirm=None,
            require_confirmation=False,
            actor=Actor.system("dbrestore"),
            via="command",
            safety_backup=self.safety_backup,
            clean=not self.no_drop,
            pg_options=self.pg_options or "",
            schemas=self.schemas or (),
            alias=self.database_name,
            before_restore=confirm,
        )
        if not self.quiet:
            safety = f"; safety backup {restore.safety_backup}" if restore.safety_backup else ""
            self.stdout.write(
                f"Restored backup {restore.source_backup} ({label}) into {self.database['NAME']} in "
                f"{restore.duration_ms} ms{safety}; recorded as restore {restore.id}."
            )
            if restore.pending_migrations:
                self.stdout.write(
                    f"{len(restore.pending_migrations)} migrations are pending: run manage.py migrate."
                )
        post_restore.send(
            sender=self.__class__,
            database=self.database,
            database_name=self.database_name,
            filename=label,
            servername=self.servername,
            connector=None,
            storage=self.storage,
        )

    def _chosen_backup(self):
        """The backup of --input-filename, or the newest usable one of this engine (read from storage)."""
        storage = backup_storage()
        if self.filename:
            try:
                manifest = manifest_read(storage, self.filename)
            except ManifestError:
                # The service refuses it, and records the refusal, with the reason.
                return services.backup_placeholder(self.filename)
            if not trusted(manifest):
                return services.backup_placeholder(
                    self.filename
                )  # nothing in it is believed, not even its id
            return services.backup_from_manifest(manifest)
        manifest = selectors.manifest_latest(
            engine=services.live_engine(self.database_name), servername=self.servername
        )
        if manifest is None:
            raise CommandError(
                f"There is no usable {services.live_engine(self.database_name)} backup in backup storage."
            )
        if not self.quiet and self.verbosity >= 2:
            self.stdout.write(f"Newest backup: {manifest['file']} ({human_size(manifest['size'])}).")
        return services.backup_from_manifest(manifest)
