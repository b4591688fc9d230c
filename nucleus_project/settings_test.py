"""Test settings: the real settings, with a fast password hasher and a local cache."""

from nucleus_project.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
NUCLEUS_TOKEN_TOUCH_INTERVAL = 0
