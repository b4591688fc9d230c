"""Metrics and logs as an operator sees them: a real gunicorn, two workers of four threads, DEBUG off.

One server for the module, on the suite's database engine: a SQLite file of its own, or on
PostgreSQL a database of its own beside the test database (created and dropped here), so nothing the
server writes reaches the rest of the suite. Its stdout (the JSON log lines, and gunicorn's access
log, which shows the worker of each request) and its stderr (gunicorn's own log) are captured apart.

README, "Metrics" and "Logging", and docs/operations.md describe what is asserted here.
"""

import http.client
import json
import math
import re
import secrets
import sqlite3
import tempfile
import threading
import time
import uuid
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
import pytest
from django.db import connection
from django.test import override_settings
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

from nucleus_project.env import env_networks
from tests.processes import Gunicorn, free_port, gunicorn_command, manage
from tests.test_deployment import production_env

# The tests share a module-scoped server: under pytest-xdist (--dist loadgroup) one worker starts it once.
pytestmark = pytest.mark.xdist_group("observability-server")

WORKERS, THREADS = 2, 4
HTTPS = {"X-Forwarded-Proto": "https"}
OPERATOR = ("alice", "correct horse battery staple")
METRICS_TOKEN = secrets.token_urlsafe(32)
# A value no log line may ever hold, wherever a client sends it: record data, event data, filters.
CANARY = f"canary-{uuid.uuid4().hex}"
ACCESS_FORMAT = "access %(p)s %(s)s %({x-request-id}i)s"
ACCESS_LINE = re.compile(r"^access <(\d+)> (\d{3}) (\S+)$", re.MULTILINE)
STALE_COUNTER = "nucleus_stale_total"
HEALTHZ = {"view": "healthz", "method": "GET", "status": "200"}  # the request that saw the server up
# Services with tokens and the operator, made in one manage.py process (each start costs seconds).
SETUP = f"""
import json
from django.contrib.auth import get_user_model
from core import services
from core.principals import Actor

actor = Actor.system("tests")
tokens = {{}}
for name in ("owner", "reader"):
    service, _ = services.service_ensure(actor=actor, name=name)
    tokens[name] = services.token_issue(actor=actor, service=service, label="tests")[1]
get_user_model().objects.create_superuser({OPERATOR[0]!r}, "alice@example.test", {OPERATOR[1]!r})
print(json.dumps(tokens))
"""


# --- the server ----------------------------------------------------------------------------------


