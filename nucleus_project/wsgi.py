"""WSGI entry point (gunicorn nucleus_project.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

from core.middleware import ChunkedBodyMiddleware

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nucleus_project.settings")
# Django reads no body without Content-Length: gunicorn's de-chunked bodies get theirs first.
application = ChunkedBodyMiddleware(get_wsgi_application())

# Load the URLconf (and with it the views, the admin modules and the OpenAPI extensions) now: with
# gunicorn's preload_app the workers fork with it loaded, instead of each importing it on its first
# request. manage.py commands never import this module, so they do not pay for it.
get_resolver().url_patterns  # noqa: B018 - evaluated for its side effect
