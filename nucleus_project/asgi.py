"""ASGI entry point: the server's application (gunicorn with nucleus_project.server.Worker).

Every request but a long-poll runs through Django's WSGI handler on a fixed pool of request threads,
as under gunicorn's gthread worker: `threads` per process, each with its persistent database
connection. A long-poll (GET or HEAD /collections/{name}/events/ with wait > 0) goes to Django's ASGI
handler instead, whose view makes its checks and reads on the same request threads but waits on the
event loop, holding neither a request thread nor a database connection (docs/operations.md,
Long-polls).
"""

import logging
import os

from a2wsgi import WSGIMiddleware
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.http import QueryDict
from django.urls import Resolver404, resolve
from django.utils.module_loading import import_string

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nucleus_project.settings")

from nucleus_project.wsgi import application as wsgi_application  # sets Django up: before the imports below

# isort: split
from core.api.views import EventListView, events_long_poll
from core.long_polls import stream_watcher

DEFAULT_THREADS = 4
logger = logging.getLogger("nucleus.server")


class LongPollHandler(ASGIHandler):
    """Django's ASGI handler for long-polls only: their route is served by the async events_long_poll."""

    def __init__(self):
        super().__init__()
        synchronous = [
            path for path in settings.MIDDLEWARE if not getattr(import_string(path), "async_capable", False)
        ]
        self.threadless = not synchronous
        if synchronous:
            logger.warning(
                "Middleware %s works only synchronously: every waiting long-poll holds a thread.",
                ", ".join(synchronous),
            )

    async def __call__(self, scope, receive, send):
        if not self.threadless:
            await super().__call__(scope, receive, send)
            return
        # Without the ThreadSensitiveContext that Django opens per request, the middleware's short
        # synchronous steps share asgiref's one thread, instead of each long-poll getting a thread of
        # its own that would sit idle through the whole wait.
        await self.handle(scope, receive, send)

    def resolve_request(self, request):
        match = super().resolve_request(request)
        match.func = events_long_poll
        return match


class Application:
    """Routes long-polls to the event loop and everything else to the request threads."""

    def __init__(self, threads: int = DEFAULT_THREADS):
        self.long_polls = LongPollHandler()
        self.configure(threads=threads)

    def configure(self, *, threads: int) -> None:
        """Size the pool of request threads (gunicorn's `threads`); before the first request."""
        self.requests = WSGIMiddleware(wsgi_application, workers=threads)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http" and is_long_poll(scope):
            await self.long_polls({**scope, "nucleus.executor": self.requests.executor}, receive, send)
        else:
            await self.requests(scope, receive, send)

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                stream_watcher().stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


def is_long_poll(scope) -> bool:
    """A GET (or HEAD) of a stream's events with a wait above 0 and no body (the view refuses a
    malformed wait).

    The query is read by Django's own QueryDict, as the view reads it, so that no spelling of `wait`
    (`wai%74=5`) reaches a request thread as a long-poll. A request announcing a body goes to the request
    threads, where the body limit holds before anything is read (Django's ASGI handler would spool the
    whole body first); there it does not wait (EventListView.get).
    """
    if scope["method"] not in ("GET", "HEAD") or not scope["query_string"]:
        return False
    if any(
        name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0")
        for name, value in scope.get("headers", ())
    ):
        return False
    wait = QueryDict(scope["query_string"]).get("wait")
    try:
        if wait is None or not float(wait) > 0:
            return False
    except ValueError:
        return False
    try:
        match = resolve(scope["path"])
    except Resolver404:
        return False
    return getattr(match.func, "view_class", None) is EventListView


application = Application()
