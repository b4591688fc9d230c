"""The production profile against the image's own server: gunicorn as the Dockerfile's CMD starts it,
DEBUG off, two workers, behind a TLS-terminating proxy that sets X-Forwarded-Proto.

tests/test_deployment.py checks that `check --deploy` is clean with the image's environment; this
module adds the new settings to that check, shows that misconfiguring them stops start-up, and checks
what a client of the running server sees: secure cookies, HSTS, the HTTPS redirect and its
exemptions, the proxy header, and throttling whose state all workers share.
"""

import http.client
import json
import re
import secrets
import threading
import time
from http.cookies import SimpleCookie
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.processes import Gunicorn, free_port, gunicorn_command, manage
from tests.test_deployment import production_env

# The tests share a module-scoped server: under pytest-xdist (--dist loadgroup) one worker starts it once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("production-server")]

HTTPS = {"X-Forwarded-Proto": "https"}
THROTTLE_LIMIT = 8  # per service and hour: no test but the throttling one comes near it
HSTS = "max-age=31536000; includeSubDomains; preload"
OPERATOR = ("alice", "correct horse battery staple")
METRICS_TOKEN = secrets.token_urlsafe(32)
# gunicorn's access log, one line per request: the worker's pid, the status and our request id.
ACCESS_FORMAT = "access %(p)s %(s)s %({x-request-id}i)s"
ACCESS_LINE = re.compile(r"access <(\d+)> (\d{3}) (\S+)")


class Client:
    """Requests to the server on a fresh connection each, as a load balancer's clients would make them."""

    def __init__(self, server: Gunicorn, token: str | None = None):
        self.server = server
        self.token = token

    def request(
        self, method: str, path: str, *, body=None, headers=None
    ) -> tuple[http.client.HTTPResponse, bytes]:
        headers = dict(headers or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if isinstance(body, dict):
            body = json.dumps(body)
            headers.setdefault("Content-Type", "application/json")
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=15)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response, response.read()
        finally:
            connection.close()


def cookies_of(response: http.client.HTTPResponse) -> SimpleCookie:
    jar = SimpleCookie()
    for header in response.headers.get_all("Set-Cookie") or []:
        jar.load(header)
    return jar


def create_service(name: str, env: dict[str, str]) -> str:
    created = manage("create_service", name, env=env)
    assert created.returncode == 0, created.stderr
    return created.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The image's CMD with two workers on a migrated SQLite file, services and an operator in it."""
    tmp_path = tmp_path_factory.mktemp("production")
    port = free_port()
    env = production_env(
        tmp_path,
        GUNICORN_WORKERS="2",
        GUNICORN_ACCESS_LOG="-",
        NUCLEUS_THROTTLE_RATE=f"{THROTTLE_LIMIT}/hour",
        NUCLEUS_METRICS_TOKEN=METRICS_TOKEN,
    )
    for step in (("migrate", "--noinput"), ("collectstatic", "--noinput", "--verbosity", "0")):
        done = manage(*step, env=env)
        assert done.returncode == 0, done.stderr
    username, password = OPERATOR
    created = manage(
        "createsuperuser",
        "--noinput",
        "--username",
        username,
        "--email",
        "alice@example.test",
        env={**env, "DJANGO_SUPERUSER_PASSWORD": password},
    )
    assert created.returncode == 0, created.stderr
    tokens = {name: create_service(name, env) for name in ("profile", "throttled")}
    command = gunicorn_command(port, "--access-logformat", ACCESS_FORMAT)
    with Gunicorn(command, port=port, env=env, log_path=tmp_path / "gunicorn.log") as running:
        running.tokens = tokens
        yield running


# Start-up ---------------------------------------------------------------------------------------


@pytest.fixture
def identity_key_file(tmp_path):
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    path = tmp_path / "identity.pem"
    path.write_bytes(
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return path


def test_check_deploy_stays_clean_with_jwts_throttling_and_statement_timeout(tmp_path, identity_key_file):
    env = production_env(
        tmp_path,
        NUCLEUS_JWT_PUBLIC_KEY_FILE=str(identity_key_file),
        NUCLEUS_JWT_ISSUER="https://id.example.test",
        NUCLEUS_JWT_AUDIENCE="nucleus",
        NUCLEUS_THROTTLE_RATE="600/min",
        NUCLEUS_THROTTLE_OPERATOR_RATE="6000/hour",
        DATABASE_STATEMENT_TIMEOUT_MS="15000",
    )
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"NUCLEUS_JWT_PUBLIC_KEY_FILE": "/nonexistent/identity.pem"}, "NUCLEUS_JWT_PUBLIC_KEY_FILE"),
        ({"NUCLEUS_JWT_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"}, "PEM"),
        ({"NUCLEUS_JWT_PUBLIC_KEY_FILE": "{key}", "NUCLEUS_JWT_AUDIENCE": "nucleus"}, "NUCLEUS_JWT_ISSUER"),
        (
            {"NUCLEUS_JWT_PUBLIC_KEY_FILE": "{key}", "NUCLEUS_JWT_ISSUER": "https://id"},
            "NUCLEUS_JWT_AUDIENCE",
        ),
        ({"NUCLEUS_THROTTLE_RATE": "lots"}, "NUCLEUS_THROTTLE_RATE"),
        (
            {"DATABASE_URL": "postgres://db/nucleus", "DATABASE_STATEMENT_TIMEOUT_MS": "-5"},
            "STATEMENT_TIMEOUT",
        ),
    ],
)
def test_misconfiguration_stops_start_up_in_one_line(tmp_path, identity_key_file, variables, named):
    variables = {name: value.replace("{key}", str(identity_key_file)) for name, value in variables.items()}
    result = manage("check", env={**production_env(tmp_path), **variables})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"one line, no traceback: {result.stderr}"
    assert lines[0].startswith("Nucleus is not configured: ")
    assert named in lines[0]


