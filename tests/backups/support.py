"""Helpers of the backup tests: data to back up, a content checksum of every table, damaged dumps,
and running the management commands as an operator would (a subprocess on the test database)."""

import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

from django.conf import settings
from django.db import connection, connections
from django.urls import reverse

from backups.signing import manifest_sign
from backups.storage import MANIFEST_SUFFIX
from core import services
from core.models import CollectionKind
from tests.actors import TEST_ACTOR

# The catalog mirrors backup storage and is rebuilt after a restore: it is not the data a restore restores.
NOT_DATA = ("backups_",)


def backups_url() -> str:
    return reverse("backup-list")


def backup_url(backup_id: str) -> str:
    return reverse("backup-detail", args=[backup_id])


def verify_url(backup_id: str) -> str:
    return reverse("backup-verify", args=[backup_id])


def restore_url(backup_id: str) -> str:
    return reverse("backup-restore", args=[backup_id])


def populate(owner_service, *, records: int = 30) -> None:
    """Records with history (creates, replaces, deletes, a bulk write), grants and, where the core app
    has them, stream events and a consumer position."""
    items = services.collection_create(actor=TEST_ACTOR, name="items", owner=owner_service)
    services.records_bulk(
        collection=items,
        mode="insert",
        items=[
            {"key": f"doc-{n:03}", "data": {"n": n, "label": "invoice", "tags": ["a", n]}}
            for n in range(records)
        ],
        actor=TEST_ACTOR,
    )
    services.record_put(collection=items, key="doc-001", data={"n": 1, "label": "receipt"}, actor=TEST_ACTOR)
    services.record_delete(collection=items, key="doc-002", actor=TEST_ACTOR)
    services.record_create(collection=items, key="unicode", data={"text": "Grüße, 世界 ✓"}, actor=TEST_ACTOR)
    if hasattr(services, "stream_append"):
        stream = services.collection_create(
            actor=TEST_ACTOR, name="items.events", owner=owner_service, kind=CollectionKind.STREAM
        )
        services.stream_append(
            stream=stream, events=[{"type": "created", "data": {"n": n}} for n in range(10)], actor=TEST_ACTOR
        )
        if hasattr(services, "consumer_position_set"):
            services.consumer_position_set(stream=stream, consumer="indexer", offset=4, actor=TEST_ACTOR)


def change_everything(owner_service) -> None:
    """Writes after the backup that a restore must undo: updates, deletions, new rows, events."""
    from core.models import Collection

    items = Collection.objects.get(name="items")
    services.record_put(collection=items, key="doc-000", data={"changed": True}, actor=TEST_ACTOR)
    services.record_delete(collection=items, key="doc-001", actor=TEST_ACTOR)
    services.record_create(collection=items, key="after-backup", data={"late": 1}, actor=TEST_ACTOR)
    services.collection_create(actor=TEST_ACTOR, name="later", owner=owner_service)
    if hasattr(services, "stream_append"):
        stream = Collection.objects.get(name="items.events")
        services.stream_append(stream=stream, events=[{"type": "late", "data": {}}], actor=TEST_ACTOR)


def _checksum(cursor, tables: list[str], quote) -> str:
    digest = hashlib.sha256()
    for table in sorted(tables):
        if table.startswith(NOT_DATA):
            continue
        cursor.execute(f"SELECT * FROM {quote(table)}")
        width = len(cursor.description)
        cursor.execute(
            f"SELECT * FROM {quote(table)} ORDER BY {', '.join(str(n) for n in range(1, width + 1))}"
        )
        digest.update(f"\n{table}\n".encode())
        for row in cursor.fetchall():
            digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()


def content_checksum() -> str:
    """sha256 over every row of every table of the test database (the catalog aside), in a stable order."""
    tables = connection.introspection.table_names()
    with connection.cursor() as cursor:
        return _checksum(cursor, tables, connection.ops.quote_name)


def sqlite_file_checksum(path: str) -> str:
    """content_checksum() of an SQLite database file."""
    with closing(sqlite3.connect(path)) as db:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        tables = [name for name in tables if not name.startswith("sqlite_")]
        return _checksum(db.cursor(), tables, lambda name: '"' + name.replace('"', '""') + '"')


def backup_path(file: str) -> Path:
    return Path(settings.NUCLEUS_BACKUP_DIR) / file


def read_manifest(file: str) -> dict:
    return json.loads(backup_path(file + MANIFEST_SUFFIX).read_text())


def write_manifest(file: str, manifest: dict) -> None:
    """Write a manifest as someone holding the signing key would: signed (see plant_backup for without)."""
    backup_path(file + MANIFEST_SUFFIX).write_text(json.dumps(manifest_sign(manifest)))


