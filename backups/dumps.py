"""Dumping and restoring the database per engine, on django-dbbackup's connectors.

PostgreSQL: pg_dump's custom format (dbbackup's PgDumpBinaryConnector), taken inside an exported
snapshot so that the row counts of the manifest are exactly the rows in the dump, even while clients
write. A restore replaces every object of the dumped schemas in one transaction: objects that newer
migrations created are dropped too, so the database afterwards is exactly the dump, and any failure
rolls everything back.

SQLite: a database file written with SQLite's online backup API (dbbackup's SqliteBackupConnector),
restored with the same API into the open connection, which is safe in WAL mode while other
connections are open (overwriting the file, as dbbackup does, is not).
"""

import gzip
import hashlib
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import tempfile
import types
import uuid
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from dbbackup import settings as dbbackup_settings
from dbbackup.db.postgresql import PgDumpBinaryConnector, parse_postgres_settings
from dbbackup.db.sqlite import SqliteBackupConnector
from django.db import connections

CHUNK = 1024 * 1024
PG_MAGIC = b"PGDMP"
SQLITE_MAGIC = b"SQLite format 3\x00"
# A restore waits at most this long for a lock held by a running transaction, then rolls back.
RESTORE_LOCK_TIMEOUT = "60s"


class DumpError(Exception):
    """A dump, restore or check failed; str() is one line fit for a command's error output."""


@dataclass(frozen=True)
class DumpFacts:
    """What a dump holds, read in the very state it was dumped from."""

    database: str
    migrations: list[str]
    row_counts: dict[str, int]


def one_line(text: str, limit: int = 300) -> str:
    """The most telling line of a tool's error output."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    telling = [line for line in lines if "ERROR" in line or "error" in line or "FATAL" in line]
    line = (telling or lines or ["(no error output)"])[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"


def file_sha256(path: str) -> tuple[str, int]:
    """sha256 and size of a local file, read once."""
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256")
        return digest.hexdigest(), os.fstat(handle.fileno()).st_size


def gzip_file(source: str, target: str) -> None:
    with open(source, "rb") as raw, gzip.open(target, "wb", compresslevel=6) as packed:
        shutil.copyfileobj(raw, packed, CHUNK)


def gunzip_file(source: str, target: str) -> None:
    try:
        with gzip.open(source, "rb") as packed, open(target, "wb") as raw:
            shutil.copyfileobj(packed, raw, CHUNK)
    except (OSError, EOFError) as exc:
        raise DumpError(f"the compressed dump cannot be read: {exc}") from exc


def connector_for(alias: str, *, exclude=(), schemas=()):
    """The Nucleus connector for a database alias, with its DBBACKUP_CONNECTORS options applied."""
    vendor = connections[alias].vendor
    options = dbbackup_settings.CONNECTORS.get(alias, {})
    if vendor == "postgresql":
        connector = PostgresConnector(alias, **options)
    elif vendor == "sqlite":
        connector = SqliteConnector(alias, **options)
    else:
        raise DumpError(f"backups support PostgreSQL and SQLite, not {vendor}")
    connector.exclude.extend(exclude)
    if schemas:
        connector.schemas = list(schemas)
    return connector


def _run(cmd: list[str], env: dict, what: str) -> None:
    with tempfile.TemporaryFile() as errors:
        try:
            result = subprocess.run(  # noqa: S603 (a list of arguments, no shell)
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors, env=env
            )
        except OSError as exc:
            raise DumpError(f"{what} could not start {cmd[0]}: {exc}") from exc
        if result.returncode != 0:
            errors.seek(0)
            raise DumpError(f"{what} failed: {one_line(errors.read().decode(errors='replace'))}")


# --- PostgreSQL ----------------------------------------------------------------------------------


_PRELUDE = """
SET lock_timeout = '{lock_timeout}';
DO $nucleus$
DECLARE item record;
BEGIN
  FOR item IN
    SELECT c.oid::regclass::text AS name,
           CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                          WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END AS what
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = ANY({schemas}) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = c.oid AND d.deptype = 'e')
    ORDER BY c.relkind IN ('r', 'p') DESC
  LOOP
    EXECUTE format('DROP %s IF EXISTS %s CASCADE', item.what, item.name);
  END LOOP;
  FOR item IN
    SELECT p.oid::regprocedure::text AS name,
           CASE p.prokind WHEN 'a' THEN 'AGGREGATE' WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END AS what
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = ANY({schemas})
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                      AND d.objid = p.oid AND d.deptype = 'e')
  LOOP
    EXECUTE format('DROP %s IF EXISTS %s CASCADE', item.what, item.name);
  END LOOP;
  FOR item IN
    SELECT t.oid::regtype::text AS name, CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END AS what
    FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
    WHERE n.nspname = ANY({schemas}) AND t.typtype IN ('e', 'd', 'r', 'c')
      AND (t.typtype <> 'c' OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                      AND d.objid = t.oid AND d.deptype = 'e')
  LOOP
    EXECUTE format('DROP %s IF EXISTS %s CASCADE', item.what, item.name);
  END LOOP;
