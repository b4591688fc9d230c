"""A small keep-alive HTTP client for Nucleus' API: one persistent connection per client.

http.client rather than requests or httpx: it adds the least client-side work per request, so the
figures are Nucleus' and not the client library's.
"""

import http.client
import json
from urllib.parse import quote, urlencode, urlsplit


class ApiError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: bytes):
        super().__init__(f"{method} {path} -> {status}: {body[:500].decode(errors='replace')}")
        self.status = status


class Api:
    def __init__(self, base_url: str, token: str, timeout: float = 120):
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.timeout = timeout
        self.headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            # Production sits behind a TLS-terminating proxy that sets this (DEBUG off redirects plain HTTP).
            "X-Forwarded-Proto": "https",
        }
        self.connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def close(self) -> None:
        self.connection.close()

    def request(
        self,
        method: str,
        path: str,
        body=None,
        *,
        headers: dict | None = None,
        expect: tuple[int, ...] = (200, 201),
    ) -> tuple[int, dict | None, http.client.HTTPResponse]:
        """Send a request on the kept-alive connection; reconnect once if the server closed it."""
        sent_headers = dict(self.headers)
        payload = None
        if body is not None:
            # bytes: a body encoded before the timed loop started.
            payload = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
            sent_headers["Content-Type"] = "application/json"
        if headers:
            sent_headers.update(headers)
        for attempt in (1, 2):
            try:
                self.connection.request(method, path, body=payload, headers=sent_headers)
                response = self.connection.getresponse()
                raw = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # An idle keep-alive connection closed by the server (keepalive timeout, a recycled
                # worker): the request never reached Nucleus, so sending it again is safe.
                self.connection.close()
                if attempt == 2:
                    raise
        if response.will_close:
            self.connection.close()
        if response.status not in expect:
            raise ApiError(method, path, response.status, raw)
        data = json.loads(raw) if raw else None
        return response.status, data, response

    def get(self, path: str, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body, **kwargs):
        return self.request("POST", path, body, **kwargs)

    def put(self, path: str, body, **kwargs):
        return self.request("PUT", path, body, **kwargs)


API = "/api/v1"


def collection_path(name: str) -> str:
    return f"{API}/collections/{quote(name, safe='')}"


def record_path(collection: str, key: str) -> str:
    return f"{collection_path(collection)}/records/{quote(key, safe='')}/"


def records_list_path(collection: str, **params) -> str:
    query = urlencode({name: value for name, value in params.items() if value is not None})
    return f"{collection_path(collection)}/records/" + (f"?{query}" if query else "")


def next_path(next_url: str | None) -> str | None:
    """The path and query of a `next` link (the link is absolute; the connection is ours)."""
    if not next_url:
        return None
    parts = urlsplit(next_url)
    return parts.path + (f"?{parts.query}" if parts.query else "")
