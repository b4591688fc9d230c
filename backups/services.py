"""Every write of the backups app: backing up, verifying, restoring, deleting, retention, the catalog.

The truth is in backup storage (dumps, manifests, journal); the catalog tables are an index of it,
written after the files and rebuilt from them whenever they may have diverged (after a restore).
Nothing here holds a database transaction open while a dump or restore runs.
"""

import hashlib
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from dbbackup import settings as dbbackup_settings
from dbbackup.utils import filename_to_datestring
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.migrations.loader import MigrationLoader
from django.utils import timezone

from backups import dumps
from backups.models import Backup, BackupKind, BackupStatus, Restore, RestoreOutcome
from backups.signing import Trust, manifest_trust
from backups.storage import (
    MANIFEST_FORMAT,
    ManifestError,
    backup_storage,
    dump_save,
    incoming_dir,
    journal_delete,
    journal_entries,
    journal_write,
    latest_verifications,
    local_path,
    manifest_name,
    manifest_read,
    manifest_read_local,
    manifest_write,
    manifest_write_local,
    storage_listing,
)
from core.errors import BadRequest, Conflict, NucleusError
from core.principals import Actor
from core.status import pending_migrations

logger = logging.getLogger("nucleus.backups")


class BackupFailed(NucleusError):
    status, code, title = 500, "backup_failed", "Backup failed"


class RestoreFailed(NucleusError):
    status, code, title = 500, "restore_failed", "Restore failed"


def _corrupt(detail: str) -> Conflict:
    return Conflict(detail, code="backup_corrupt")


def _signature_refusal(file: str, trust: Trust) -> Conflict:
    if trust == Trust.UNSIGNED:
        detail = (
            f"The manifest of {file} is not signed: it was written before manifests were signed, or by "
            "someone without the key, so nothing in it is trusted. If it is one of yours, adopt it with "
            f"manage.py resignbackups --adopt-unsigned {file}."
        )
    else:
        detail = (
            f"The manifest of {file} is not signed with NUCLEUS_BACKUP_SIGNING_KEY or any of its "
            "fallbacks: it was changed after signing or written by someone without the key, so nothing in "
            "it is trusted."
        )
    return Conflict(detail, code="backup_signature_invalid")


def _new_id(moment: datetime) -> tuple[str, str]:
    suffix = secrets.token_hex(3)
    return f"{moment:%Y%m%d-%H%M%S}-{suffix}", suffix


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def live_engine(alias: str = DEFAULT_DB_ALIAS) -> str:
    return connections[alias].vendor


# --- backing up ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Dump:
    path: str  # the finished local file, to be stored
    manifest: dict