def plant_backup(
    source_file: str,
    *,
    signature: str | None = None,
    created_at: str = "2030-01-01T00:00:00.000Z",
    tag: str = "abcdef",
) -> dict:
    """A backup crafted by someone without the key: a real dump copied under a new name, and a manifest
    written by hand that describes it exactly (sha256, size, row counts), claiming `signature` if given.

    Returns the planted manifest.
    """
    source = read_manifest(source_file)
    suffix = source_file.split(".", 1)[1]
    name = f"nucleus-{source['vendor']}-2030-01-01-000000-{tag}.{suffix}"
    shutil.copyfile(backup_path(source_file), backup_path(name))
    manifest = {key: value for key, value in source.items() if key != "signature"}
    manifest.update(id=f"20300101-000000-{tag}", file=name, created_at=created_at, note="planted")
    if signature is not None:
        manifest["signature"] = signature
    backup_path(name + MANIFEST_SUFFIX).write_text(json.dumps(manifest))
    return manifest


def replace_backup(target_file: str, source_file: str, *, signature: str = "kept") -> None:
    """Someone without the key swaps a backup's dump for another dump and edits its manifest to match.

    signature: "kept" (the original one, which no longer matches), "removed" or "forged" (made up).
    """
    manifest = read_manifest(target_file)
    source = read_manifest(source_file)
    shutil.copyfile(backup_path(source_file), backup_path(target_file))
    manifest.update({key: source[key] for key in ("sha256", "size", "row_counts", "migrations")})
    if signature == "removed":
        manifest.pop("signature", None)
    elif signature == "forged":
        manifest["signature"] = secrets.token_hex(32)
    backup_path(target_file + MANIFEST_SUFFIX).write_text(json.dumps(manifest))


def flip_byte(file: str) -> None:
    path = backup_path(file)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(file: str) -> None:
    path = backup_path(file)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


def plant_foreign_dump(reference_file: str) -> str:
    """A well-formed dump of the other engine with a correct, signed manifest, as a backup folder shared
    with a Nucleus on the other engine (and the same key) could hold.

    Returns its file name. Only its engine is wrong for this database.
    """
    manifest = read_manifest(reference_file)
    if connection.vendor == "postgresql":
        name, vendor, engine = (
            "nucleus-sqlite-2020-01-01-000000-f0e1d2.sqlite3",
            "sqlite",
            "django.db.backends.sqlite3",
        )
        with closing(sqlite3.connect(backup_path(name))) as db:
            db.execute(
                "CREATE TABLE django_migrations (id integer primary key, app text, name text, applied text)"
            )
            db.commit()
    else:
        name, vendor, engine = (
            "nucleus-postgresql-2020-01-01-000000-f0e1d2.psql.bin",
            "postgresql",
            "django.db.backends.postgresql",
        )
        backup_path(name).write_bytes(b"PGDMP\x01\x0f\x00" + os.urandom(2048))
    data = backup_path(name).read_bytes()
    manifest.update(
        id="20200101-000000-f0e1d2",
        file=name,
        vendor=vendor,
        engine=engine,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        created_at="2020-01-01T00:00:00.000Z",
    )
    write_manifest(name, manifest)
    return name


def database_url_of_tests() -> str:
    """A DATABASE_URL for the database the tests run on, for a subprocess."""
    settings_dict = connections["default"].settings_dict
    if connection.vendor == "postgresql":
        user = settings_dict["USER"] or ""
        password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
        host = settings_dict["HOST"] or "localhost"
        port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
        return f"postgres://{user}{password}@{host}{port}/{settings_dict['NAME']}"
    raise AssertionError("an in-memory SQLite test database is not reachable from a subprocess")


def sqlite_snapshot(path: str) -> str:
    """Copy the (in-memory) SQLite test database to a file a subprocess can open; returns its URL."""
    connection.ensure_connection()
    with closing(sqlite3.connect(path)) as target:
        connection.connection.backup(target)
    return f"sqlite:///{path}"


def database_for_subprocess(tmp_path) -> tuple[str, callable]:
    """The URL of a database a subprocess restores into, and how to checksum it afterwards."""
    if connection.vendor == "postgresql":
        return database_url_of_tests(), content_checksum
    path = str(tmp_path / "live.sqlite3")
    return sqlite_snapshot(path), lambda: sqlite_file_checksum(path)


def assert_refused(result: subprocess.CompletedProcess, reason: str) -> None:
    """The command exited non-zero with one line on stderr that gives the reason."""
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("CommandError: ") and reason in lines[0], lines[0]


def manage(*args: str, database_url: str, check: bool = False) -> subprocess.CompletedProcess:
    """Run manage.py as an operator would, on the given database, the test's backup folder and its
    manifest signing keys."""
    connections.close_all()  # no lock of the test process may stand in a restore's way
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "NUCLEUS_BACKUP_DIR": str(settings.NUCLEUS_BACKUP_DIR),
        "DJANGO_SETTINGS_MODULE": "nucleus_project.settings",
        "NUCLEUS_BACKUP_SIGNING_KEY": getattr(settings, "NUCLEUS_BACKUP_SIGNING_KEY", ""),
        "NUCLEUS_BACKUP_SIGNING_KEY_FALLBACKS": ",".join(
            getattr(settings, "NUCLEUS_BACKUP_SIGNING_KEY_FALLBACKS", [])
        ),
    }
    return subprocess.run(
        [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
    )
