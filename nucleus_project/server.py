"""The gunicorn worker of the image (gunicorn.conf.py): uvicorn serving nucleus_project.asgi, set up to
behave as the gthread worker did where clients and operators can tell.

- `threads` sizes the application's pool of request threads (nucleus_project.asgi); a WSGI
  application is served on such a pool too;
- the client address is the peer's, never taken from X-Forwarded-For (as gunicorn leaves REMOTE_ADDR);
- gunicorn's access log (GUNICORN_ACCESS_LOG, --access-logformat) is written, not uvicorn's own;
- no Server header;
- when the worker stops (SIGTERM, or recycled after max_requests) waiting long-polls answer at once
  with what they have, instead of holding the shutdown for up to their `wait`.
"""

import datetime
import inspect
import sys
import time

from a2wsgi import WSGIMiddleware
from gunicorn.arbiter import Arbiter
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker


class Worker(UvicornWorker):
    CONFIG_KWARGS = {
        "loop": "auto",
        "http": "auto",
        "proxy_headers": False,
        "access_log": False,
        "server_header": False,
    }

    async def _serve(self) -> None:
        app = self.wsgi  # gunicorn's name for the loaded application, ASGI here
        if hasattr(app, "configure"):
            app.configure(threads=self.cfg.threads)
        elif not (inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(app.__call__)):
            # A WSGI application (gunicorn reads gunicorn.conf.py by default, also for a command that
            # names nucleus_project.wsgi): served as it would be by gthread, on the request threads.
            app = WSGIMiddleware(app, workers=self.cfg.threads)
        self.config.app = AccessLog(app, self.log) if self.log.access_log_enabled else app
        server = _Server(config=self.config)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)


class _Server(Server):
    async def shutdown(self, sockets=None) -> None:
        from core.long_polls import stream_watcher

        stream_watcher().close()
        await super().shutdown(sockets=sockets)


class AccessLog:
    """gunicorn's access log line for every HTTP request, in its configured format."""

    def __init__(self, app, log):
        self.app = app
        self.log = log

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        response = _Response()
        started = time.monotonic()

        async def send_logged(message) -> None:
            if message["type"] == "http.response.start":
                response.status = message["status"]
                response.headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in message["headers"]]
            elif message["type"] == "http.response.body":
                response.sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        finally:
            request_time = datetime.timedelta(seconds=time.monotonic() - started)
            self.log.access(response, _Request(scope), _environ(scope), request_time)


class _Response:
    def __init__(self):
        self.status = 500  # until the application starts a response
        self.headers: list[tuple[str, str]] = []
        self.sent = 0


class _Request:
    def __init__(self, scope):
        self.headers = [(n.decode("latin-1").upper(), v.decode("latin-1")) for n, v in scope["headers"]]


def _environ(scope) -> dict[str, str]:
    """The WSGI environ keys that gunicorn's log atoms read."""
    query = scope["query_string"].decode("latin-1")
    raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
    environ = {
        "REQUEST_METHOD": scope["method"],
        "RAW_URI": f"{raw_path}?{query}" if query else raw_path,
        "PATH_INFO": scope["path"],
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "REMOTE_ADDR": scope["client"][0] if scope.get("client") else "-",
    }
    for name, value in scope["headers"]:
        environ["HTTP_" + name.decode("latin-1").upper().replace("-", "_")] = value.decode("latin-1")
    return environ
