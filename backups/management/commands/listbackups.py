"""manage.py listbackups: django-dbbackup's listing and filters, with each dump's catalog entry.

The catalog is rebuilt from the manifests in backup storage first, so it is exactly what storage holds.
A dump whose manifest is unsigned or signed with no known key is shown without what its manifest claims.
"""

from dbbackup.management.commands import listbackups as listbackups_command

from backups import selectors, services
from backups.management.commands._common import dbbackup_storage, human_size, quiet_service_logs
from backups.signing import Trust, manifest_trust
from backups.storage import backup_storage, storage_listing

ROW = "{name:60} {datetime:20} {id:24} {engine:10} {size:>10} {status}"


class Command(listbackups_command.Command):
    help = "List the backups in backup storage with id, engine, size and status; rebuilds the catalog."

    def handle(self, **options):
        quiet_service_logs(int(options.get("verbosity", 1)))
        self.quiet = options.get("quiet")
        self.storage = dbbackup_storage()
        summary = services.catalog_rebuild() if services.catalog_tables_exist() else None
        listing = storage_listing(backup_storage())
        manifests = {manifest["file"]: manifest for manifest in listing.manifests}
        untrusted = {
            manifest["file"]: "unsigned manifest"
            if manifest_trust(manifest) == Trust.UNSIGNED
            else "bad signature"
            for manifest in listing.untrusted
        }
        statuses = selectors.backup_statuses() if summary is not None else {}
        if not self.quiet:
            self.stdout.write(
                ROW.format(
                    name="Name", datetime="Datetime", id="Id", engine="Engine", size="Size", status="Status"
                )
            )
        try:
            rows = self.get_backup_attrs(options)
        except FileNotFoundError:  # nothing was ever backed up: not even the directory exists yet
            rows = []
        for row in rows:
            manifest = manifests.get(row["name"])
            refusal = untrusted.get(row["name"], "no manifest")
            self.stdout.write(
                ROW.format(
                    name=row["name"],
                    datetime=row["datetime"],
                    id=manifest["id"] if manifest else "-",
                    engine=manifest["vendor"] if manifest else "-",
                    size=human_size(manifest["size"]) if manifest else "-",
                    status=statuses.get(manifest["id"], "available")
                    if manifest
                    else f"{refusal}: cannot be restored",
                )
            )
        if summary is None and not self.quiet:
            self.stderr.write(
                "The catalog tables do not exist yet: run manage.py migrate to index these backups."
            )
