"""Health, readiness, request ids, JSON logs, the OpenAPI document, Swagger UI and metrics."""

import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from email.message import Message
from pathlib import Path

import pytest
import yaml
from django.urls import URLPattern, URLResolver, reverse
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

from core.api import urls as api_urls
from core.logging import JsonFormatter
from core.models import WriteMeta

BASE_DIR = Path(__file__).resolve().parent.parent
GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")


# --- /healthz and /readyz ------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/healthz", "/healthz/"])
def test_healthz_answers_without_a_database(client, url, settings):
    settings.NUCLEUS_VERSION = "1.2.3"
    settings.NUCLEUS_REVISION = "abc123"
    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == "ok"
    assert (body["version"], body["revision"]) == ("1.2.3", "abc123")


@pytest.mark.parametrize("url", ["/readyz", "/readyz/"])
def test_readyz_is_200_when_the_database_is_migrated(client, db, url):
    response = client.get(url)
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "migrations": "ok"}}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def _server(tmp_path: Path, database_url: str):
    """A real Nucleus process (gunicorn) on a free port; yields its base URL and always stops it."""
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "nucleus_project.settings",
        "DATABASE_URL": database_url,
        "NUCLEUS_VAR_DIR": str(tmp_path / "var"),
        "DEBUG": "true",
        "ALLOWED_HOSTS": "127.0.0.1",
    }
    log = (tmp_path / f"server-{port}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1",
         "--timeout", "30", "nucleus_project.wsgi:application"],
        cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"the server exited with {process.returncode}: {_read(tmp_path, port)}")
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not answer within 30 s: {_read(tmp_path, port)}")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def _read(tmp_path: Path, port: int) -> str:
    return (tmp_path / f"server-{port}.log").read_text(errors="replace")[-3000:]


def _get(url: str) -> tuple[int, Message, dict]:
    try:
        response = urllib.request.urlopen(url, timeout=15)
    except urllib.error.HTTPError as error:
        response = error
    with response:
        return response.status, response.headers, json.loads(response.read())


@pytest.mark.slow
def test_readyz_is_503_naming_the_check_when_migrations_are_pending(tmp_path):
    with _server(tmp_path, f"sqlite:///{tmp_path}/empty.sqlite3") as base:
        status, headers, body = _get(f"{base}/readyz")
    assert status == 503
    assert headers["Content-Type"].startswith("application/problem+json")
    assert headers["X-Request-ID"]
    assert body["status"] == 503
    assert body["code"] == "migrations_pending"
    assert {"type", "title", "detail"} <= set(body)
    assert body["checks"] == {"database": "ok", "migrations": "failed"}
    assert "core.0001_initial" in body["pending"]


@pytest.mark.slow
def test_readyz_is_503_naming_the_check_when_the_database_is_unreachable(tmp_path):
    with _server(tmp_path, "postgres://postgres@127.0.0.1:1/nope") as base:
        status, headers, body = _get(f"{base}/readyz")
        health_status, _, health = _get(f"{base}/healthz")
    assert status == 503
    assert headers["Content-Type"].startswith("application/problem+json")
    assert body["code"] == "database_unreachable"
    assert body["checks"]["database"] == "failed"
    assert {"type", "title", "status", "detail"} <= set(body)
    assert "nope" not in body["detail"] and "postgres@" not in body["detail"]
    assert (health_status, health["status"]) == (200, "ok")


# --- X-Request-ID --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "status"),
    [
        ("get", "/healthz", 200),
        ("get", "/readyz", 200),
        ("get", "/admin/login/", 200),
        ("get", "/api/v1/collections/", 200),
        ("post", "/api/v1/collections/", 201),
        ("get", "/api/v1/collections/nope/", 404),
        ("get", "/api/v1/no-such-endpoint/", 404),
        ("put", "/api/v1/collections/", 405),
        ("get", "/no-such-page/", 404),
        ("post", "/healthz", 405),
    ],
)
def test_every_response_carries_a_request_id(owner, method, url, status):
    response = getattr(owner, method)(url, {"name": "things"}, format="json")
    assert response.status_code == status
    assert GENERATED_ID.match(response["X-Request-ID"])


