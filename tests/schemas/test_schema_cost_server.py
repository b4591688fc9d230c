"""The cost of client schemas against the image's own server: gunicorn as the Dockerfile's CMD starts it,
with its default worker count, threads and timeout, on a migrated SQLite file.

A pattern that a backtracking engine takes exponential time over, and a definition built to explode the
compatibility checker, each arrive twice at once (one per worker). Their answers must arrive, and
/healthz must answer beside them: a worker stuck in a regular expression holds the GIL, so neither its
other threads nor, with both workers stuck, the server would answer anything until gunicorn killed them.
"""

import http.client
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.processes import Gunicorn, free_port, gunicorn_command, manage
from tests.schemas.schema_support import compatibility_url, nested_any_of, schemas_url, versions_url
from tests.test_deployment import production_env

HTTPS = {"X-Forwarded-Proto": "https"}
# Longer than gunicorn's default worker timeout (60 s): a stuck worker ends in a dropped connection,
# which fails the test, rather than in a client timeout.
REQUEST_TIMEOUT = 90
CATASTROPHIC = {
    "type": "object",
    "patternProperties": {"^(a+)+$": {}},
    "properties": {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!": {}},
}


def call(server: Gunicorn, token: str, method: str, path: str, body=None) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=REQUEST_TIMEOUT)
    try:
        headers = {**HTTPS, "Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The image's CMD (gunicorn.conf.py defaults: 2 workers, 60 s timeout) and a service's token."""
    tmp_path = tmp_path_factory.mktemp("schema-cost")
    env = production_env(tmp_path)
    migrated = manage("migrate", "--noinput", env=env)
    assert migrated.returncode == 0, migrated.stderr
    created = manage("create_service", "registry", env=env)
    assert created.returncode == 0, created.stderr
    port = free_port()
    with Gunicorn(gunicorn_command(port), port=port, env=env, log_path=tmp_path / "gunicorn.log") as running:
        running.token = created.stdout.strip().splitlines()[-1]
        yield running


def make_schema(server: Gunicorn, name: str, first_version: dict) -> None:
    status, body = call(server, server.token, "POST", schemas_url(), {"name": name})
    assert status == 201, body
    status, body = call(server, server.token, "POST", versions_url(name), {"definition": first_version})
    assert status == 201, body


def twice_at_once_beside_healthz(server: Gunicorn, path: str, body: dict) -> list[tuple[int, dict]]:
    """Two identical POSTs sent together; /healthz answers while they run, and after their answers."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending = [pool.submit(call, server, server.token, "POST", path, body) for _ in range(2)]
        during, _ = server.get("/healthz")
        answers = [future.result() for future in pending]
    after, _ = server.get("/healthz")
    assert (during.status, after.status) == (200, 200), server.log_tail()
    return answers


def test_a_catastrophic_pattern_is_answered_at_once_and_the_server_stays_up(server):
    make_schema(server, "redos", {"type": "object"})

    answers = twice_at_once_beside_healthz(server, compatibility_url("redos"), {"definition": CATASTROPHIC})

    for status, body in answers:
        assert status == 200, body
        assert body["compatible"] is False
        assert body["errors"] == [{"path": "/patternProperties", "message": body["errors"][0]["message"]}]
    status, body = call(server, server.token, "GET", versions_url("redos"))
    assert [version["version"] for version in body["results"]] == [1]
    assert "WORKER TIMEOUT" not in server.log_tail(20000)


def test_a_definition_built_to_explode_the_checker_is_answered_too_complex(server):
    make_schema(server, "explosive", nested_any_of(10, {"type": "string", "maxLength": 5}))
    changed = nested_any_of(10, {"type": "string", "maxLength": 4})

    answers = twice_at_once_beside_healthz(server, compatibility_url("explosive"), {"definition": changed})

    for status, body in answers:
        assert status == 200, body
        assert body["compatible"] is False
        assert [error["path"] for error in body["errors"]] == [""]
        assert "too complex to prove" in body["errors"][0]["message"]
    assert "WORKER TIMEOUT" not in server.log_tail(20000)