END
$nucleus$;
"""


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PostgresConnector(PgDumpBinaryConnector):
    """dbbackup's pg_dump/pg_restore connector, dumping in a snapshot and restoring all or nothing."""

    psql_cmd = "psql"

    def _env(self, *extra: dict) -> dict:
        env = os.environ.copy() if self.use_parent_env else {}
        env.update(self.env)
        for more in extra:
            env.update(more)
        return env

    def _wrapper(self, name: str | None = None):
        """A new, private Django connection to this database (or to another one on the same server)."""
        live = connections[self.database_name]
        settings_dict = {**live.settings_dict, "CONN_MAX_AGE": 0}
        if name is not None:
            settings_dict["NAME"] = name
        return type(live)(settings_dict, self.database_name)

    # - dump

    def dump_to(self, path: str) -> DumpFacts:
        """pg_dump -Fc into path, in a snapshot whose rows and migrations are read at the same time."""
        wrapper = self._wrapper()
        try:
            with wrapper.cursor() as cursor:
                cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                cursor.execute("SELECT pg_export_snapshot()")
                (snapshot,) = cursor.fetchone()
                cmd_part, pg_env = parse_postgres_settings(self)
                cmd = f"{self.dump_cmd} {cmd_part} --format=custom --snapshot={snapshot}"
                cmd += f" --file={shlex.quote(path)}"
                for table in self.exclude:
                    cmd += f" --exclude-table-data={shlex.quote(table)}"
                for schema in self.schemas or ():
                    cmd += f" -n {shlex.quote(schema)}"
                cmd = f"{self.dump_prefix} {cmd} {self.dump_suffix}"
                with tempfile.TemporaryFile() as errors:
                    try:
                        process = subprocess.Popen(  # noqa: S603
                            shlex.split(cmd),
                            stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL,
                            stderr=errors,
                            env=self._env(self.dump_env, pg_env),
                        )
                    except OSError as exc:
                        raise DumpError(f"pg_dump could not start: {exc}") from exc
                    try:
                        # Counted while pg_dump runs, in the snapshot it dumps: exact and nearly free.
                        facts = self._facts(cursor)
                    finally:
                        returncode = process.wait()
                    if returncode != 0:
                        errors.seek(0)
                        raise DumpError(f"pg_dump failed: {one_line(errors.read().decode(errors='replace'))}")
                cursor.execute("COMMIT")
        finally:
            wrapper.close()
        return facts

    def _tables(self, cursor) -> list[tuple[str, str]]:
        schemas = list(self.schemas or ())
        cursor.execute(
            """
            SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND n.nspname NOT LIKE 'pg\\_%%'
              AND (cardinality(%s::text[]) = 0 OR n.nspname = ANY(%s::text[]))
              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                              AND d.objid = c.oid AND d.deptype = 'e')
            ORDER BY 1, 2
            """,
            [schemas, schemas],
        )
        return cursor.fetchall()

    def _row_counts(self, cursor, excluded=()) -> dict[str, int]:
        tables = self._tables(cursor)
        if not tables:
            return {}
        counted = [
            (schema, table)
            for schema, table in tables
            if table not in excluded and f"{schema}.{table}" not in excluded
        ]
        counts = dict.fromkeys((_table_key(schema, table) for schema, table in tables), 0)
        if counted:
            union = " UNION ALL ".join(
                f"SELECT {_sql_literal(_table_key(schema, table))}, count(*) FROM "  # noqa: S608 (quoted)
                f"{_quote_ident(schema)}.{_quote_ident(table)}"
                for schema, table in counted
            )
            cursor.execute(union)
            counts.update({name: count for name, count in cursor.fetchall()})
        return dict(sorted(counts.items()))

    def _facts(self, cursor) -> DumpFacts:
        cursor.execute("SELECT current_database(), to_regclass('django_migrations') IS NOT NULL")
        database, has_migrations = cursor.fetchone()
        migrations = []
        if has_migrations:
            cursor.execute("SELECT app, name FROM django_migrations ORDER BY id")
            migrations = [f"{app}.{name}" for app, name in cursor.fetchall()]
        return DumpFacts(
            database=database, migrations=migrations, row_counts=self._row_counts(cursor, set(self.exclude))
        )

    # - checks

    def check_readable(self, path: str) -> None:
        """Refuse what pg_restore could not read: a foreign file or a damaged table of contents."""
        with open(path, "rb") as handle:
            if handle.read(len(PG_MAGIC)) != PG_MAGIC:
                raise DumpError("the file is not a PostgreSQL custom-format dump")
        self._contents(path)

    def _contents(self, path: str) -> set[tuple[str, str]]:
        """(schema, name) of the relations (tables, views, sequences) the dump creates, from its TOC."""
        cmd = [self.restore_cmd, "--list", path]
        try:
            listed = subprocess.run(cmd, capture_output=True, env=self._env(), check=False)  # noqa: S603
        except OSError as exc:
            raise DumpError(f"pg_restore could not start: {exc}") from exc
        if listed.returncode != 0:
            raise DumpError(
                f"reading the dump's table of contents failed: {one_line(listed.stderr.decode())}"
            )
        return {
            (match["schema"], match["name"])
            for match in _TOC_RELATION.finditer(listed.stdout.decode(errors="replace"))
        }

    def _live_extras(self, cursor, dumped: set[tuple[str, str]]) -> bool:
        """Whether the live schemas hold anything the dump does not create (say, from a newer migration)."""
        schemas = self.schemas or ["public"]
        cursor.execute(
            """
            SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = ANY(%s::text[]) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                              AND d.objid = c.oid AND d.deptype IN ('e', 'a', 'i'))
            UNION ALL
            SELECT n.nspname, p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = ANY(%s::text[])
              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                              AND d.objid = p.oid AND d.deptype = 'e')
            """,
            [schemas, schemas],
        )
        return any((schema, name) not in dumped for schema, name in cursor.fetchall())

    # - restore

    def restore_from(self, path: str, *, clean: bool = True) -> None:
        """Replace the database's objects with the dump's, in one transaction: all of it, or nothing.

        When the live schemas hold only what the dump creates (the usual case), this is dbbackup's own
        restore: pg_restore --clean --if-exists --single-transaction, as fast as by hand. When they hold
        more (tables of migrations newer than the dump, which --clean would leave behind or fail to
        drop under their foreign keys), pg_restore writes the script and psql runs it after a prelude
        that drops every object of those schemas.
        """
        if clean:
            wrapper = self._wrapper()
            try:
                with wrapper.cursor() as cursor:
                    extras = self._live_extras(cursor, self._contents(path))
            finally:
                wrapper.close()
            if extras:
                self._restore_replacing_everything(path)
                return
        with tempfile.TemporaryFile() as errors, open(path, "rb") as dump:
            cmd_part, pg_env = parse_postgres_settings(self)
            cmd = [*shlex.split(self.restore_prefix or ""), self.restore_cmd]
            if self.pg_options:
                cmd += self.pg_options if isinstance(self.pg_options, list) else shlex.split(self.pg_options)
            cmd += [*shlex.split(cmd_part), "--single-transaction", "--exit-on-error"]
            if clean:
                cmd += ["--clean", "--if-exists"]
            for schema in self.schemas or ():
                cmd += ["-n", schema]
            cmd += shlex.split(self.restore_suffix or "")
            try:
                result = subprocess.run(  # noqa: S603 (a list of arguments, no shell)
                    cmd,
                    stdin=dump,
                    stdout=subprocess.DEVNULL,
                    stderr=errors,
                    env=self._env(self.restore_env, pg_env),
                )
            except OSError as exc:
                raise DumpError(f"pg_restore could not start: {exc}") from exc
            if result.returncode != 0:
                errors.seek(0)
                raise DumpError(f"the restore failed: {one_line(errors.read().decode(errors='replace'))}")

    def _restore_replacing_everything(self, path: str) -> None:
        cmd_part, pg_env = parse_postgres_settings(self)
        env = self._env(self.restore_env, pg_env)
        restore = [*shlex.split(self.restore_prefix or ""), self.restore_cmd, "--file=-"]
        if self.pg_options:
            restore += self.pg_options if isinstance(self.pg_options, list) else shlex.split(self.pg_options)
        for schema in self.schemas or ():
            restore += ["-n", schema]
        restore += [*shlex.split(self.restore_suffix or ""), path]
        with tempfile.NamedTemporaryFile("w", suffix=".sql", dir=dbbackup_settings.TMP_DIR) as prelude:
            schemas = self.schemas or ["public"]
            array = "ARRAY[" + ", ".join(_sql_literal(schema) for schema in schemas) + "]::text[]"
            prelude.write(_PRELUDE.format(lock_timeout=RESTORE_LOCK_TIMEOUT, schemas=array))
            prelude.flush()
            psql = [
                self.psql_cmd,
                *shlex.split(cmd_part),
                "--no-psqlrc",
                "--quiet",
                "--set=ON_ERROR_STOP=1",
                "--single-transaction",
                f"--file={prelude.name}",
                "--file=-",
            ]
            _pipe_all_or_nothing(restore, psql, env)

    # - verification

    def restore_to_scratch(self, path: str) -> dict[str, int]:
        """Restore into a new scratch database, count its rows per table, drop it. Returns the counts."""
        name = f"nucleus_verify_{uuid.uuid4().hex}"
        admin = self._wrapper()
        try:
            with admin.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE {_quote_ident(name)} TEMPLATE template0")
            try:
                scratch = types.SimpleNamespace(settings={**self.settings, "NAME": name})
                cmd_part, pg_env = parse_postgres_settings(scratch)
                _run(
                    [self.restore_cmd, *shlex.split(cmd_part), "--exit-on-error", "--no-owner", path],
                    self._env(self.restore_env, pg_env),
                    "the test restore",
                )
                wrapper = self._wrapper(name)
                try:
                    with wrapper.cursor() as cursor:
                        return self._row_counts(cursor)
                finally:
                    wrapper.close()
            finally:
                with admin.cursor() as cursor:
                    cursor.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")
        finally:
            admin.close()