def test_an_anonymous_401_carries_a_request_id(client, db):
    response = client.get("/api/v1/collections/")
    assert response.status_code == 401
    assert GENERATED_ID.match(response["X-Request-ID"])


def test_each_request_gets_its_own_id(client):
    assert client.get("/healthz")["X-Request-ID"] != client.get("/healthz")["X-Request-ID"]


@pytest.mark.parametrize("request_id", ["abc-123", "trace:0af7651916cd43dd8448eb211c80319c", "a" * 200])
def test_a_callers_request_id_is_echoed(owner, request_id):
    assert owner.get("/healthz", HTTP_X_REQUEST_ID=request_id)["X-Request-ID"] == request_id
    response = owner.get("/api/v1/collections/nope/", HTTP_X_REQUEST_ID=request_id)
    assert response["X-Request-ID"] == request_id


@pytest.mark.parametrize(
    "request_id",
    [
        pytest.param("a" * 500, id="500-chars"),
        pytest.param("a" * 201, id="201-chars"),
        pytest.param("has spaces in it", id="spaces"),
        pytest.param("abc\n", id="trailing-newline"),
        pytest.param("abc\r\nSet-Cookie: x=1", id="header-injection"),
        pytest.param("<script>", id="markup"),
        pytest.param("", id="empty"),
    ],
)
def test_an_unacceptable_request_id_is_replaced(client, request_id):
    response = client.get("/healthz", HTTP_X_REQUEST_ID=request_id)
    assert response.status_code == 200
    assert GENERATED_ID.match(response["X-Request-ID"])
    assert "Set-Cookie" not in response


def test_history_records_the_request_id(owner, items):
    response = owner.post(
        reverse("record-list", args=["items"]),
        {"key": "a", "data": {}},
        format="json",
        HTTP_X_REQUEST_ID="req-42",
    )
    assert response.status_code == 201
    history = owner.get(reverse("record-history", args=["items", "a"])).json()["results"]
    assert history[0]["request_id"] == "req-42"
    assert WriteMeta.objects.filter(request_id="req-42").count() == 1
    assert len(history) == 1


# --- JSON logs -----------------------------------------------------------------------------------


@pytest.fixture
def json_log():
    """Log lines as the configured console handler writes them (its formatter and filters)."""
    console = next(
        (handler for handler in logging.getLogger().handlers if isinstance(handler.formatter, JsonFormatter)),
        None,
    )
    assert console is not None, "the root logger has no handler formatting JSON lines"
    stream = io.StringIO()
    capture = logging.StreamHandler(stream)
    capture.setFormatter(console.formatter)
    for log_filter in console.filters:
        capture.addFilter(log_filter)
    root = logging.getLogger()
    root.addHandler(capture)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(capture)


def test_log_lines_are_json_with_the_request_id(owner, json_log):
    response = owner.get("/api/v1/collections/nope/", HTTP_X_REQUEST_ID="log-me-1")
    assert response.status_code == 404
    lines = json_log()
    assert lines, "the request logged nothing"
    for line in lines:
        assert {"time", "level", "logger", "message", "request_id"} <= set(line)
        assert line["request_id"] == response["X-Request-ID"] == "log-me-1"
    assert any(line["level"] == "WARNING" and line.get("status") == 404 for line in lines)


def test_a_generated_request_id_is_logged_too(owner, items, json_log):
    response = owner.post(reverse("record-list", args=["items"]), {"data": "no object"}, format="json")
    assert response.status_code == 422
    lines = json_log()
    assert lines
    assert {line["request_id"] for line in lines} == {response["X-Request-ID"]}


def test_a_log_line_outside_a_request_has_an_empty_request_id(json_log):
    logging.getLogger("nucleus.test").warning("outside %s", "requests")
    (line,) = [line for line in json_log() if line["logger"] == "nucleus.test"]
    assert line["message"] == "outside requests"
    assert line["request_id"] == ""