@contextmanager
def server_database(tmp_path: Path):
    """A DATABASE_URL for the server: a SQLite file, or a fresh PostgreSQL database dropped afterwards."""
    if connection.vendor != "postgresql":
        yield f"sqlite:///{tmp_path / 'nucleus.sqlite3'}"
        return
    settings = connection.settings_dict
    assert settings["NAME"].startswith("test_"), settings["NAME"]
    name = f"{settings['NAME']}_observability"
    params = {
        "host": settings["HOST"] or "127.0.0.1",
        "port": settings["PORT"] or 5432,
        "user": settings["USER"],
        "password": settings["PASSWORD"] or None,
    }

    def run(statement: sql.Composable) -> None:
        with psycopg.connect(dbname="postgres", autocommit=True, **params) as admin:
            admin.execute(statement)

    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    run(drop)
    run(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    credentials = quote(params["user"] or "", safe="")
    if params["password"]:
        credentials += ":" + quote(params["password"], safe="")
    try:
        yield f"postgres://{credentials}@{params['host']}:{params['port']}/{name}"
    finally:
        run(drop)


@dataclass
class Server:
    gunicorn: Gunicorn
    env: dict[str, str]
    stdout: Path
    stderr: Path
    tokens: dict[str, str]
    session: str  # the operator's session cookie

    def request(self, method: str, path: str, *, token=None, body=None, headers=None):
        """One request on a fresh connection, as from behind the TLS proxy; (status, headers, body)."""
        sent = {**HTTPS, **(headers or {})}
        if token:
            sent["Authorization"] = f"Bearer {token}"
        if body is not None:
            body = json.dumps(body)
            sent["Content-Type"] = "application/json"
        client = http.client.HTTPConnection("127.0.0.1", self.gunicorn.port, timeout=30)
        try:
            client.request(method, path, body=body, headers=sent)
            response = client.getresponse()
            raw = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, raw
        finally:
            client.close()

    def api(self, method: str, path: str, body=None, *, service="owner", expect=None, **headers):
        status, _, raw = self.request(
            method, path, token=self.tokens[service], body=body, headers=_headers(headers)
        )
        if expect is not None:
            assert status == expect, (method, path, status, raw[:500], self.gunicorn.log_tail())
        return json.loads(raw) if raw else None

    def scrape(self) -> dict[tuple[str, frozenset], float]:
        status, headers, raw = self.request("GET", "/metrics", token=METRICS_TOKEN)
        assert status == 200, raw[:500]
        assert headers["content-type"].startswith("text/plain; version=")
        return metric_samples(raw.decode())

    def log_lines(self) -> list[dict]:
        """The JSON lines on stdout so far (gunicorn's access lines are skipped)."""
        return [
            json.loads(line)
            for line in self.stdout.read_text(errors="replace").splitlines()
            if line.startswith("{")
        ]

    def logged(self, request_id: str, logger: str) -> list[dict]:
        """The lines of one request from one logger, once its request line (always the last) is out."""
        deadline = time.monotonic() + 5
        while True:
            lines = [line for line in self.log_lines() if line["request_id"] == request_id]
            if any(line["logger"] == "nucleus.request" for line in lines) or time.monotonic() > deadline:
                return [line for line in lines if line["logger"] == logger]
            time.sleep(0.05)

    def operator(self, method: str, path: str, body=None, *, expect: int):
        """The operator calling the API with the admin session, CSRF token and origin as a browser would."""
        csrf = secrets.token_hex(16)
        origin = f"https://127.0.0.1:{self.gunicorn.port}"
        headers = {
            "Cookie": f"sessionid={self.session}; csrftoken={csrf}",
            "X-CSRFToken": csrf,
            "Origin": origin,
            "Referer": f"{origin}/admin/",
        }
        status, _, raw = self.request(method, path, body=body, headers=headers)
        assert status == expect, (method, path, status, raw[:500], self.gunicorn.log_tail())
        return json.loads(raw) if raw else None

    def sql(self, statement: str, params: tuple = ()) -> list[tuple]:
        """A statement on the server's database, as an operator's psql would run it (%s placeholders)."""
        url = self.env["DATABASE_URL"]
        if url.startswith("sqlite:///"):
            with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db, db:
                return db.execute(statement.replace("%s", "?"), params).fetchall()
        with psycopg.connect(url.replace("postgres://", "postgresql://", 1), autocommit=True) as db:
            cursor = db.execute(statement, params)
            return cursor.fetchall() if cursor.description else []


def _headers(headers: dict[str, str]) -> dict[str, str]:
    return {name.replace("_", "-"): value for name, value in headers.items()}


def metric_samples(text: str) -> dict[tuple[str, frozenset], float]:
    """{(sample name, labels): value}; fails on a sample exposed twice (e.g. a gauge once per worker)."""
    samples: dict[tuple[str, frozenset], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"{key} is exposed twice"
            samples[key] = sample.value
    return samples


def value(samples, name: str, **labels) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def plant_stale_metrics(directory: Path) -> None:
    """A counter file as a worker of an earlier server would have left it."""
    directory.mkdir(parents=True, exist_ok=True)
    stale = MmapedDict(str(directory / "counter_999999.db"))
    stale.write_value(mmap_key(STALE_COUNTER, STALE_COUNTER, [], [], "stale"), 41.0, 0.0)
    stale.close()


def operator_session(gunicorn: Gunicorn) -> str:
    """Sign in to the admin as the operator (CSRF as a browser passes it); the session cookie."""
    csrf = secrets.token_hex(16)
    origin = f"https://127.0.0.1:{gunicorn.port}"
    client = http.client.HTTPConnection("127.0.0.1", gunicorn.port, timeout=30)
    try:
        username, password = OPERATOR
        client.request(
            "POST",
            "/admin/login/?next=/admin/",
            body=urlencode({"username": username, "password": password, "csrfmiddlewaretoken": csrf}),
            headers={
                **HTTPS,
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": f"csrftoken={csrf}",
                "Origin": origin,
                "Referer": f"{origin}/admin/login/",
            },
        )
        response = client.getresponse()
        response.read()
        assert response.status == 302, response.status
        cookies = response.headers.get_all("Set-Cookie") or []
    finally:
        client.close()
    (session,) = [c.split(";")[0].split("=", 1)[1] for c in cookies if c.startswith("sessionid=")]
    return session


@pytest.fixture(scope="module")
def server(tmp_path_factory, django_db_setup):
    tmp_path = tmp_path_factory.mktemp("observability")
    metrics_dir = tmp_path / "prometheus"
    with server_database(tmp_path) as database_url:
        env = production_env(tmp_path) | dict(
            DATABASE_URL=database_url,
            GUNICORN_WORKERS=str(WORKERS),
            GUNICORN_THREADS=str(THREADS),
            GUNICORN_ACCESS_LOG="-",
            NUCLEUS_THROTTLE_RATE="off",
            NUCLEUS_METRICS_TOKEN=METRICS_TOKEN,
            NUCLEUS_METRICS_DIR=str(metrics_dir),
            LOG_LEVEL="INFO",
        )
        migrated = manage("migrate", "--noinput", env=env)
        assert migrated.returncode == 0, migrated.stderr
        prepared = manage("shell", "-c", SETUP, env=env)
        assert prepared.returncode == 0, prepared.stderr
        tokens = json.loads(prepared.stdout.strip().splitlines()[-1])
        plant_stale_metrics(metrics_dir)
        port = free_port()
        gunicorn = Gunicorn(
            gunicorn_command(port, "--access-logformat", ACCESS_FORMAT),
            port=port,
            env=env,
            log_path=tmp_path / "stdout.log",
            stderr_path=tmp_path / "stderr.log",
        )
        with gunicorn:
            yield Server(
                gunicorn=gunicorn,
                env=env,
                stdout=tmp_path / "stdout.log",
                stderr=tmp_path / "stderr.log",
                tokens=tokens,
                session=operator_session(gunicorn),
            )
            gunicorn.kill()  # every request has had its answer; a graceful stop waits for idle threads


def served_by(server: Server, request_ids: set[str]) -> dict[str, str]:
    """request id -> pid of the worker that served it, from the access log."""
    deadline = time.monotonic() + 5
    while True:
        found = {
            match.group(3): match.group(1)
            for match in ACCESS_LINE.finditer(server.stdout.read_text(errors="replace"))
            if match.group(3) in request_ids
        }
        if len(found) == len(request_ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def in_parallel(calls) -> None:
    threads = [threading.Thread(target=call) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)


# --- who may read /metrics -----------------------------------------------------------------------


@pytest.mark.slow
def test_metrics_answer_the_token_and_operators_and_refuse_everyone_else(server):
    assert server.request("GET", "/metrics", token=METRICS_TOKEN)[0] == 200
    assert server.request("GET", "/metrics/", token=METRICS_TOKEN)[0] == 200
    status, _, _ = server.request("GET", "/metrics", headers={"Cookie": f"sessionid={server.session}"})
    assert status == 200
    # Plain HTTP is fine for a scraper on the internal network: no redirect to HTTPS.
    status, _, _ = server.request("GET", "/metrics", token=METRICS_TOKEN, headers={"X-Forwarded-Proto": ""})
    assert status == 200

    # DEBUG is off and no network is configured: not even the loopback address may read them.
    refused = [
        {},
        {"Authorization": f"Bearer {server.tokens['owner']}"},  # services are not operators
        {"Authorization": f"Bearer {METRICS_TOKEN}x"},
        {"Authorization": f"Basic {METRICS_TOKEN}"},
        {"Cookie": "sessionid=forged"},
    ]
    for headers in refused:
        status, received, raw = server.request("GET", "/metrics", headers=headers)
        assert status == 403, headers
        assert received["content-type"] == "application/problem+json"
        assert json.loads(raw)["code"] == "forbidden"


@pytest.mark.parametrize(
    ("networks", "address", "allowed"),
    [
        ("", "127.0.0.1", False),
        ("127.0.0.0/8,::1", "127.0.0.1", True),
        ("127.0.0.0/8,::1", "::1", True),
        ("10.0.0.0/8", "10.1.2.3", True),
        ("10.0.0.0/8", "::ffff:10.1.2.3", True),  # an IPv4 client of a dual-stack socket
        ("10.0.0.0/8", "192.168.0.1", False),
        ("fd00::/8", "fd12::1", True),
        ("10.0.0.5", "10.0.0.6", False),
    ],
)
def test_metrics_answer_clients_of_the_configured_networks(client, db, networks, address, allowed):
    cidrs = env_networks("UNSET_IN_THIS_TEST", networks.split(",") if networks else [])
    with override_settings(NUCLEUS_METRICS_ALLOW_CIDRS=cidrs):
        # A forwarded address is never believed: only the TCP peer counts.
        response = client.get("/metrics", REMOTE_ADDR=address, HTTP_X_FORWARDED_FOR="10.0.0.1")
    assert response.status_code == (200 if allowed else 403)


def test_a_bad_network_or_a_short_token_stops_start_up(tmp_path):
    for variables, named in (
        ({"NUCLEUS_METRICS_ALLOW_CIDRS": "10.0.0.0/8,intranet"}, "NUCLEUS_METRICS_ALLOW_CIDRS"),
        ({"NUCLEUS_METRICS_TOKEN": "short"}, "NUCLEUS_METRICS_TOKEN"),
    ):
        result = manage("check", env={**production_env(tmp_path), **variables})
        assert result.returncode != 0
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("Nucleus is not configured: ") and named in line


# --- metrics -------------------------------------------------------------------------------------


def test_request_and_database_metrics_add_up_over_all_workers(server):
    """Every request counted once by view, method and status, whichever worker served it."""
    server.api("POST", "/api/v1/collections/", {"name": "counted"}, expect=201)
    path = "/api/v1/collections/counted/records/"
    before = server.scrape()
    sent: set[str] = set()
    for batch in range(10):  # bounded: until both workers have served some
        ids = {f"count-{batch}-{n}" for n in range(8)}
        in_parallel(
            lambda request_id=request_id: server.api("GET", path, expect=200, x_request_id=request_id)
            for request_id in ids
        )
        sent |= ids
        if len(set(served_by(server, sent).values())) == WORKERS:
            break
    else:
        pytest.fail("the requests did not spread over both workers")
    after = server.scrape()

    def delta(name, **labels):
        return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0)

    view = {"view": "record-list", "method": "GET"}
    assert delta("django_http_responses_total_by_status_view_method_total", status="200", **view) == len(sent)
    assert delta("django_http_requests_latency_seconds_by_view_method_count", **view) == len(sent)
    assert delta("django_http_requests_latency_seconds_by_view_method_bucket", le="+Inf", **view) == len(sent)
    assert delta("django_http_requests_latency_seconds_by_view_method_sum", **view) > 0
    assert delta(
        "django_http_requests_total_by_view_transport_method_total", transport="https", **view
    ) == len(sent)
    database = {"alias": "default", "vendor": connection.vendor}
    # Each list request authenticates (a query or more) and reads the page: more statements than requests.
    assert delta("django_db_execute_total", **database) >= 2 * len(sent)
    assert delta("django_db_query_duration_seconds_count", **database) >= 2 * len(sent)
    assert value(after, "django_db_new_connections_total", **database) >= WORKERS

    # A refusal is counted by its status.
    status, _, _ = server.request("GET", path, token="nuc_not-a-token")
    assert status == 401
    refused = value(
        server.scrape(), "django_http_responses_total_by_status_view_method_total", status="401", **view
    )
    assert refused >= 1


def test_files_of_an_earlier_server_are_not_counted(server):
    samples = server.scrape()
    assert not [name for name, _ in samples if name.startswith(STALE_COUNTER)]


def test_nucleus_gauges_describe_collections_streams_consumers_backups_and_migrations(server):
    server.api("POST", "/api/v1/collections/", {"name": "gauged"}, expect=201)
    records = [{"key": f"g{n}", "data": {"n": n}} for n in range(3)]
    server.api(
        "POST", "/api/v1/collections/gauged/records/bulk/", {"mode": "insert", "records": records}, expect=201
    )
    server.api("POST", "/api/v1/collections/", {"name": "gauged-feed", "kind": "stream"}, expect=201)
    events = [{"type": "tick", "data": {"n": n}} for n in range(5)]
    server.api("POST", "/api/v1/collections/gauged-feed/events/", {"events": events}, expect=201)
    server.api("PUT", "/api/v1/collections/gauged-feed/consumers/billing/", {"offset": 2}, expect=200)
    grant = {"service": "reader", "access": "read"}
    server.api("POST", "/api/v1/collections/gauged-feed/grants/", grant, expect=201)
    server.api(
        "PUT",
        "/api/v1/collections/gauged-feed/consumers/billing/",
        {"offset": 4},
        service="reader",
        expect=200,
    )

    samples = server.scrape()
    assert value(samples, "nucleus_build_info", version="dev", revision="unknown") == 1
    assert value(samples, "nucleus_database_up") == 1
    assert value(samples, "nucleus_collection_records", collection="gauged") == 3
    assert value(samples, "nucleus_collection_records", collection="gauged-feed") is None  # a stream
    assert value(samples, "nucleus_stream_last_offset", stream="gauged-feed") == 5
    # consumer names are per service: the owner's and the reader's `billing` are two series
    assert (
        value(samples, "nucleus_consumer_lag", stream="gauged-feed", service="owner", consumer="billing") == 3
    )
    assert (
        value(samples, "nucleus_consumer_lag", stream="gauged-feed", service="reader", consumer="billing")
        == 1
    )
    assert value(samples, "nucleus_backup_age_seconds") == math.inf  # no backup yet
    assert value(samples, "nucleus_verified_backup_age_seconds") == math.inf
    assert value(samples, "nucleus_migrations_pending") == 0

    backup = server.operator("POST", "/api/v1/backups/", {"note": "metrics"}, expect=201)
    samples = server.scrape()
    assert 0 <= value(samples, "nucleus_backup_age_seconds") < 300
    assert value(samples, "nucleus_verified_backup_age_seconds") == math.inf
    server.operator("POST", f"/api/v1/backups/{backup['id']}/verify/", expect=200)
    samples = server.scrape()
    assert 0 <= value(samples, "nucleus_verified_backup_age_seconds") < 300

    # A migration the database lacks (its row taken out of django_migrations; the schema stays).
    [(row_id, app, name, applied)] = server.sql(
        "SELECT id, app, name, applied FROM django_migrations WHERE app = 'core' ORDER BY id DESC LIMIT 1"
    )
    server.sql("DELETE FROM django_migrations WHERE id = %s", (row_id,))
    try:
        assert value(server.scrape(), "nucleus_migrations_pending") == 1
    finally:
        server.sql(
            "INSERT INTO django_migrations (id, app, name, applied) VALUES (%s, %s, %s, %s)",
            (row_id, app, name, applied),
        )
    assert value(server.scrape(), "nucleus_migrations_pending") == 0


# --- logs ----------------------------------------------------------------------------------------


def test_each_request_logs_one_json_line_on_stdout(server):
    server.api("GET", "/api/v1/collections/", expect=200, x_request_id="log-service")
    server.request(
        "GET",
        "/api/v1/collections/",
        headers={"Cookie": f"sessionid={server.session}", "X-Request-ID": "log-operator"},
    )
    server.request("GET", "/api/v1/collections/nope/", headers={"X-Request-ID": "log-anonymous"})
    server.request("GET", "/metrics", token=METRICS_TOKEN, headers={"X-Request-ID": "log-scrape"})

    (line,) = server.logged("log-service", "nucleus.request")
    assert set(line) == {
        "time",
        "level",
        "logger",
        "message",
        "request_id",
        "principal",
        "method",
        "path",
        "status",
        "duration_ms",
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line["time"])
    assert (line["level"], line["principal"], line["method"]) == ("INFO", "service:owner", "GET")
    assert (line["path"], line["status"]) == ("/api/v1/collections/", 200)
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["message"] == "GET /api/v1/collections/ 200"

    assert server.logged("log-operator", "nucleus.request")[0]["principal"] == f"operator:{OPERATOR[0]}"
    (anonymous,) = server.logged("log-anonymous", "nucleus.request")
    assert (anonymous["principal"], anonymous["status"]) == ("anonymous", 401)
    assert server.logged("log-scrape", "nucleus.request")[0]["principal"] == "metrics-token"

    # stdout holds the JSON lines (and the access log asked for), stderr gunicorn's own log.
    stdout = server.stdout.read_text(errors="replace").splitlines()
    assert all(line.startswith(("{", "access ")) for line in stdout), [
        line for line in stdout if not line.startswith(("{", "access "))
    ][:5]
    stderr = server.stderr.read_text(errors="replace")
    assert "Booting worker" in stderr and '"logger": "nucleus.request"' not in stderr


def test_committed_record_writes_log_collection_key_version_and_op(server):
    server.api("POST", "/api/v1/collections/", {"name": "logged"}, expect=201)
    records = [{"key": f"r{n:03}", "data": {"n": n}} for n in range(120)]
    body = {"mode": "upsert", "records": records}
    server.api("POST", "/api/v1/collections/logged/records/bulk/", body, expect=201, x_request_id="log-bulk")
    lines = server.logged("log-bulk", "nucleus.writes")
    assert [len(line["records"]) for line in lines] == [50, 50, 20]  # RECORDS_PER_LINE
    for line in lines:
        assert (line["level"], line["collection"], line["actor"]) == ("INFO", "logged", "service:owner")
        assert line["message"] == f"{len(line['records'])} records written to logged"
    written = [item for line in lines for item in line["records"]]
    assert written == [{"key": f"r{n:03}", "version": 1, "op": "created"} for n in range(120)]

    item = "/api/v1/collections/logged/records/r000/"
    server.api("PUT", item, {"data": {"n": 1}}, expect=200, x_request_id="log-put", if_match='"1"')
    server.api("PATCH", item, {"data": {"m": 2}}, expect=200, x_request_id="log-patch")
    server.api("DELETE", item, expect=204, x_request_id="log-delete")
    server.api("POST", f"{item}revert/", {"version": 3}, expect=201, x_request_id="log-revert")
    for request_id, version, op in [
        ("log-put", 2, "updated"),
        ("log-patch", 3, "updated"),
        ("log-delete", 4, "deleted"),
        ("log-revert", 5, "created"),
    ]:
        (line,) = server.logged(request_id, "nucleus.writes")
        assert (line["collection"], line["records"]) == (
            "logged",
            [{"key": "r000", "version": version, "op": op}],
        )


def test_stream_appends_log_the_stream_and_offsets(server):
    server.api("POST", "/api/v1/collections/", {"name": "log-feed", "kind": "stream"}, expect=201)
    events = [{"type": "tick", "data": {"n": n}} for n in range(3)]
    server.api(
        "POST",
        "/api/v1/collections/log-feed/events/",
        {"events": events},
        expect=201,
        x_request_id="log-append-1",
    )
    more = [{"type": "tick", "data": {"n": n}} for n in range(2)]
    server.api(
        "POST",
        "/api/v1/collections/log-feed/events/",
        {"events": more},
        expect=201,
        x_request_id="log-append-2",
    )
    (first,) = server.logged("log-append-1", "nucleus.writes")
    (second,) = server.logged("log-append-2", "nucleus.writes")
    assert (first["stream"], first["first_offset"], first["last_offset"]) == ("log-feed", 1, 3)
    assert (second["stream"], second["first_offset"], second["last_offset"]) == ("log-feed", 4, 5)
    assert second["actor"] == "service:owner" and second["message"] == "events 4-5 appended to log-feed"

    # A change stream is appended to by record writes: both are logged, the stream by its name.
    server.api("POST", "/api/v1/collections/", {"name": "log-changes", "kind": "stream"}, expect=201)
    server.api(
        "POST", "/api/v1/collections/", {"name": "log-source", "change_stream": "log-changes"}, expect=201
    )
    server.api(
        "PUT",
        "/api/v1/collections/log-source/records/k/",
        {"data": {}},
        expect=201,
        x_request_id="log-change",
    )
    lines = server.logged("log-change", "nucleus.writes")
    assert {(line.get("collection"), line.get("stream")) for line in lines} == {
        ("log-source", None),
        (None, "log-changes"),
    }


def test_writes_that_roll_back_log_nothing(server):
    server.api("POST", "/api/v1/collections/", {"name": "log-rollback"}, expect=201)
    operations = [
        {"op": "create", "collection": "log-rollback", "key": "a", "data": {}},
        {"op": "delete", "collection": "log-rollback", "key": "missing"},
    ]
    server.api(
        "POST", "/api/v1/transactions/", {"operations": operations}, expect=404, x_request_id="log-undone"
    )
    assert server.logged("log-undone", "nucleus.request")[0]["status"] == 404
    assert server.logged("log-undone", "nucleus.writes") == []


def test_no_token_password_or_data_ever_reaches_the_logs(server):
    """Tokens, passwords and data sent every way a client can send them; the output holds none of them."""
    server.api("POST", "/api/v1/collections/", {"name": "secret", "description": "plain"}, expect=201)
    server.api("POST", "/api/v1/collections/", {"name": "secret-feed", "kind": "stream"}, expect=201)
    server.api("PUT", "/api/v1/collections/secret/records/s1/", {"data": {"v": CANARY}}, expect=201)
    bulk = {"mode": "upsert", "records": [{"key": "s2", "data": {"nested": [CANARY]}}]}
    server.api("POST", "/api/v1/collections/secret/records/bulk/", bulk, expect=201)
    server.api("PATCH", "/api/v1/collections/secret/records/s1/", {"data": {"w": CANARY}}, expect=200)
    events = {"events": [{"type": "secret", "data": {"v": CANARY}}]}
    server.api("POST", "/api/v1/collections/secret-feed/events/", events, expect=201)
    where = quote(json.dumps({"v": CANARY}))
    server.api("GET", f"/api/v1/collections/secret/records/?where={where}", expect=200)
    server.api("PUT", "/api/v1/collections/secret/records/s3/", {"data": {"v": CANARY, "bad": float("nan")}})
    server.api("POST", "/api/v1/collections/secret/records/bulk/", {"records": [{"data": CANARY}]})
    wrong_token = f"nuc_{CANARY}"
    server.request("GET", "/api/v1/collections/", token=wrong_token)
    server.request("GET", "/metrics", token=f"{METRICS_TOKEN}{CANARY}")
    server.request("GET", "/metrics", token=METRICS_TOKEN)
    server.request(
        "POST",
        "/admin/login/",
        body=None,
        headers={"Cookie": f"csrftoken={CANARY[:32]}", "Authorization": f"Bearer {CANARY}"},
    )

    time.sleep(0.2)  # the write lines follow the responses
    output = server.stdout.read_text(errors="replace") + server.stderr.read_text(errors="replace")
    assert '"logger": "nucleus.writes"' in output
    for secret in (CANARY, *server.tokens.values(), METRICS_TOKEN, OPERATOR[1], server.session):
        assert secret not in output, f"{secret[:12]}... was logged"
    assert "Authorization" not in output and "Bearer" not in output


@pytest.mark.slow
def test_by_default_each_server_gets_a_metrics_directory_of_its_own_and_removes_it(tmp_path):
    """The image sets no NUCLEUS_METRICS_DIR: gunicorn.conf.py makes one in memory and cleans up.

    The database is not even migrated: the gauges cannot be read, and /metrics still answers.
    """
    shared = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    before = set(shared.glob("nucleus-metrics-*"))
    env = production_env(tmp_path) | {"NUCLEUS_METRICS_DIR": "", "NUCLEUS_METRICS_TOKEN": METRICS_TOKEN}
    port = free_port()
    with Gunicorn(
        gunicorn_command(port, "--workers", "1", "--threads", "1", "--graceful-timeout", "1"),
        port=port,
        env=env,
        log_path=tmp_path / "log",
    ) as gunicorn:
        response, body = gunicorn.get("/metrics", Authorization=f"Bearer {METRICS_TOKEN}")
        assert response.status == 200
        samples = metric_samples(body.decode())
        assert value(samples, "nucleus_database_up") == 0
        assert value(samples, "nucleus_collection_records", collection="anything") is None
        assert value(samples, "django_http_responses_total_by_status_view_method_total", **HEALTHZ) == 1
        master = gunicorn.process.pid
        (worker,) = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        # Other servers on this machine may make directories meanwhile: this one holds our worker's files.
        (made,) = [
            directory
            for directory in set(shared.glob("nucleus-metrics-*")) - before
            if list(directory.glob(f"*_{worker}.db"))
        ]
    assert not made.exists()