# pg_restore --list lines: "<id>; <catalog oid> <oid> TABLE public core_record postgres".
_TOC_RELATION = re.compile(
    r"^\d+; \d+ \d+ (?:TABLE|SEQUENCE|VIEW|MATERIALIZED VIEW|FOREIGN TABLE|FUNCTION|PROCEDURE|AGGREGATE) "
    r"(?!DATA |SET |OWNED BY )(?P<schema>\S+) (?P<name>[^\s(]+)",
    re.MULTILINE,
)


def _table_key(schema: str, table: str) -> str:
    return table if schema == "public" else f"{schema}.{table}"


def _pipe_all_or_nothing(producer_cmd: list[str], consumer_cmd: list[str], env: dict) -> None:
    with tempfile.TemporaryFile() as produced_errors, tempfile.TemporaryFile() as consumed_errors:
        try:
            consumer = subprocess.Popen(  # noqa: S603
                consumer_cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=consumed_errors,
                env=env,
            )
        except OSError as exc:
            raise DumpError(f"psql could not start: {exc}") from exc
        try:
            producer = subprocess.Popen(  # noqa: S603
                producer_cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=produced_errors,
                env=env,
            )
        except OSError as exc:
            consumer.kill()
            consumer.wait()
            raise DumpError(f"pg_restore could not start: {exc}") from exc
        broken = False
        try:
            while chunk := producer.stdout.read(CHUNK):
                try:
                    consumer.stdin.write(chunk)
                except BrokenPipeError:
                    broken = True
                    producer.kill()
                    break
        finally:
            producer.stdout.close()
            produced = producer.wait()
        if broken or produced != 0:
            consumer.kill()  # before its input ends: psql must never commit a partial restore
            consumer.wait()
            source = consumed_errors if broken else produced_errors
            source.seek(0)
            raise DumpError(f"the restore failed: {one_line(source.read().decode(errors='replace'))}")
        with suppress(BrokenPipeError):
            consumer.stdin.close()
        if consumer.wait() != 0:
            consumed_errors.seek(0)
            raise DumpError(
                f"the restore failed: {one_line(consumed_errors.read().decode(errors='replace'))}"
            )


