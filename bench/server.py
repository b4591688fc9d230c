"""Nucleus as the benchmark runs it: manage.py commands and a production-mode gunicorn, as subprocesses."""

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.api import Api

REPO_ROOT = Path(__file__).resolve().parent.parent
APP = "nucleus_project.asgi:application"  # as the Dockerfile's CMD
# Variables that would change what Nucleus or gunicorn does; the benchmark sets what it needs itself.
_INHERITED_PREFIXES = (
    "DJANGO_", "NUCLEUS_", "GUNICORN_", "SECURE_", "SESSION_", "CSRF_", "DATABASE_", "PROMETHEUS_",
)  # fmt: skip
_INHERITED_NAMES = {"SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "STATIC_ROOT", "WEB_CONCURRENCY", "LOG_LEVEL"}


def nucleus_env(database_url: str, backup_dir: Path, **overrides: str) -> dict[str, str]:
    """Production settings (DEBUG off) against the benchmark's database, throttling off."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in _INHERITED_NAMES and not name.startswith(_INHERITED_PREFIXES)
    }
    env.update(
        DATABASE_URL=database_url,
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        NUCLEUS_THROTTLE_RATE="off",
        NUCLEUS_BACKUP_DIR=str(backup_dir),
        NUCLEUS_VAR_DIR=str(backup_dir.parent),
    )
    env.update(overrides)
    return env


def manage(*args: str, env: dict[str, str], timeout: float = 3600) -> subprocess.CompletedProcess:
    """Run manage.py; raise with its output if it fails."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"manage.py {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}"
        )
    return result


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerConfig:
    workers: int
    threads: int
    max_requests: int | None = None  # None: gunicorn.conf.py's default (GUNICORN_MAX_REQUESTS)

    def describe(self) -> dict:
        return {
            "server": "gunicorn (uvicorn worker) with the image's gunicorn.conf.py, DEBUG=false",
            "workers": self.workers,
            "threads": self.threads,
            "max_requests": "gunicorn.conf.py default (10000)"
            if self.max_requests is None
            else self.max_requests,
        }


class Server:
    """A gunicorn master and its workers in a process group of their own."""

    def __init__(self, config: ServerConfig, env: dict[str, str], log_path: Path):
        self.config = config
        self.port = free_port()
        self.env = dict(env, GUNICORN_WORKERS=str(config.workers), GUNICORN_THREADS=str(config.threads))
        if config.max_requests is not None:
            self.env["GUNICORN_MAX_REQUESTS"] = str(config.max_requests)
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "Server":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self, timeout: float = 60) -> None:
        command = [
            sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py",
            "--bind", f"127.0.0.1:{self.port}", APP,
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        api = Api(self.base_url, token="none", timeout=5)
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"gunicorn exited at start; see {self.log_path}")
                try:
                    api.get("/healthz")
                    if len(self.worker_pids()) >= self.config.workers:
                        return
                except OSError:
                    api.close()
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"gunicorn did not answer within {timeout}s; see {self.log_path}")
                time.sleep(0.1)
        finally:
            api.close()

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def worker_pids(self) -> list[int]:
        """The master's child processes (its workers), from /proc."""
        if self.process is None:
            return []
        master = self.process.pid
        children = Path(f"/proc/{master}/task/{master}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except OSError:
            pids = []
            for status in Path("/proc").glob("[0-9]*/status"):
                try:
                    fields = dict(
                        line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
                    )
                except OSError:
                    continue
                if fields.get("PPid", "").strip() == str(master):
                    pids.append(int(status.parent.name))
            return pids


def _status_kib(pid: int, name: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class MemorySampler:
    """Polls the RSS of the server's workers while a phase runs; VmHWM gives each worker's true peak."""

    server: Server
    interval: float = 0.02
    trace_interval: float = 1.0
    samples: int = 0
    peak_rss_kib: dict[int, int] = field(default_factory=dict)
    # (seconds since start, the largest worker RSS in MB) every trace_interval: flat while paging.
    trace: list[tuple[float, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def rss_kib(self) -> dict[int, int]:
        return {
            pid: kib for pid in self.server.worker_pids() if (kib := _status_kib(pid, "VmRSS")) is not None
        }

    def hwm_kib(self) -> dict[int, int]:
        return {
            pid: kib for pid in self.server.worker_pids() if (kib := _status_kib(pid, "VmHWM")) is not None
        }

    def __enter__(self) -> "MemorySampler":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        began = time.monotonic()
        traced = began - self.trace_interval
        while not self._stop.is_set():
            rss = self.rss_kib()
            for pid, kib in rss.items():
                self.peak_rss_kib[pid] = max(kib, self.peak_rss_kib.get(pid, 0))
            self.samples += 1
            now = time.monotonic()
            if rss and now - traced >= self.trace_interval:
                self.trace.append((round(now - began, 1), round(max(rss.values()) / 1024, 1)))
                traced = now
            self._stop.wait(self.interval)