@contextmanager
def _dump(
    *,
    actor: Actor,
    note: str,
    compress: bool,
    kind: str,
    alias: str,
    servername: str | None,
    filename: str | None,
    exclude,
    schemas,
    folder: str,
) -> Iterator[_Dump]:
    """Dump the database into a local file and describe it; the file is removed afterwards unless moved."""
    started = time.monotonic()
    now = timezone.now()
    created_at = now.replace(microsecond=now.microsecond // 1000 * 1000)
    backup_id, suffix = _new_id(created_at)
    connector = dumps.connector_for(alias, exclude=exclude, schemas=schemas)
    engine = connections[alias].vendor
    stamp = created_at.strftime(dbbackup_settings.DATE_FORMAT)
    name = filename or f"{servername or 'nucleus'}-{engine}-{stamp}-{suffix}.{connector.extension}"
    if compress and not name.endswith(".gz"):
        name += ".gz"
    with dumps.scratch_file(folder, suffix=".dump") as raw_path, dumps.scratch_file(folder, ".gz") as gz_path:
        try:
            facts = connector.dump_to(raw_path)
            if compress:
                dumps.gzip_file(raw_path, gz_path)
        except dumps.DumpError as exc:
            raise BackupFailed(f"The backup failed: {exc}.") from exc
        final_path = gz_path if compress else raw_path
        sha256, size = dumps.file_sha256(final_path)
        manifest = {
            "format": MANIFEST_FORMAT,
            "id": backup_id,
            "kind": kind,
            "file": name,
            "size": size,
            "sha256": sha256,
            "compressed": compress,
            "vendor": engine,
            # "engine" and "connector" are what django-dbbackup's own metadata file holds.
            "engine": connections[alias].settings_dict["ENGINE"],
            "connector": f"{type(connector).__module__}.{type(connector).__name__}",
            "database": facts.database,
            "database_alias": alias,
            "migrations": facts.migrations,
            "row_counts": facts.row_counts,
            "created_at": _iso(created_at),
            "created_by": actor.label,
            "note": note,
            "nucleus_version": settings.NUCLEUS_VERSION,
            "nucleus_revision": settings.NUCLEUS_REVISION,
            "duration_ms": _elapsed_ms(started),
        }
        yield _Dump(final_path, manifest)


def backup_create(
    *,
    actor: Actor,
    note: str = "",
    compress: bool = False,
    kind: str = BackupKind.MANUAL,
    alias: str = DEFAULT_DB_ALIAS,
    servername: str | None = None,
    filename: str | None = None,
    exclude=(),
    schemas=(),
) -> Backup:
    """Dump the database into backup storage, write its manifest beside it, and add it to the catalog.

    Costs one pg_dump (or SQLite backup) plus one read of the dump for its sha256. Not atomic with the
    catalog: the files are written first, and a catalog rebuild recovers from a crash in between.
    """
    started = time.monotonic()
    storage = backup_storage()
    with _dump(
        actor=actor,
        note=note,
        compress=compress,
        kind=kind,
        alias=alias,
        servername=servername,
        filename=filename,
        exclude=exclude,
        schemas=schemas,
        folder=incoming_dir(storage),
    ) as dump:
        manifest = dump.manifest
        stored = dump_save(storage, dump.path, manifest["file"])
    manifest["file"] = stored
    manifest["duration_ms"] = _elapsed_ms(started)
    try:
        manifest_write(storage, manifest)
    except Exception:
        storage.delete(stored)  # a dump without a manifest could never be verified or restored
        raise
    backup = _catalog_row(manifest, present=True)
    backup, _ = Backup.objects.update_or_create(pk=backup.pk, defaults=_row_fields(backup))
    logger.info("backup %s written to %s by %s", backup.id, stored, actor.label)
    return backup


def backup_export(
    *,
    path: str,
    actor: Actor,
    note: str = "",
    compress: bool = False,
    alias: str = DEFAULT_DB_ALIAS,
    exclude=(),
    schemas=(),
) -> dict:
    """Dump the database to a local path outside backup storage (dbbackup -O), with its manifest beside it."""
    with _dump(
        actor=actor,
        note=note,
        compress=compress,
        kind=BackupKind.COMMAND,
        alias=alias,
        servername=None,
        filename=os.path.basename(path),
        exclude=exclude,
        schemas=schemas,
        folder=os.path.dirname(os.path.abspath(path)),
    ) as dump:
        os.replace(dump.path, path)
    manifest = {**dump.manifest, "file": os.path.basename(path)}
    manifest_write_local(path, manifest)
    return manifest


# --- the catalog ---------------------------------------------------------------------------------


def _catalog_row(manifest: dict, *, present: bool, verification: dict | None = None) -> Backup:
    backup = Backup(
        id=manifest["id"],
        kind=manifest.get("kind") if manifest.get("kind") in BackupKind.values else BackupKind.COMMAND,
        file=manifest["file"],
        size=manifest["size"],
        sha256=manifest["sha256"],
        engine=manifest["vendor"],
        database=manifest.get("database", ""),
        compressed=bool(manifest.get("compressed")),
        migrations=manifest["migrations"],
        row_counts=manifest["row_counts"],
        created_at=datetime.fromisoformat(manifest["created_at"]),
        duration_ms=manifest.get("duration_ms", 0),
        created_by=manifest.get("created_by", ""),
        note=manifest.get("note", ""),
        nucleus_version=manifest.get("nucleus_version", ""),
        status=BackupStatus.AVAILABLE,
    )
    if verification:
        backup.verified_at = datetime.fromisoformat(verification["verified_at"])
        backup.verify_ok = verification["ok"]
        backup.verify_checks = verification["checks"]
        backup.verify_duration_ms = verification.get("duration_ms")
        backup.status = BackupStatus.VERIFIED if verification["ok"] else BackupStatus.FAILED
    if not present:
        backup.status = BackupStatus.MISSING
    return backup


def _row_fields(backup: Backup) -> dict:
    return {
        field.attname: getattr(backup, field.attname)
        for field in Backup._meta.concrete_fields
        if not field.primary_key
    }


def backup_from_manifest(manifest: dict) -> Backup:
    """An unsaved catalog entry for a manifest: the command line works without the catalog tables."""
    return _catalog_row(manifest, present=True)


def backup_placeholder(file: str) -> Backup:
    """An unsaved stand-in for a dump without a readable manifest, so that its refusal is recorded."""
    return Backup(id="", file=file)


def _restore_row(entry: dict) -> Restore:
    return Restore(
        id=entry["id"],
        source_backup=entry["backup"],
        source_file=entry.get("file", ""),
        safety_backup=entry.get("safety_backup") or "",
        requested_by=entry.get("requested_by", ""),
        via=entry.get("via", ""),
        started_at=datetime.fromisoformat(entry["started_at"]),
        finished_at=datetime.fromisoformat(entry["finished_at"]),
        duration_ms=entry.get("duration_ms", 0),
        outcome=entry["outcome"],
        detail=entry.get("detail", ""),
        pending_migrations=entry.get("pending_migrations", []),
    )


@dataclass(frozen=True)
class CatalogSummary:
    backups: int
    restores: int
    dumps_without_manifest: list[str]
    unreadable_manifests: list[str]
    untrusted_manifests: list[str]  # unsigned or signed with no known key: not listed


@transaction.atomic
def catalog_rebuild() -> CatalogSummary:
    """Replace the catalog with what backup storage holds: every signed manifest, verification and restore.

    Reads every manifest and journal entry once; safe to run at any time. Manifests whose signature does
    not hold are left out (and named in the summary): nothing in them is trusted.
    """
    storage = backup_storage()
    listing = storage_listing(storage)
    verifications = latest_verifications(storage)
    rows, seen = [], set()
    for manifest in listing.manifests:
        if manifest["id"] in seen:
            continue
        seen.add(manifest["id"])
        rows.append(
            _catalog_row(
                manifest,
                present=manifest["file"] in listing.dumps,
                verification=verifications.get(manifest["id"]),
            )
        )
    Backup.objects.all().delete()
    Backup.objects.bulk_create(rows)
    restores = []
    for _, entry in journal_entries(storage, "restore-"):
        try:
            restores.append(_restore_row(entry))
        except (KeyError, ValueError, TypeError):
            continue
    Restore.objects.all().delete()
    Restore.objects.bulk_create(restores)
    described = {manifest["file"] for manifest in listing.manifests + listing.untrusted}
    bare = sorted(name for name in listing.dumps - described if filename_to_datestring(name))
    untrusted = sorted(manifest_name(manifest["file"]) for manifest in listing.untrusted)
    return CatalogSummary(len(rows), len(restores), bare, listing.unreadable, untrusted)


def catalog_tables_exist(alias: str = DEFAULT_DB_ALIAS) -> bool:
    tables = set(connections[alias].introspection.table_names())
    return {Backup._meta.db_table, Restore._meta.db_table} <= tables


# --- signing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResignSummary:
    current: list[str]  # dumps whose manifest was signed with the current key already
    resigned: list[str]  # signed with a fallback key, now with the current one
    adopted: list[str]  # unsigned, adopted with adopt_unsigned
    refused: list[tuple[str, str]]  # (dump, why) left as they were: not trusted


def _stored_sha256(storage, name: str) -> tuple[str, int]:
    path = local_path(storage, name)
    if path is not None:
        return dumps.file_sha256(path)
    digest, size = hashlib.sha256(), 0
    with storage.open(name, "rb") as source:
        for chunk in source.chunks(dumps.CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _adoption_refusal(storage, manifest: dict, dumps_present: set[str]) -> str | None:
    """Why an unsigned manifest cannot be adopted (incomplete, its dump missing or different), or None."""
    try:
        _catalog_row(manifest, present=True)
    except (KeyError, ValueError, TypeError):
        return "unsigned, and not a complete Nucleus manifest: not adopted"
    if manifest["file"] not in dumps_present:
        return "unsigned, and its dump is missing: not adopted"
    try:
        found = _stored_sha256(storage, manifest["file"])
    except OSError as exc:
        return f"unsigned, and its dump cannot be read ({exc.strerror or exc}): not adopted"
    if found != (manifest["sha256"], manifest["size"]):
        return "unsigned, and its dump does not match it (sha256 or size): not adopted"
    return None


def manifests_resign(
    *, actor: Actor, adopt_unsigned: bool = False, files: list[str] | None = None, dry_run: bool = False
) -> ResignSummary:
    """Sign every trusted manifest in storage with the current key, after a key rotation.

    Only manifests signed with the current or a fallback key are re-signed; one with a signature no
    known key made is never touched. Unsigned ones (from before signing) are signed only with
    adopt_unsigned, which trusts that Nucleus wrote them, and only when their dump is present and
    matches (one read of each such dump). files limits all of this to the named dumps. Rebuilds the
    catalog afterwards, so that it lists exactly the trusted backups.
    """
    storage = backup_storage()
    listing = storage_listing(storage)
    wanted = set(files) if files else None
    current, resigned, adopted, refused, writes = [], [], [], [], []
    for manifest in sorted(listing.manifests + listing.untrusted, key=lambda m: m["file"]):
        file = manifest["file"]
        if wanted is not None and file not in wanted:
            continue
        trust = manifest_trust(manifest)
        if trust == Trust.CURRENT:
            current.append(file)
        elif trust == Trust.FALLBACK:
            resigned.append(file)
            writes.append(manifest)
        elif trust == Trust.INVALID:
            refused.append((file, "signed with no known key, or changed after signing: left alone"))
        elif not adopt_unsigned:
            refused.append((file, "unsigned: adopt it with --adopt-unsigned if Nucleus wrote it"))
        elif why := _adoption_refusal(storage, manifest, listing.dumps):
            refused.append((file, why))
        else:
            adopted.append(file)
            writes.append(manifest)
    if wanted is not None:
        listed = {manifest["file"] for manifest in listing.manifests + listing.untrusted}
        refused += [(file, "no readable manifest in backup storage") for file in sorted(wanted - listed)]
    if not dry_run:
        for manifest in writes:
            manifest_write(storage, manifest)
        if catalog_tables_exist():
            catalog_rebuild()
        if writes:
            logger.info(
                "%s re-signed %d and adopted %d backup manifests", actor.label, len(resigned), len(adopted)
            )
    return ResignSummary(current, resigned, adopted, refused)


# --- verifying -----------------------------------------------------------------------------------


@contextmanager
def _materialized(storage, manifest: dict, *, path: str | None = None) -> Iterator[str]:
    """The dump as a local, uncompressed file, once its size and sha256 match the manifest.

    path: a dump outside backup storage. Raises a 409 backup_corrupt problem when the dump is missing,
    unreadable or differs from its manifest.
    """
    name = manifest["file"]
    folder = incoming_dir(storage)
    with dumps.scratch_file(folder) as copy_path, dumps.scratch_file(folder) as raw_path:
        stored = path or local_path(storage, name)
        try:
            if stored is None:  # a remote storage: fetch it once
                with storage.open(name, "rb") as source, open(copy_path, "wb") as target:
                    for chunk in source.chunks(dumps.CHUNK):
                        target.write(chunk)
                stored = copy_path
            sha256, size = dumps.file_sha256(stored)
        except OSError as exc:
            raise _corrupt(f"The dump {name} cannot be read from storage: {exc.strerror or exc}.") from exc
        if (sha256, size) != (manifest["sha256"], manifest["size"]):
            raise _corrupt(
                f"The dump {name} does not match its manifest: sha256 {sha256[:12]}… and {size} bytes, "
                f"expected {manifest['sha256'][:12]}… and {manifest['size']} bytes."
            )
        if manifest.get("compressed"):
            try:
                dumps.gunzip_file(stored, raw_path)
            except dumps.DumpError as exc:
                raise _corrupt(f"The dump {name} cannot be read: {exc}.") from exc
            stored = raw_path
        yield stored


def _known_migrations() -> set[str]:
    loader = MigrationLoader(None, ignore_no_migrations=True)
    known = {f"{app}.{name}" for app, name in loader.disk_migrations}
    for migration in loader.disk_migrations.values():
        known.update(f"{app}.{name}" for app, name in migration.replaces)
    return known


def unknown_migrations(manifest: dict) -> list[str]:
    """Migrations applied in the dump that this code does not have: it could not run that database."""
    known = _known_migrations()
    return [name for name in manifest["migrations"] if name not in known]


def _check_engine(manifest: dict, alias: str, verb: str) -> None:
    engine = live_engine(alias)
    if manifest["vendor"] != engine:
        raise Conflict(
            f"Backup {manifest['id']} is a {manifest['vendor']} dump; this Nucleus runs on {engine} and "
            f"cannot {verb} it.",
            code="backup_engine_mismatch",
        )


def _count_differences(expected: dict[str, int], found: dict[str, int]) -> list[str]:
    differences = []
    for table in sorted(set(expected) | set(found)):
        if expected.get(table) != found.get(table):
            differences.append(
                f"{table}: manifest {expected.get(table, 'none')}, restored {found.get(table, 'none')}"
            )
    return differences


def backup_verify(*, backup: Backup, actor: Actor, alias: str = DEFAULT_DB_ALIAS) -> dict:
    """Check a backup end to end: manifest, checksum, a test restore into a scratch database, row counts.

    Restores the whole dump once (into a scratch PostgreSQL database or SQLite file that is dropped
    afterwards) and records the result on the catalog entry and in the storage journal.
    """
    started = time.monotonic()
    storage = backup_storage()
    checks: list[dict] = []

    def check(name: str, ok: bool, detail: str) -> bool:
        checks.append({"name": name, "ok": ok, "detail": detail})
        return ok

    try:
        manifest = manifest_read(storage, backup.file)
    except ManifestError as exc:
        manifest = None
        check("manifest", False, f"{exc}.")
    trust = manifest_trust(manifest) if manifest is not None else None
    if trust in (Trust.UNSIGNED, Trust.INVALID):
        refusal = _signature_refusal(backup.file, trust)
        check("signature", False, refusal.detail)
        _verification_record(storage, backup, checks, started, actor)
        raise refusal
    if manifest is not None and manifest["id"] != backup.id:
        check("manifest", False, f"The manifest beside {backup.file} describes backup {manifest['id']}.")
        manifest = None
    if manifest is not None:
        _check_engine(manifest, alias, "verify")
        check("manifest", True, f"{backup.file}{'.metadata'} describes this backup.")
        check(
            "signature",
            True,
            "Signed with the current key."
            if trust == Trust.CURRENT
            else "Signed with a fallback key: run manage.py resignbackups to sign it with the current one.",
        )
        connector = dumps.connector_for(alias)
        try:
            with _materialized(storage, manifest) as raw_path:
                check("checksum", True, f"sha256 and size ({manifest['size']} bytes) match the manifest.")
                counts = None
                try:
                    connector.check_readable(raw_path)
                    counts = connector.restore_to_scratch(raw_path)
                except dumps.DumpError as exc:
                    check("restore", False, f"The test restore failed: {exc}.")
                if counts is not None:
                    where = (
                        "a scratch database"
                        if live_engine(alias) == "postgresql"
                        else "a temporary SQLite file"
                    )
                    check("restore", True, f"Restored into {where}, which was then dropped.")
                    differences = _count_differences(manifest["row_counts"], counts)
                    check(
                        "row_counts",
                        not differences,
                        f"{len(counts)} tables, {sum(counts.values())} rows, as the manifest says."
                        if not differences
                        else "Row counts differ from the manifest: " + "; ".join(differences[:10]) + ".",
                    )
        except Conflict as exc:
            check("checksum", False, exc.detail)
        unknown = unknown_migrations(manifest)
        check(
            "migrations",
            not unknown,
            "Every migration in the dump is known to this code."
            if not unknown
            else f"Migrations unknown to this code: {', '.join(unknown)}.",
        )
    return _verification_record(storage, backup, checks, started, actor)


def _verification_record(storage, backup: Backup, checks: list[dict], started: float, actor: Actor) -> dict:
    ok = all(item["ok"] for item in checks)
    verified_at = timezone.now()
    result = {
        "backup": backup.id,
        "ok": ok,
        "checks": checks,
        "verified_at": _iso(verified_at),
        "duration_ms": _elapsed_ms(started),
        "verified_by": actor.label,
    }
    journal_write(storage, f"verify-{backup.id}-{verified_at:%Y%m%d%H%M%S%f}.json", result)
    if catalog_tables_exist():
        Backup.objects.filter(pk=backup.pk).update(
            verified_at=datetime.fromisoformat(result["verified_at"]),
            verify_ok=ok,
            verify_checks=checks,
            verify_duration_ms=result["duration_ms"],
            status=BackupStatus.VERIFIED if ok else BackupStatus.FAILED,
        )
    logger.info("backup %s verified by %s: %s", backup.id, actor.label, "ok" if ok else "FAILED")
    return result


# --- restoring -----------------------------------------------------------------------------------


def backup_restore(
    *,
    backup: Backup | None = None,
    path: str | None = None,
    confirm: str | None,
    actor: Actor,
    via: str,
    require_confirmation: bool = True,
    safety_backup: bool = True,
    clean: bool = True,
    pg_options: str = "",
    schemas=(),
    alias: str = DEFAULT_DB_ALIAS,
    before_restore: Callable[[], None] | None = None,
) -> Restore:
    """Replace the database with a backup (from the catalog, or a dump at a local path with its manifest).

    Refuses, with the database untouched: a confirmation that is not the backup's id (400), a manifest
    not signed with the current or a fallback key (409 backup_signature_invalid), a dump
    that is missing, unreadable or differs from its manifest (409 backup_corrupt), a dump of another
    engine (409 backup_engine_mismatch), a dump with migrations this code does not know (409
    backup_unknown_migrations). Then takes a safety backup (unless safety_backup is false), restores
    in one transaction, and rebuilds the catalog from storage. Every attempt past the confirmation is
    recorded in the storage journal and the catalog. Must not run inside a transaction.
    require_confirmation=False is for the command line, which asks (or was told --noinput) itself.
    """
    storage = backup_storage()
    started_at, started = timezone.now(), time.monotonic()
    refusal = None
    try:
        manifest = manifest_read_local(path) if path else manifest_read(storage, backup.file)
    except ManifestError as exc:
        manifest = None
        refusal = _corrupt(f"{str(exc)[:1].upper()}{str(exc)[1:]}.")
    trust = manifest_trust(manifest) if manifest is not None else None
    if trust in (Trust.UNSIGNED, Trust.INVALID):
        manifest = None
        refusal = _signature_refusal(os.path.basename(path) if path else backup.file, trust)
    if manifest is not None and backup is not None and manifest["id"] != backup.id:
        manifest = None
        refusal = _corrupt(f"The manifest beside {backup.file} describes another backup.")
    wanted = backup.id if backup is not None else manifest["id"] if manifest else os.path.basename(path)
    if require_confirmation and (not isinstance(confirm, str) or confirm != wanted):
        raise BadRequest(
            f"Type the backup's id ({wanted}) as confirm to restore it; the database was not touched.",
            code="confirmation_mismatch",
        )
    if connections[alias].in_atomic_block:
        raise RuntimeError("backup_restore cannot run inside a transaction")
    restore_id, _ = _new_id(started_at)
    entry = {
        "id": restore_id,
        "backup": wanted,
        "file": manifest["file"] if manifest else backup.file if backup else os.path.basename(path),
        "requested_by": actor.label,
        "via": via,
        "started_at": _iso(started_at),
        "safety_backup": None,
        "pending_migrations": [],
    }
    if manifest is None:
        if refusal.code == "backup_signature_invalid" and backup is not None:
            _record_untrusted(storage, backup, refusal.detail, actor)
        _restore_finish(storage, entry, started, RestoreOutcome.REFUSED, refusal.detail, rebuild=False)
        raise refusal
    try:
        _check_engine(manifest, alias, "restore")
        with _materialized(storage, manifest, path=path) as raw_path:
            connector = dumps.connector_for(alias, schemas=schemas)
            if pg_options:
                connector.pg_options = pg_options
            try:
                connector.check_readable(raw_path)
            except dumps.DumpError as exc:
                raise _corrupt(f"The dump {manifest['file']} cannot be read: {exc}.") from exc
            unknown = unknown_migrations(manifest)
            if unknown:
                raise Conflict(
                    f"Backup {manifest['id']} was made by newer code: migrations {', '.join(unknown)} are "
                    "unknown here. Deploy that code first.",
                    code="backup_unknown_migrations",
                    unknown_migrations=unknown,
                )
            if before_restore is not None:
                before_restore()
            if safety_backup:
                try:
                    safety = backup_create(
                        actor=actor,
                        kind=BackupKind.SAFETY,
                        note=f"safety backup before restoring {manifest['id']}",
                        alias=alias,
                    )
                except NucleusError as exc:
                    raise RestoreFailed(
                        f"The safety backup failed, so nothing was restored: {exc.detail}",
                        code="safety_backup_failed",
                    ) from exc
                entry["safety_backup"] = safety.id
            if connections[alias].vendor == "postgresql":
                connections[alias].close()  # no lock of ours may stand in pg_restore's way
            try:
                connector.restore_from(raw_path, clean=clean)
            except dumps.DumpError as exc:
                raise RestoreFailed(
                    f"The restore of {manifest['id']} failed and was rolled back: {exc}."
                ) from exc
    except Conflict as exc:
        if exc.code == "backup_corrupt" and backup is not None:
            _record_corrupt(storage, backup, exc.detail, actor)
        _restore_finish(storage, entry, started, RestoreOutcome.REFUSED, exc.detail, rebuild=False)
        raise
    except RestoreFailed as exc:
        _restore_finish(storage, entry, started, RestoreOutcome.FAILED, exc.detail, rebuild=False)
        raise
    ContentType.objects.clear_cache()
    entry["pending_migrations"] = pending_migrations(alias)
    detail = f"Restored backup {manifest['id']} ({manifest['file']})."
    if entry["pending_migrations"]:
        detail += " Migrations are pending: run manage.py migrate."
    return _restore_finish(storage, entry, started, RestoreOutcome.SUCCEEDED, detail, rebuild=True)


def _record_corrupt(storage, backup: Backup, detail: str, actor: Actor) -> None:
    _verification_record(
        storage, backup, [{"name": "checksum", "ok": False, "detail": detail}], time.monotonic(), actor
    )


def _record_untrusted(storage, backup: Backup, detail: str, actor: Actor) -> None:
    """Mark a catalog entry failed when its own manifest no longer holds; an id claimed by a manifest
    elsewhere in storage (dbrestore -i) proves nothing about the catalog entry, so it is left alone."""
    if catalog_tables_exist() and Backup.objects.filter(pk=backup.pk, file=backup.file).exists():
        _verification_record(
            storage, backup, [{"name": "signature", "ok": False, "detail": detail}], time.monotonic(), actor
        )


def _restore_finish(storage, entry: dict, started: float, outcome: str, detail: str, *, rebuild: bool):
    entry.update(
        finished_at=_iso(timezone.now()), duration_ms=_elapsed_ms(started), outcome=outcome, detail=detail
    )
    journal_write(storage, f"restore-{entry['id']}.json", entry)
    logger.info(
        "restore %s of backup %s by %s: %s", entry["id"], entry["backup"], entry["requested_by"], outcome
    )
    if not catalog_tables_exist():
        return _restore_row(entry)  # a dump from before the backups app: `migrate`, then `listbackups`
    if rebuild:
        catalog_rebuild()  # the restored catalog is as old as the dump: storage knows better
        return Restore.objects.get(pk=entry["id"])
    restore = _restore_row(entry)
    restore.save(force_insert=True)
    return restore


# --- deleting and retention ----------------------------------------------------------------------


def _files_delete(storage, dump_name: str, backup_id: str) -> None:
    """Delete a dump, then its manifest and journal of verifications (a manifest never outlives nothing)."""
    if storage.exists(dump_name):
        storage.delete(dump_name)
    if storage.exists(manifest_name(dump_name)):
        storage.delete(manifest_name(dump_name))
    for name, _ in journal_entries(storage, f"verify-{backup_id}-"):
        journal_delete(storage, name)


def backup_delete(*, backup: Backup, actor: Actor) -> None:
    """Delete a backup: its dump and manifest from storage, then its catalog entry."""
    _files_delete(backup_storage(), backup.file, backup.id)
    Backup.objects.filter(pk=backup.pk).delete()
    logger.info("backup %s (%s) deleted by %s", backup.id, backup.file, actor.label)


def backups_apply_retention(
    *, actor: Actor, keep: int | None = None, keep_days: int | None = None, now: datetime | None = None
) -> list[str]:
    """Delete old backups of each engine, keeping the newest `keep`, those younger than `keep_days`
    days (0: none by age), and always the newest one that passed verification. Returns deleted ids."""
    keep = settings.NUCLEUS_BACKUP_KEEP if keep is None else keep
    keep_days = settings.NUCLEUS_BACKUP_KEEP_DAYS if keep_days is None else keep_days
    now = now or timezone.now()
    storage = backup_storage()
    verifications = latest_verifications(storage)
    by_engine: dict[str, list[dict]] = {}
    for manifest in storage_listing(storage).manifests:
        by_engine.setdefault(manifest["vendor"], []).append(manifest)
    deleted = []
    for manifests in by_engine.values():
        manifests.sort(key=lambda m: (m["created_at"], m["id"]), reverse=True)
        verified = [m["id"] for m in manifests if verifications.get(m["id"], {}).get("ok")]
        kept = {m["id"] for m in manifests[:keep]} | set(verified[:1])
        if keep_days:
            horizon = now - timedelta(days=keep_days)
            kept |= {m["id"] for m in manifests if datetime.fromisoformat(m["created_at"]) >= horizon}
        for manifest in manifests:
            if manifest["id"] not in kept:
                _files_delete(storage, manifest["file"], manifest["id"])
                deleted.append(manifest["id"])
    if deleted and catalog_tables_exist():
        Backup.objects.filter(pk__in=deleted).delete()
    if deleted:
        logger.info("retention by %s deleted backups %s", actor.label, ", ".join(deleted))
    return deleted
