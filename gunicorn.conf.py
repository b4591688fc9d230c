"""Gunicorn settings of the Docker image; the bind address and the ASGI app are in the Dockerfile's CMD."""

import os
import shutil
import tempfile
from pathlib import Path


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


# uvicorn workers (nucleus_project/server.py): each serves requests on `threads` request threads, as
# gthread did, and long-polls on its event loop without a thread (docs/operations.md, Long-polls).
worker_class = "nucleus_project.server.Worker"
# Each worker holds up to `threads` database connections plus one that LISTENs for long-polls; size
# GUNICORN_WORKERS x (GUNICORN_THREADS + 1) against PostgreSQL's max_connections across all replicas.
workers = _env_int("GUNICORN_WORKERS", 2)
threads = _env_int("GUNICORN_THREADS", 4)
timeout = _env_int("GUNICORN_TIMEOUT", 60)
graceful_timeout = _env_int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _env_int("GUNICORN_KEEPALIVE", 5)
# Recycle workers now and then so a slow leak cannot grow without bound.
max_requests = _env_int("GUNICORN_MAX_REQUESTS", 10000)
max_requests_jitter = max_requests // 10

# Import Django once in the master: a configuration error (weak SECRET_KEY, empty ALLOWED_HOSTS)
# stops the container at once instead of every worker failing to boot in turn.
preload_app = True
# The worker heartbeat file belongs in memory, not on the container's overlay filesystem (gunicorn's
# "blocking os.fchmod" FAQ); gunicorn creates it with mkstemp, so the shared directory is safe.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108

# Replicas are started and stopped by the orchestrator, not by gunicornc.
control_socket_disable = True

# Django logs application events as JSON lines; gunicorn's own log goes to stderr beside them.
errorlog = "-"
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
# The path, never the query string (`%(r)s`, `%(q)s`) nor the Referer (`%(f)s`, which may hold one):
# a `where` filter carries record data.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(a)s"'
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")

# Prometheus metrics of several workers (core/metrics.py): each worker writes its counters to files in
# one directory and /metrics adds up the files of all of them. prometheus_client finds the directory in
# PROMETHEUS_MULTIPROC_DIR, which must be set before it is imported, that is before preload_app
# imports Django: here, and only for the server, so that manage.py commands never write there.
# NUCLEUS_METRICS_DIR names the directory, emptied now: files of an earlier server would be added to
# this one's counts. By default each start gets a fresh one in memory, removed when the server stops.
if not os.environ.get("NUCLEUS_METRICS_DIR_READY"):  # once: a reload (HUP) reads this file again
    if os.environ.get("NUCLEUS_METRICS_DIR"):
        _metrics_dir = Path(os.environ["NUCLEUS_METRICS_DIR"])
        _metrics_dir.mkdir(parents=True, exist_ok=True)
        for _stale in _metrics_dir.glob("*.db"):
            _stale.unlink()
    else:
        _metrics_dir = Path(tempfile.mkdtemp(prefix="nucleus-metrics-", dir=worker_tmp_dir))
        os.environ["NUCLEUS_METRICS_DIR_MADE"] = str(_metrics_dir)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics_dir)
    os.environ["NUCLEUS_METRICS_DIR_READY"] = "1"


def child_exit(server, worker):
    """A worker is gone (recycled or crashed): its counters stay in the sums, its live gauges go."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if made := os.environ.get("NUCLEUS_METRICS_DIR_MADE"):
        shutil.rmtree(made, ignore_errors=True)


def on_starting(server):
    """gunicorn's warnings about malformed requests quote the request line: keep only the reason."""
    from core.logging import RequestLineFilter

    server.log.error_log.addFilter(RequestLineFilter())
