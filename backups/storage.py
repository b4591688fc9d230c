"""Backup storage: dumps, the manifests beside them, and the journal of verifications and restores.

Layout in the storage of STORAGES["dbbackup"] (a directory by default):

    <dump>                        nucleus-<engine>-<YYYY-mm-dd-HHMMSS>-<hex>.psql.bin or .sqlite3 [.gz]
    <dump>.metadata               its manifest (JSON): a superset of django-dbbackup's metadata file,
                                  so dbbackup's cleanup deletes it with the dump; signed (backups.signing)
    journal/verify-<id>-<t>.json  the result of each verification of backup <id>
    journal/restore-<id>.json     each restore attempt
    .incoming/                    dumps being written (directory storage only), renamed into place

The catalog tables are an index of these files and are rebuilt from them (services.catalog_rebuild).
"""

import json
import os
import tempfile
from dataclasses import dataclass

from dbbackup import settings as dbbackup_settings
from dbbackup.utils import bytes_to_str
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages
from django.core.serializers.json import DjangoJSONEncoder

from backups.signing import manifest_sign, trusted

MANIFEST_SUFFIX = ".metadata"
MANIFEST_FORMAT = "nucleus-backup-manifest/1"
JOURNAL = "journal"


class ManifestError(Exception):
    """A manifest is missing or unreadable; str() is one line."""


def backup_storage() -> Storage:
    """The Django storage that holds backups (STORAGES["dbbackup"])."""
    return storages["dbbackup"]


def local_path(storage: Storage, name: str) -> str | None:
    """The local path of a stored file, for a storage on the local file system; else None."""
    try:
        return storage.path(name)
    except NotImplementedError:
        return None


def incoming_dir(storage: Storage) -> str:
    """Where dumps are written before they are complete: inside the storage directory when it is one,
    so that completing a dump is a rename."""
    location = local_path(storage, ".incoming")
    if location is None:
        return dbbackup_settings.TMP_DIR
    os.makedirs(location, mode=0o700, exist_ok=True)
    return location


class _MovableFile(File):
    """A complete local file: FileSystemStorage moves it into place instead of copying it."""

    def temporary_file_path(self) -> str:
        return self.name


def dump_save(storage: Storage, source_path: str, name: str) -> str:
    """Store the local file source_path as name (moved, when the storage is a local directory)."""
    with open(source_path, "rb") as handle:
        return storage.save(name, _MovableFile(handle, name=source_path))


def manifest_name(dump_name: str) -> str:
    return dump_name + MANIFEST_SUFFIX


def _json_bytes(data: dict) -> bytes:
    return json.dumps(data, cls=DjangoJSONEncoder, indent=2, sort_keys=True).encode()


def manifest_write(storage: Storage, manifest: dict) -> None:
    """Write the manifest beside its dump, signed with the current key, replacing any manifest there.

    In a local directory the new manifest replaces the old one in a single rename; other storages can
    only delete and save, so a crash in between leaves the dump without a manifest.
    """
    name = manifest_name(manifest["file"])
    content = _json_bytes(manifest_sign(manifest))
    path = local_path(storage, name)
    if path is not None and os.path.exists(path):
        handle, temporary = tempfile.mkstemp(prefix="manifest-", dir=incoming_dir(storage))  # mode 0600
        try:
            with open(handle, "wb") as target:
                target.write(content)
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        return
    if storage.exists(name):
        storage.delete(name)
    storage.save(name, ContentFile(content))


def manifest_parse(raw: bytes, name: str) -> dict:
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise ManifestError(f"the manifest {name} is not valid JSON") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"{name} is not a Nucleus backup manifest")
    required = {"id", "file", "size", "sha256", "engine", "migrations", "row_counts", "created_at"}
    missing = sorted(required - set(manifest))
    if missing:
        raise ManifestError(f"the manifest {name} lacks {', '.join(missing)}")
    return manifest


def manifest_read(storage: Storage, dump_name: str) -> dict:
    """The manifest of the dump called dump_name; ManifestError if it is missing or unreadable."""
    name = manifest_name(dump_name)
    try:
        with storage.open(name, "rb") as handle:
            raw = handle.read()
    except (FileNotFoundError, OSError) as exc:
        raise ManifestError(f"the dump {dump_name} has no readable manifest") from exc
    manifest = manifest_parse(raw, name)
    manifest["file"] = dump_name
    return manifest


def manifest_read_local(path: str) -> dict:
    """The manifest beside a dump outside backup storage (dbrestore --input-path)."""
    name = path + MANIFEST_SUFFIX
    try:
        with open(name, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise ManifestError(f"{path} has no readable manifest beside it ({name})") from exc
    return manifest_parse(raw, name)


def manifest_write_local(path: str, manifest: dict) -> None:
    with open(path + MANIFEST_SUFFIX, "wb") as handle:
        handle.write(_json_bytes(manifest_sign(manifest)))


@dataclass(frozen=True)
class Listing:
    manifests: list[dict]  # signed with the current or a fallback key: the only ones acted upon
    dumps: set[str]  # every other file at the top level: dumps, with or without a manifest
    unreadable: list[str]  # manifests that could not be read
    untrusted: list[dict]  # unsigned, or signed with no key we know: never listed, restored or deleted


def storage_listing(storage: Storage) -> Listing:
    """Every manifest in storage (read, and sorted by whether its signature holds), and the names of
    the other top-level files."""
    try:
        _, files = storage.listdir("")
    except FileNotFoundError:
        return Listing([], set(), [], [])
    manifests, unreadable, untrusted = [], [], []
    for name in sorted(files):
        if not name.endswith(MANIFEST_SUFFIX):
            continue
        try:
            with storage.open(name, "rb") as handle:
                manifest = manifest_parse(handle.read(), name)
        except (ManifestError, OSError):
            unreadable.append(name)
            continue
        manifest["file"] = name.removesuffix(MANIFEST_SUFFIX)  # where it is, whatever it was called
        (manifests if trusted(manifest) else untrusted).append(manifest)
    dumps = {name for name in files if not name.endswith(MANIFEST_SUFFIX)}
    return Listing(manifests, dumps, unreadable, untrusted)


def journal_write(storage: Storage, name: str, entry: dict) -> None:
    storage.save(f"{JOURNAL}/{name}", ContentFile(_json_bytes(entry)))


def journal_entries(storage: Storage, prefix: str) -> list[tuple[str, dict]]:
    """(name, entry) of every readable journal entry whose name starts with prefix, by name."""
    try:
        _, files = storage.listdir(JOURNAL)
    except FileNotFoundError:
        return []
    entries = []
    for name in sorted(files):
        if not name.startswith(prefix) or not name.endswith(".json"):
            continue
        try:
            with storage.open(f"{JOURNAL}/{name}", "rb") as handle:
                entry = json.loads(handle.read())
        except (OSError, ValueError):
            continue
        if isinstance(entry, dict):
            entries.append((name, entry))
    return entries


def journal_delete(storage: Storage, name: str) -> None:
    storage.delete(f"{JOURNAL}/{name}")


def latest_verifications(storage: Storage) -> dict[str, dict]:
    """The newest verification result of each backup id, from the journal."""
    latest = {}
    for _, entry in journal_entries(storage, "verify-"):
        if {"backup", "ok", "checks", "verified_at"} <= set(entry):
            latest[entry["backup"]] = entry  # names sort by time: the last one wins
    return latest


def human_size(size: int) -> str:
    return bytes_to_str(size)
