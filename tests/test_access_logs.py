"""The servers' own request logs never carry a query string: a `where` filter holds record data.

Real processes: the image's gunicorn command with its access log on, and `manage.py runserver` as
`make run` starts it. A client sends a secret in `where` (encoded and raw), in a Referer, and in a
malformed request line; the secret never appears in what the server prints, the path does.
"""

import json
import socket
import sys
import time
from urllib.parse import quote

from tests.processes import Gunicorn, clean_env, free_port, gunicorn_command, manage
from tests.test_deployment import production_env

SECRET = "123-45-6789"
PATH = "/api/v1/collections/items/records/"
WAIT = 10  # seconds for a log line to appear


def prepared(env: dict[str, str]) -> str:
    """Migrate, create the service `taxon` with its collection `items`; the token."""
    for step in (("migrate", "--noinput"), ("create_service", "taxon")):
        done = manage(*step, env=env)
        assert done.returncode == 0, done.stderr
    token = done.stdout.strip().splitlines()[-1]
    made = manage(
        "shell",
        "-c",
        "from core import services; from core.models import Service; from core.principals import Actor; "
        "services.collection_create(actor=Actor.system('test'), name='items', "
        "owner=Service.objects.get(name='taxon'))",
        env=env,
    )
    assert made.returncode == 0, made.stderr
    return token


def send_raw(port: int, request: bytes) -> bytes:
    """Send bytes as they are (a client that does not encode its URL); the status line of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        response = b""
        while chunk := sock.recv(65536):  # to the end: the request says Connection: close
            response += chunk
    return response.split(b"\r\n", 1)[0]


def leak_attempts(server: Gunicorn, token: str, headers: dict[str, str]) -> None:
    """Every way a client puts the secret into a request line or a header a server might log."""
    auth = {"Authorization": f"Bearer {token}", **headers}
    where = json.dumps({"ssn": SECRET})
    response, body = server.get(f"{PATH}?where={quote(where)}", **auth)
    assert response.status == 200, body
    response, body = server.get(f"{PATH}?where={quote(where)}", **auth, Referer=f"http://x/a/?q={SECRET}")
    assert response.status == 200, body
    lines = "".join(f"{name}: {value}\r\n" for name, value in {"Host": "127.0.0.1", **auth}.items())
    unencoded = f'GET {PATH}?where={{"ssn":"{SECRET}"}} HTTP/1.1\r\n{lines}Connection: close\r\n\r\n'
    assert send_raw(server.port, unencoded.encode()).startswith(b"HTTP/1.1 200"), "raw, without spaces"
    malformed = f'GET {PATH}?where={{"ssn": "{SECRET}"}} HTTP/1.1\r\n{lines}Connection: close\r\n\r\n'
    assert b" 400 " in send_raw(server.port, malformed.encode()), "a space in the query: refused"


def log_once_it_holds(server: Gunicorn, needle: str, count: int) -> str:
    """The server's output once needle is in it count times (or after WAIT seconds)."""
    deadline = time.monotonic() + WAIT
    while True:
        text = server.log_path.read_text(errors="replace")
        if text.count(needle) >= count or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


def test_gunicorn_logs_the_path_of_each_request_but_never_its_query_string(tmp_path):
    env = production_env(tmp_path, GUNICORN_ACCESS_LOG="-", GUNICORN_WORKERS="1")
    token = prepared(env)
    port = free_port()
    with Gunicorn(gunicorn_command(port), port=port, env=env, log_path=tmp_path / "gunicorn.log") as server:
        leak_attempts(server, token, {"X-Forwarded-Proto": "https"})
        log = log_once_it_holds(server, f'"GET {PATH} HTTP/1.1" 200', 3)

    assert log.count(f'"GET {PATH} HTTP/1.1" 200') == 3, log  # the access log is on, and names the path
    assert "Invalid HTTP request received" in log, log  # the server still says that it refused one
    assert SECRET not in log, log
    assert quote(SECRET) not in log


def test_the_development_server_logs_the_path_of_each_request_but_never_its_query_string(tmp_path):
    env = clean_env(
        DATABASE_URL=f"sqlite:///{tmp_path / 'nucleus.sqlite3'}", NUCLEUS_BACKUP_DIR=str(tmp_path)
    )
    token = prepared(env)
    port = free_port()
    command = [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]
    # The process helper runs any server command in a process group of its own, not only gunicorn.
    with Gunicorn(command, port=port, env=env, log_path=tmp_path / "runserver.log") as server:
        leak_attempts(server, token, {})
        log = log_once_it_holds(server, f'\\"GET {PATH} HTTP/1.1\\" 200', 3)  # JSON lines: quotes escaped

    served = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    request_lines = [entry["message"] for entry in served if entry["logger"] == "django.server"]
    assert sum(line.startswith(f'"GET {PATH} HTTP/1.1" 200 ') for line in request_lines) == 3, "\n".join(
        request_lines
    )
    assert any("Bad request syntax" in line for line in request_lines), request_lines
    assert SECRET not in log, log
    assert quote(SECRET) not in log
