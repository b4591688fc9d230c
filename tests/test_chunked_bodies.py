"""Request bodies sent with Transfer-Encoding: chunked (no Content-Length), over real HTTP.

gunicorn (the image's server) de-chunks the body: Nucleus reads it like a sized one, under the same
10 MiB limit (413 past it). The development server cannot de-chunk: it answers 411 `length_required`.
Before, both silently read an empty body (a misleading 422 "data is required").
"""

import contextlib
import http.client
import json
import sys
from collections.abc import Iterator

import pytest

from tests.processes import Gunicorn, clean_env, free_port, gunicorn_command, manage
from tests.test_deployment import production_env

LIMIT = 10 * 1024 * 1024  # NUCLEUS_MAX_BODY_BYTES
HTTPS = {"X-Forwarded-Proto": "https"}  # DEBUG is off, as in the image: plain HTTP is redirected
CHUNK = 64 * 1024


def chunks(body: bytes) -> Iterator[bytes]:
    for start in range(0, len(body), CHUNK):
        yield body[start : start + CHUNK]


def padded(document: dict, size: int) -> bytes:
    """document as JSON followed by spaces up to exactly size bytes (still valid JSON)."""
    text = json.dumps(document).encode()
    return text + b" " * (size - len(text))


def send(port: int, method: str, path: str, token: str, body: bytes | None = None, *, chunked=True):
    """(status, headers, parsed body) of one request on a fresh connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {**HTTPS, "Authorization": f"Bearer {token}"}
    try:
        if body is None:
            connection.request(method, path, headers=headers)
        else:
            headers["Content-Type"] = "application/json"
            if chunked:
                headers["Transfer-Encoding"] = "chunked"
            # A server may refuse (413) before it has read the whole body: its answer is still there.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                connection.request(
                    method,
                    path,
                    body=chunks(body) if chunked else body,
                    headers=headers,
                    encode_chunked=chunked,
                )
        response = connection.getresponse()
        content = response.read()
        return response.status, response.headers, json.loads(content) if content else None
    finally:
        connection.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The image's gunicorn command on a migrated SQLite file, and a token of the service `taxon`."""
    tmp_path = tmp_path_factory.mktemp("chunked")
    env = production_env(tmp_path, GUNICORN_WORKERS="1")
    migrated = manage("migrate", "--noinput", env=env)
    assert migrated.returncode == 0, migrated.stderr
    created = manage("create_service", "taxon", env=env)
    assert created.returncode == 0, created.stderr
    port = free_port()
    with Gunicorn(gunicorn_command(port), port=port, env=env, log_path=tmp_path / "gunicorn.log") as gunicorn:
        gunicorn.token = created.stdout.strip().splitlines()[-1]
        status, _, _ = send(
            port, "POST", "/api/v1/collections/", gunicorn.token, b'{"name": "items"}', chunked=False
        )
        assert status == 201
        yield gunicorn


def records(server) -> list[dict]:
    status, _, body = send(server.port, "GET", "/api/v1/collections/items/records/?limit=1000", server.token)
    assert status == 200
    return body["results"]


def test_gunicorn_reads_a_chunked_body_like_a_sized_one(server):
    body = json.dumps({"key": "chunky", "data": {"label": "x" * 200_000}}).encode()

    status, headers, created = send(
        server.port, "POST", "/api/v1/collections/items/records/", server.token, body
    )

    assert status == 201, created
    assert created["data"] == {"label": "x" * 200_000}
    assert headers["ETag"] == '"1"'
    assert [record["key"] for record in records(server)] == ["chunky"]


def test_gunicorn_takes_a_chunked_body_of_exactly_the_limit(server):
    body = padded({"key": "at-limit", "data": {"n": 1}}, LIMIT)

    status, _, created = send(server.port, "POST", "/api/v1/collections/items/records/", server.token, body)

    assert status == 201, created
    assert "at-limit" in [record["key"] for record in records(server)]


def test_gunicorn_refuses_a_chunked_body_past_the_limit_with_413_and_writes_nothing(server):
    before = records(server)
    body = padded({"key": "too-big", "data": {"n": 1}}, LIMIT + 1)

    status, headers, problem = send(
        server.port, "POST", "/api/v1/collections/items/records/", server.token, body
    )

    assert status == 413, problem
    assert headers["Content-Type"] == "application/problem+json"
    assert problem["code"] == "payload_too_large"
    assert str(LIMIT) in problem["detail"]
    assert records(server) == before


def test_gunicorn_still_serves_after_a_refused_chunked_body(server):
    body = padded({"data": {"n": 1}}, LIMIT + 5 * CHUNK)
    assert send(server.port, "POST", "/api/v1/collections/items/records/", server.token, body)[0] == 413
    assert send(server.port, "GET", "/api/v1/collections/items/", server.token)[0] == 200


# The development server --------------------------------------------------------------------------


@pytest.fixture
def runserver(tmp_path):
    """manage.py runserver (as `make run` starts it) on a migrated SQLite file; stopped afterwards."""
    env = clean_env(
        DATABASE_URL=f"sqlite:///{tmp_path / 'nucleus.sqlite3'}", NUCLEUS_BACKUP_DIR=str(tmp_path)
    )
    migrated = manage("migrate", "--noinput", env=env)
    assert migrated.returncode == 0, migrated.stderr
    created = manage("create_service", "taxon", env=env)
    assert created.returncode == 0, created.stderr
    port = free_port()
    log_path = tmp_path / "runserver.log"
    command = [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]
    # The process helper runs any server command in a process group of its own, not only gunicorn.
    with Gunicorn(command, port=port, env=env, log_path=log_path) as server:
        server.token = created.stdout.strip().splitlines()[-1]
        yield server


def test_the_development_server_answers_411_to_a_chunked_body(runserver):
    body = json.dumps({"name": "items"}).encode()

    status, headers, problem = send(runserver.port, "POST", "/api/v1/collections/", runserver.token, body)

    assert status == 411, problem
    assert headers["Content-Type"] == "application/problem+json"
    assert problem["code"] == "length_required"
    assert problem["title"] == "Length required"
    assert "Content-Length" in problem["detail"]
    # The unread chunks must never be taken for the next request on this connection.
    assert headers["Connection"] == "close"
    assert send(runserver.port, "GET", "/api/v1/collections/", runserver.token)[2]["results"] == []