# --- SQLite --------------------------------------------------------------------------------------


def _sqlite_readonly(path: str) -> sqlite3.Connection:
    return sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro&immutable=1", uri=True)


def sqlite_facts(path: str, *, database: str) -> DumpFacts:
    """Tables, rows and migrations of an SQLite database file."""
    with closing(_sqlite_readonly(path)) as db:
        return DumpFacts(
            database=database, migrations=_sqlite_migrations(db), row_counts=_sqlite_row_counts(db)
        )


def _sqlite_row_counts(db: sqlite3.Connection) -> dict[str, int]:
    tables = [
        name
        for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
            "ORDER BY name"
        )
    ]
    if not tables:
        return {}
    union = " UNION ALL ".join(
        f"SELECT {_sql_literal(name)}, count(*) FROM {_quote_ident(name)}"  # noqa: S608 (quoted)
        for name in tables
    )
    return dict(sorted(db.execute(union).fetchall()))


def _sqlite_migrations(db: sqlite3.Connection) -> list[str]:
    if not db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'django_migrations'"
    ).fetchone():
        return []
    return [
        f"{app}.{name}" for app, name in db.execute("SELECT app, name FROM django_migrations ORDER BY id")
    ]


class SqliteConnector(SqliteBackupConnector):
    """dbbackup's SQLite connector, restoring through the backup API instead of overwriting the file."""

    def _live(self) -> sqlite3.Connection:
        self.connection.ensure_connection()
        return self.connection.connection

    def dump_to(self, path: str) -> DumpFacts:
        """Copy the live database into path with SQLite's online backup API; read its facts from the copy."""
        name = str(self.connection.settings_dict["NAME"])
        live = self._live()
        with closing(sqlite3.connect(path)) as target:
            if not live.in_transaction:
                live.backup(target)
            elif "memory" not in name:
                # The backup API spins forever on a source connection inside a write transaction (an
                # idempotent request): read the committed database through a connection of our own.
                with closing(sqlite3.connect(Path(name).resolve().as_uri() + "?mode=ro", uri=True)) as source:
                    source.backup(target)
            else:  # an in-memory database (tests): only this connection sees it, so copy it as SQL
                target.executescript("\n".join(live.iterdump()))
            # A self-contained file: no -wal or -shm beside it, readable in place.
            target.execute("PRAGMA journal_mode=DELETE")
        return sqlite_facts(path, database=Path(name).name if "memory" not in name else name)

    def check_readable(self, path: str) -> None:
        with open(path, "rb") as handle:
            if handle.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
                raise DumpError("the file is not an SQLite database")
        try:
            with closing(_sqlite_readonly(path)) as db:
                (result,) = db.execute("PRAGMA quick_check").fetchone()
        except sqlite3.DatabaseError as exc:
            raise DumpError(f"the SQLite dump cannot be read: {exc}") from exc
        if result != "ok":
            raise DumpError(f"the SQLite dump is damaged: {result}")

    def restore_from(self, path: str, *, clean: bool = True) -> None:
        """Copy the dump over the live database page by page, in one step; other connections wait."""
        if self.connection.in_atomic_block:
            raise DumpError("a restore cannot run inside a transaction")
        try:
            with closing(_sqlite_readonly(path)) as source:
                source.backup(self._live())
        except sqlite3.DatabaseError as exc:
            raise DumpError(f"the restore failed: {exc}") from exc

    def restore_to_scratch(self, path: str) -> dict[str, int]:
        """Restore into a temporary SQLite file, check it, count its rows per table, delete it."""
        with tempfile.TemporaryDirectory(dir=dbbackup_settings.TMP_DIR) as folder:
            scratch_path = os.path.join(folder, "scratch.sqlite3")
            try:
                with (
                    closing(_sqlite_readonly(path)) as source,
                    closing(sqlite3.connect(scratch_path)) as scratch,
                ):
                    source.backup(scratch)
                    (result,) = scratch.execute("PRAGMA integrity_check").fetchone()
                    if result != "ok":
                        raise DumpError(f"the restored database is damaged: {result}")
                    return _sqlite_row_counts(scratch)
            except sqlite3.DatabaseError as exc:
                raise DumpError(f"the test restore failed: {exc}") from exc


@contextmanager
def scratch_file(folder: str | None = None, suffix: str = ""):
    """A path for a temporary file in folder, removed afterwards unless it was moved away."""
    handle, path = tempfile.mkstemp(prefix="nucleus-", suffix=suffix, dir=folder)
    os.close(handle)
    try:
        yield path
    finally:
        if os.path.exists(path):
            os.unlink(path)
