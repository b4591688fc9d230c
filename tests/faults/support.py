"""The fault suite's tools: a throwaway PostgreSQL cluster, a plain HTTP client, and database probes."""

import contextlib
import glob
import http.client
import json
import os
import pwd
import select
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

PG_TIMEOUT = 30
WAIT_TIMEOUT = 30
# Nucleus' own connections carry this name, so pg_stat_activity tells them from the test's.
APPLICATION_NAME = "nucleus-faults"
SHARED_CLUSTER_PORT = 5432


def postgres_bindir() -> Path | None:
    """Where initdb and pg_ctl live: $NUCLEUS_PG_BINDIR, the newest /usr/lib/postgresql/*/bin, or PATH."""
    if os.environ.get("NUCLEUS_PG_BINDIR"):
        return Path(os.environ["NUCLEUS_PG_BINDIR"])
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda path: int(Path(path).parts[-3])
    )
    found = candidates[-1] if candidates else shutil.which("initdb")
    return Path(found).parent if found else None


class ThrowawayCluster:
    """A PostgreSQL cluster of the test run's own: a temporary directory, its own port, trust auth.

    PostgreSQL refuses to run as root, so under root (CI) every server command runs as the
    `postgres` user through runuser, in a directory that user owns. Only this cluster's data
    directory is ever passed to pg_ctl: the machine's shared cluster is never touched.
    """

    def __init__(self, bindir: Path, port: int):
        assert port != SHARED_CLUSTER_PORT, "the throwaway cluster never uses the shared cluster's port"
        self.bindir = bindir
        self.port = port
        owner = None
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail("running as root, and there is no `postgres` user to run PostgreSQL as")
            self._as_user = ["runuser", "-u", "postgres", "--"]
        self.root = Path(tempfile.mkdtemp(prefix="nucleus-faults-pg-"))
        if owner is not None:
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self.datadir = self.root / "data"
        self.logfile = self.root / "postgresql.log"

    def _run(self, program: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self._as_user, str(self.bindir / program), *args],
            capture_output=True,
            text=True,
            timeout=PG_TIMEOUT + 15,
            check=False,
        )

    def _checked(self, program: str, *args: str) -> None:
        result = self._run(program, *args)
        if result.returncode != 0:
            pytest.fail(
                f"{program} {' '.join(args)} failed:\n{result.stdout}{result.stderr}\n{self.log_tail()}"
            )

    def _pg_ctl(self, *args: str) -> None:
        self._checked("pg_ctl", "--pgdata", str(self.datadir), "--wait", "--timeout", str(PG_TIMEOUT), *args)

    def initdb(self) -> None:
        self._checked(
            "initdb", "--pgdata", str(self.datadir), "--username", "postgres", "--auth", "trust",
            "--encoding", "UTF8", "--no-sync",
        )  # fmt: skip

    @property
    def running(self) -> bool:
        return self._run("pg_ctl", "--pgdata", str(self.datadir), "status").returncode == 0

    def start(self) -> None:
        # fsync off: the suite kills Nucleus, not the machine, and stops PostgreSQL cleanly (-m fast).
        # No autovacuum: its locks would make the tests' LOCK TABLE wait.
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c autovacuum=off -c max_connections=50"
        )
        self._pg_ctl("--log", str(self.logfile), "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("--mode", mode, "stop")

    def destroy(self) -> None:
        """Stop the server if it runs (immediate mode: the data is thrown away) and delete everything."""
        if (self.datadir / "postmaster.pid").exists():
            self._run("pg_ctl", "--pgdata", str(self.datadir), "--mode", "immediate", "--wait", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str) -> psycopg.Connection:
        return psycopg.connect(self.url(database), autocommit=True, connect_timeout=5)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


# HTTP --------------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers.items() if key.lower() == name.lower()), None)

    def __str__(self) -> str:
        return f"{self.status} {self.body[:500]!r}"


@dataclass
class Api:
    """Nucleus on 127.0.0.1:port, called with a service token; one new connection per request."""

    port: int
    token: str
    timeout: float = 30

    def headers(self, **extra: str | None) -> dict[str, str]:
        """Token and JSON headers, plus extra ones: Idempotency_Key=k sends Idempotency-Key, None omits it."""
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        headers.update({name.replace("_", "-"): value for name, value in extra.items() if value is not None})
        return headers

    def send(self, method: str, path: str, body=None, **headers: str | None) -> http.client.HTTPConnection:
        """Send a whole request and return the open connection, before any response is read."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        payload = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        connection.request(method, path, body=payload, headers=self.headers(**headers))
        return connection

    def call(self, method: str, path: str, body=None, **headers: str | None) -> Reply:
        connection = self.send(method, path, body, **headers)
        try:
            response = connection.getresponse()
            return Reply(response.status, dict(response.getheaders()), response.read())
        finally:
            connection.close()


def create_collection(api: Api, name: str, kind: str = "records") -> None:
    reply = api.call("POST", "/api/v1/collections/", {"name": name, "kind": kind})
    assert reply.status == 201, reply


def receive(connection: http.client.HTTPConnection) -> Reply | None:
    """The response on connection, or None when the server died before answering."""
    try:
        response = connection.getresponse()
        return Reply(response.status, dict(response.getheaders()), response.read())
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def has_answered(connection: http.client.HTTPConnection) -> bool:
    """Whether the server has started to answer (or closed) the connection, without reading it."""
    readable, _, _ = select.select([connection.sock], [], [], 0)
    return bool(readable)


# Database probes ---------------------------------------------------------------------------------


def wait_until(condition, *, what: str, timeout: float = WAIT_TIMEOUT, interval: float = 0.005):
    """Poll condition() until it returns something truthy, which is returned; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def nucleus_backends(db: psycopg.Connection) -> list[tuple]:
    """Nucleus' connections: (pid, state, wait_event_type, backend_xid, query)."""
    return db.execute(
        "SELECT pid, state, wait_event_type, backend_xid, query FROM pg_stat_activity "
        "WHERE application_name = %s AND pid <> pg_backend_pid()",
        [APPLICATION_NAME],
    ).fetchall()


def blocked_writer(db: psycopg.Connection, table: str):
    """The Nucleus backend that is in a write transaction (has a transaction id) and waits for a lock
    on table. Judged by pg_locks, not by the statement's text, which pg_stat_activity truncates."""
    found = db.execute(
        "SELECT a.pid FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid "
        "JOIN pg_class c ON c.oid = l.relation "
        "WHERE a.application_name = %s AND a.backend_xid IS NOT NULL AND NOT l.granted AND c.relname = %s",
        [APPLICATION_NAME, table],
    ).fetchone()
    return found[0] if found else None


def tables_written(db: psycopg.Connection, pid: int) -> set[str]:
    """The tables backend pid has inserted into, updated or deleted from in its open transaction."""
    rows = db.execute(
        "SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
        "WHERE l.pid = %s AND l.mode = 'RowExclusiveLock' AND l.granted AND c.relkind = 'r'",
        [pid],
    ).fetchall()
    return {name for (name,) in rows}


def wait_for_no_nucleus_backends(db: psycopg.Connection) -> None:
    """Wait until every connection of a killed server has ended: its transaction is decided then."""
    wait_until(lambda: not nucleus_backends(db), what="the killed server's connections to end")


@contextlib.contextmanager
def writes_blocked(db_url: str, table: str):
    """Hold a SHARE lock on table: readers pass, the first INSERT into it waits until the block ends."""
    blocker = psycopg.connect(db_url, connect_timeout=5)
    try:
        blocker.execute(f'LOCK TABLE "{table}" IN SHARE MODE')
        yield
    finally:
        with contextlib.suppress(psycopg.Error):
            blocker.rollback()
        with contextlib.suppress(psycopg.Error):
            blocker.close()


def collection_id(db: psycopg.Connection, name: str) -> int:
    return db.execute("SELECT id FROM core_collection WHERE name = %s", [name]).fetchone()[0]


def record_rows(db: psycopg.Connection, collection: int) -> dict[str, tuple[str, int]]:
    """{key: (record id, version)} of a collection."""
    rows = db.execute(
        "SELECT key, id::text, version FROM core_record WHERE collection_id = %s", [collection]
    ).fetchall()
    return {key: (record_id, version) for key, record_id, version in rows}


def history_counts(db: psycopg.Connection, collection: int) -> dict[str, int]:
    """{record id: number of history versions} of every record key the collection ever had."""
    rows = db.execute(
        """
        SELECT v.object_id, count(*) FROM reversion_version v
        JOIN django_content_type ct ON ct.id = v.content_type_id
        WHERE ct.app_label = 'core' AND ct.model = 'record'
          AND (v.serialized_data::jsonb -> 0 -> 'fields' ->> 'collection')::bigint = %s
        GROUP BY v.object_id
        """,
        [collection],
    ).fetchall()
    return dict(rows)


def event_offsets(db: psycopg.Connection, stream: int) -> tuple[list[int], int]:
    """The offsets of a stream's events in order, and the stream's last_offset."""
    offsets = [
        row[0]
        for row in db.execute(
            'SELECT "offset" FROM core_event WHERE stream_id = %s ORDER BY "offset"', [stream]
        ).fetchall()
    ]
    (last_offset,) = db.execute("SELECT last_offset FROM core_collection WHERE id = %s", [stream]).fetchone()
    return offsets, last_offset


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
