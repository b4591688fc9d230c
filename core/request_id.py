"""The id of the request being served, for logs and history."""

import contextvars
import re
import uuid

_current: contextvars.ContextVar[str] = contextvars.ContextVar("nucleus_request_id", default="")
_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,200}$")


def request_id_from_header(value: str | None) -> str:
    """The caller's X-Request-ID when it is a sane token, else a new one."""
    if value and _ACCEPTABLE.fullmatch(value):
        return value
    return uuid.uuid4().hex


def get_request_id() -> str:
    return _current.get()


def set_request_id(value: str) -> contextvars.Token:
    return _current.set(value)


def reset_request_id(token: contextvars.Token) -> None:
    _current.reset(token)
