"""Test settings: the real settings, with a fast password hasher and a local cache."""

from nucleus_project.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
NUCLEUS_TOKEN_TOUCH_INTERVAL = 0
# Throttling counts every request with one statement, which query-count assertions would see: it is
# off here and turned on by the tests that exercise it (override_settings). JWTs are off too, whatever
# the developer's environment says; tests/core/test_jwt_auth.py configures its own keys.
NUCLEUS_THROTTLE_RATE = "off"
NUCLEUS_THROTTLE_OPERATOR_RATE = "off"
NUCLEUS_JWT = None
# /metrics: no network is trusted, whatever DEBUG says, so that the test client (127.0.0.1) is just a
# caller; tests/test_observability.py sets networks of its own.
NUCLEUS_METRICS_ALLOW_CIDRS = []
# The SQLite test database lives in memory. Said explicitly because pytest-xdist names a database per
# worker from TEST NAME, and only recognises the stock SQLite engine, not django-prometheus' subclass.
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": ":memory:"}  # noqa: F405
