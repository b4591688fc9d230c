"""Gunicorn settings of the Docker image; the bind address and the WSGI app are in the Dockerfile's CMD."""

import os


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


# Each worker holds its own database connections; size GUNICORN_WORKERS x GUNICORN_THREADS
# against PostgreSQL's max_connections across all replicas.
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
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