# Cookies, HSTS, redirects, the proxy header ---------------------------------------------------


def test_admin_session_and_csrf_cookies_are_secure(server):
    client = Client(server)
    response, page = client.request("GET", "/admin/login/", headers=HTTPS)
    assert response.status == 200, page[:500]
    csrf = cookies_of(response)["csrftoken"]
    assert csrf["secure"] is True
    assert csrf["samesite"] == "Lax"
    form_token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1).decode()

    origin = f"https://127.0.0.1:{server.port}"
    username, password = OPERATOR
    response, body = client.request(
        "POST",
        "/admin/login/?next=/admin/",
        body=urlencode({"username": username, "password": password, "csrfmiddlewaretoken": form_token}),
        headers={
            **HTTPS,
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={csrf.value}",
            "Origin": origin,
            "Referer": f"{origin}/admin/login/",
        },
    )
    assert response.status == 302, body[:500]
    session = cookies_of(response)["sessionid"]
    assert session["secure"] is True
    assert session["httponly"] is True  # no script may read the session
    assert session["samesite"] == "Lax"
    # The CSRF cookie stays readable by scripts (Django's default): HttpOnly would not protect it,
    # since the token is in every form anyway, and the Swagger UI sends it from the cookie.
    assert cookies_of(response)["csrftoken"]["secure"] is True


def test_https_responses_carry_hsts_and_plain_http_ones_do_not(server):
    response, body = Client(server, server.tokens["profile"]).request(
        "GET", "/api/v1/collections/", headers=HTTPS
    )
    assert response.status == 200, body
    assert response.getheader("Strict-Transport-Security") == HSTS
    response, _ = server.get("/healthz")
    assert response.getheader("Strict-Transport-Security") is None


@pytest.mark.parametrize("path", ["/api/v1/collections/", "/api/schema/", "/admin/login/"])
def test_plain_http_is_redirected_to_https(server, path):
    response, _ = Client(server, server.tokens["profile"]).request("GET", path)
    assert response.status == 301
    assert response.getheader("Location") == f"https://127.0.0.1:{server.port}{path}"


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_probes_and_metrics_answer_over_plain_http(server, path):
    response, body = server.get(path, Authorization=f"Bearer {METRICS_TOKEN}")
    assert response.status == 200, body[:500]


def test_forwarded_proto_https_is_honoured(server):
    response, body = Client(server, server.tokens["profile"]).request(
        "POST", "/api/v1/collections/", body={"name": "profiled"}, headers=HTTPS
    )
    assert response.status == 201, body
    assert response.getheader("Location") == f"https://127.0.0.1:{server.port}/api/v1/collections/profiled/"


# Throttling across workers --------------------------------------------------------------------


def access_log(server: Gunicorn, request_ids: set[str], timeout: float = 10) -> dict[str, tuple[str, int]]:
    """request id -> (worker pid, status), from gunicorn's access log; waits until every id is there."""
    deadline = time.monotonic() + timeout
    while True:
        found = {
            match.group(3): (match.group(1), int(match.group(2)))
            for match in ACCESS_LINE.finditer(server.log_path.read_text(errors="replace"))
            if match.group(3) in request_ids
        }
        if len(found) == len(request_ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_throttling_is_shared_by_all_workers(server):
    """Each worker sees more requests than the limit, yet only `limit` pass in all: one shared count."""
    client = Client(server, server.tokens["throttled"])
    responses: dict[str, tuple[int, str | None, bytes]] = {}
    lock = threading.Lock()

    def call(request_id: str) -> None:
        response, body = client.request(
            "GET", "/api/v1/collections/", headers={**HTTPS, "X-Request-ID": request_id}
        )
        with lock:
            responses[request_id] = (response.status, response.getheader("Retry-After"), body)

    served_by: dict[str, tuple[str, int]] = {}
    for batch in range(20):  # bounded: until both workers have each served more than the limit
        ids = [f"throttle-{batch}-{index}" for index in range(16)]
        threads = [threading.Thread(target=call, args=(request_id,)) for request_id in ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        served_by.update(access_log(server, set(ids)))
        per_worker: dict[str, int] = {}
        for pid, _ in served_by.values():
            per_worker[pid] = per_worker.get(pid, 0) + 1
        if len(per_worker) == 2 and min(per_worker.values()) > THROTTLE_LIMIT:
            break
    else:
        pytest.fail(f"the requests did not spread over both workers: {per_worker}")

    statuses = [status for status, _, _ in responses.values()]
    assert statuses.count(200) == THROTTLE_LIMIT, per_worker
    assert statuses.count(429) == len(responses) - THROTTLE_LIMIT
    refused_by = {
        served_by[request_id][0] for request_id, (status, _, _) in responses.items() if status == 429
    }
    assert len(refused_by) == 2, "both workers refuse once the shared count is spent"
    for status, retry_after, body in responses.values():
        if status == 429:
            assert 1 <= int(retry_after) <= 3600
            problem = json.loads(body)
            assert (problem["status"], problem["code"]) == (429, "throttled")

    # Another service is not affected by this one's count.
    response, _ = Client(server, server.tokens["profile"]).request(
        "GET", "/api/v1/collections/", headers=HTTPS
    )
    assert response.status == 200
