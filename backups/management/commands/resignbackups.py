"""manage.py resignbackups [DUMP ...] [--adopt-unsigned] [--dry-run]: sign manifests with the current key.

After a key rotation (the old key in NUCLEUS_BACKUP_SIGNING_KEY_FALLBACKS), re-signs every manifest that
holds under a fallback key; a manifest signed with no known key is never touched. --adopt-unsigned also
signs unsigned manifests (from before manifests were signed) whose dump matches them: it trusts that
nobody without the key wrote them, so name the dumps you checked, or run it once, right after upgrading.
Exits non-zero when a manifest was left untrusted.
"""

from django.core.management.base import BaseCommand, CommandError

from backups import services
from backups.management.commands._common import quiet_service_logs
from core.principals import Actor


class Command(BaseCommand):
    help = (
        "Sign the backup manifests in storage with the current key: those signed with a fallback key, and "
        "with --adopt-unsigned those signed with none (from before signing). A manifest signed with an "
        "unknown key is never signed. Exits non-zero if any manifest is left untrusted."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument(
            "dumps", nargs="*", help="Only these dumps (their names in backup storage); default: every one."
        )
        parser.add_argument(
            "--adopt-unsigned",
            action="store_true",
            help="Also sign unsigned manifests whose dump is present and matches them. This trusts that "
            "Nucleus wrote them, not someone with write access to backup storage: check them first.",
        )
        parser.add_argument("--dry-run", action="store_true", help="Say what would be signed; write nothing.")

    def handle(self, *args, dumps, adopt_unsigned, dry_run, **options):
        quiet_service_logs(int(options["verbosity"]))
        if not services.catalog_tables_exist():
            # It rebuilds the catalog afterwards: without its tables it would sign and then fail.
            raise CommandError("The catalog tables do not exist: run manage.py migrate first.")
        summary = services.manifests_resign(
            actor=Actor.system("resignbackups"), adopt_unsigned=adopt_unsigned, files=dumps, dry_run=dry_run
        )
        would = "would be " if dry_run else ""
        for file in summary.resigned:
            self.stdout.write(f"{file}: signed with a fallback key, {would}re-signed with the current key")
        for file in summary.adopted:
            self.stdout.write(f"{file}: unsigned, {would}adopted and signed with the current key")
        for file, why in summary.refused:
            self.stdout.write(f"{file}: {why}")
        self.stdout.write(
            f"{len(summary.current)} already signed with the current key, {len(summary.resigned)} "
            f"{would}re-signed, {len(summary.adopted)} {would}adopted, {len(summary.refused)} not trusted."
        )
        if summary.refused:
            raise CommandError(
                f"{len(summary.refused)} backup manifests are not trusted and cannot be restored: "
                + ", ".join(file for file, _ in summary.refused)
            )
