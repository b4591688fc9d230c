"""WSGI entry point (gunicorn nucleus_project.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nucleus_project.settings")
application = get_wsgi_application()