# --- OpenAPI, Swagger UI, metrics ----------------------------------------------------------------


def _named_routes(patterns, prefix: str = "/api/v1/"):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _named_routes(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern) and pattern.name:
            route = prefix + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", str(pattern.pattern))
            methods = {
                method
                for method in ("get", "post", "put", "patch", "delete")
                if hasattr(pattern.callback.view_class, method)
            }
            yield pattern.name, route, methods


@pytest.fixture
def openapi(client, db) -> dict:
    response = client.get("/api/schema/")
    assert response.status_code == 200
    assert "openapi" in response["Content-Type"]
    return yaml.safe_load(response.content)


def test_the_openapi_document_is_valid_openapi_3(openapi):
    assert openapi["openapi"].startswith("3.")
    validate(openapi)


def test_the_openapi_document_is_also_served_as_json(client, db):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    validate(json.loads(response.content))


def test_the_openapi_document_lists_every_route_with_its_methods(openapi):
    routes = list(_named_routes(api_urls.urlpatterns))
    assert len(routes) >= 9
    for name, route, methods in routes:
        assert route in openapi["paths"], f"{name}: {route} is not documented"
        documented = set(openapi["paths"][route]) & {"get", "post", "put", "patch", "delete"}
        assert documented == methods, f"{name}: {route}"
    undocumented_twins = [
        path for path in openapi["paths"] if path.startswith("/api/v1/") and not path.endswith("/")
    ]
    assert undocumented_twins == []


def _resolve(openapi: dict, schema: dict) -> dict:
    while "$ref" in schema:
        *_, name = schema["$ref"].split("/")
        schema = openapi["components"]["schemas"][name]
    return schema


def test_every_write_operation_documents_its_problem_responses(openapi):
    for _, route, methods in _named_routes(api_urls.urlpatterns):
        for method in methods - {"get"}:
            operation = openapi["paths"][route][method]
            errors = {
                code: response for code, response in operation["responses"].items() if code.startswith("4")
            }
            assert errors, f"{method.upper()} {route} documents no 4xx response"
            assert {"400", "401"} <= set(errors), f"{method.upper()} {route}"
            for code, response in errors.items():
                assert response.get("description"), f"{method.upper()} {route} {code}"
                content = response.get("content", {})
                assert content, f"{method.upper()} {route} {code} has no body schema"
                for media in content.values():
                    schema = _resolve(openapi, media["schema"])
                    assert {"type", "title", "status", "detail", "code"} <= set(schema["properties"]), (
                        f"{method.upper()} {route} {code} is not a problem"
                    )


def test_idempotent_posts_document_the_idempotency_key(openapi):
    for _, route, methods in _named_routes(api_urls.urlpatterns):
        if "post" in methods:
            parameters = openapi["paths"][route]["post"].get("parameters", [])
            assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in parameters), route


def test_swagger_ui_is_served(client, db):
    for url in ("/api/docs/", "/api/docs"):
        response = client.get(url)
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/html")
        assert b"swagger" in response.content.lower()
        # The set-up script is a file of its own (no inline script under the CSP), naming the document.
        assert f'src="{url}?script="'.encode() in response.content
        script = client.get(url, {"script": ""})
        assert script["Content-Type"].startswith("application/javascript")
        assert b'"/api/schema/"' in script.content


def test_redoc_is_served(client, db):
    for url in ("/api/redoc/", "/api/redoc"):
        response = client.get(url)
        assert response.status_code == 200
        assert b'<redoc spec-url="/api/schema/">' in response.content
        assert b"/static/drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js" in response.content


def test_metrics_are_prometheus_text_for_operators(operator, client):
    client.get("/healthz")
    assert client.get("/metrics").status_code == 403  # tests/test_observability.py: who may read them
    response = operator.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert families, "no metrics"
    assert any(name.startswith("django_http_requests") for name in families)
    assert "# TYPE" in text and "# HELP" in text
