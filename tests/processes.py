"""Real Nucleus processes for the tests that need them: manage.py and gunicorn run as subprocesses.

Shared by tests/test_deployment.py (the image's command, on SQLite) and tests/faults/ (a server killed
and restarted against a throwaway PostgreSQL cluster).
"""

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
APP = "nucleus_project.asgi:application"  # the Dockerfile's CMD serves the ASGI application
SUBPROCESS_TIMEOUT = 60
START_TIMEOUT = 20
STOP_TIMEOUT = 15
# Inherited variables that would change what a subprocess does; every test sets what it needs itself.
_INHERITED_PREFIXES = ("DJANGO_", "NUCLEUS_", "GUNICORN_", "SECURE_", "SESSION_", "CSRF_", "PROMETHEUS_")
_INHERITED_NAMES = {
    "DATABASE_URL",
    "SECRET_KEY",
    "DEBUG",
    "ALLOWED_HOSTS",
    "STATIC_ROOT",
    "WEB_CONCURRENCY",
    "FORWARDED_ALLOW_IPS",
}


def clean_env(**overrides: str) -> dict[str, str]:
    """os.environ without the variables that configure Nucleus or gunicorn, plus `overrides`."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in _INHERITED_NAMES and not name.startswith(_INHERITED_PREFIXES)
    }
    env.update(overrides)
    return env


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT
    )


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return run([sys.executable, "manage.py", *args], env)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gunicorn_command(port: int, *options: str) -> list[str]:
    """The image's server command (Dockerfile CMD: gunicorn.conf.py), bound to 127.0.0.1:port."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "gunicorn.conf.py",
        "--bind",
        f"127.0.0.1:{port}",
        *options,
        APP,
    ]


class Gunicorn:
    """A gunicorn master and its workers in a process group of their own, so that kill() reaches all.

    The log of every start is appended to log_path (stdout and stderr, unless stderr_path separates
    stderr). Use as a context manager, or call stop() in a finally: a test never leaves a server behind.
    The workers' metric files go to a directory beside the log unless env names one
    (NUCLEUS_METRICS_DIR; empty: gunicorn.conf.py makes one), so a killed server leaves none behind.
    """

    def __init__(
        self,
        command: list[str],
        *,
        port: int,
        env: dict[str, str],
        log_path: Path,
        stderr_path: Path | None = None,
    ):
        self.command = command
        self.port = port
        self.env = {"NUCLEUS_METRICS_DIR": str(log_path.parent / f"metrics-{port}"), **env}
        self.log_path = log_path
        self.stderr_path = stderr_path
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "Gunicorn":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> "Gunicorn":
        """Start the server and wait until /healthz answers."""
        assert not self.running, "the server is running already"
        with self.log_path.open("ab") as log, open(self.stderr_path or os.devnull, "ab") as errors:
            self.process = subprocess.Popen(
                self.command,
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=errors if self.stderr_path else subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                self.process = None
                pytest.fail(f"gunicorn exited at start:\n{self.log_tail()}")
            try:
                self.get("/healthz")
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"gunicorn did not answer within {timeout}s:\n{self.log_tail()}")
                time.sleep(0.05)

    def get(self, path: str, **headers: str) -> tuple[http.client.HTTPResponse, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            return response, response.read()
        finally:
            connection.close()

    def kill(self) -> None:
        """SIGKILL the master and every worker at once, as a crash or an OOM kill would."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT)
        self.process = None

    def stop(self) -> None:
        """Graceful stop (SIGTERM to the master); SIGKILL to the whole group if it does not finish."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None

    def worker_pids(self) -> list[int]:
        """The master's child processes (its workers), from /proc."""
        if self.process is None:
            return []
        master = self.process.pid
        return [int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()]

    def log_tail(self, chars: int = 4000) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]


def status_kib(pid: int, name: str) -> int:
    """A memory figure of a process from /proc/<pid>/status in KiB, e.g. VmRSS or VmHWM (its peak RSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise LookupError(f"/proc/{pid}/status has no {name}")
