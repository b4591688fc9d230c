"""The fault suite's fixtures: one throwaway PostgreSQL cluster per run, migrated once, and gunicorn.

Nothing here uses pytest-django's test database: Nucleus runs in subprocesses (manage.py, gunicorn)
against the throwaway cluster, and the tests read that cluster with psycopg.
"""

import os
import secrets

import pytest

from tests.faults.support import APPLICATION_NAME, Api, ThrowawayCluster, postgres_bindir
from tests.processes import Gunicorn, clean_env, free_port, gunicorn_command, manage

DATABASE = "nucleus_faults"


@pytest.fixture(scope="session")
def pg_cluster():
    """A PostgreSQL cluster of this run's own (initdb, own port, trust), with a database; removed after."""
    bindir = postgres_bindir()
    if bindir is None or not (bindir / "pg_ctl").is_file():
        reason = "the fault suite needs PostgreSQL's initdb and pg_ctl: install them or set NUCLEUS_PG_BINDIR"
        if os.environ.get("NUCLEUS_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    cluster = ThrowawayCluster(bindir, free_port())
    try:
        cluster.initdb()
        cluster.start()
        with cluster.connect("postgres") as connection:
            connection.execute(f"CREATE DATABASE {DATABASE}")
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def nucleus_env(pg_cluster, tmp_path_factory) -> dict[str, str]:
    """The production environment (DEBUG off) pointed at the throwaway database, migrated."""
    tmp_path = tmp_path_factory.mktemp("nucleus-faults")
    env = clean_env(
        DJANGO_SETTINGS_MODULE="nucleus_project.settings",
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="127.0.0.1",
        SECURE_SSL_REDIRECT="false",
        DATABASE_URL=f"{pg_cluster.url(DATABASE)}?application_name={APPLICATION_NAME}",
        NUCLEUS_VAR_DIR=str(tmp_path / "var"),
        NUCLEUS_BACKUP_DIR=str(tmp_path / "backups"),
        STATIC_ROOT=str(tmp_path / "static"),
        # A claim left by a killed request may be taken over after 1 s instead of 5 min, so that the
        # tests can retry at once. Safe here: one client, no request runs concurrently with its retry.
        NUCLEUS_IDEMPOTENCY_STALE_SECONDS="1",
        GUNICORN_WORKERS="1",
        GUNICORN_THREADS="4",
        GUNICORN_TIMEOUT="30",
        GUNICORN_GRACEFUL_TIMEOUT="5",
    )
    migrated = manage("migrate", "--noinput", env=env)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    return env


@pytest.fixture(scope="session")
def service_token(nucleus_env) -> str:
    """A bearer token of the `faults` service, made as an operator would: manage.py create_service."""
    created = manage("create_service", "faults", "--label", "fault suite", env=nucleus_env)
    assert created.returncode == 0, created.stderr
    return created.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def gunicorn(nucleus_env, tmp_path_factory):
    """gunicorn (the image's config, one worker) against the throwaway database, for one module."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    server = Gunicorn(gunicorn_command(port), port=port, env=nucleus_env, log_path=log_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(gunicorn) -> Gunicorn:
    """The module's server, running: started if it is not (tests kill and restart it)."""
    if not gunicorn.running:
        gunicorn.start()
    return gunicorn


@pytest.fixture
def api(server, service_token) -> Api:
    return Api(server.port, service_token)


@pytest.fixture
def pg(pg_cluster, nucleus_env):
    """The test's own connection to the throwaway database (autocommit), to look behind the API."""
    with pg_cluster.connect(DATABASE) as connection:
        yield connection


@pytest.fixture
def pg_url(pg_cluster) -> str:
    return pg_cluster.url(DATABASE)
