"""Nucleus settings: every value comes from the environment, with safe development defaults."""

from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from core.identity import jwt_config
from core.throttling import parse_rate
from nucleus_project.env import env_bool, env_int, env_list, env_networks, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("NUCLEUS_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", True)

_DEV_SECRET_KEY = "nucleus-development-only-secret-key-do-not-use-in-production"
SECRET_KEY = env_str("SECRET_KEY", _DEV_SECRET_KEY if DEBUG else "")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

if not DEBUG:
    if len(SECRET_KEY) < 50 or SECRET_KEY == _DEV_SECRET_KEY or len(set(SECRET_KEY)) < 5:
        raise ImproperlyConfigured(
            "SECRET_KEY is missing or weak while DEBUG is off. Set SECRET_KEY to at least 50 random "
            "characters, e.g. from: python -c 'import secrets; print(secrets.token_urlsafe(64))'"
        )
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured(
            "ALLOWED_HOSTS is empty while DEBUG is off. Set ALLOWED_HOSTS to the comma-separated host "
            "names Nucleus is served under, e.g. ALLOWED_HOSTS=nucleus.example.com"
        )

NUCLEUS_VERSION = env_str("NUCLEUS_VERSION", "dev")
NUCLEUS_REVISION = env_str("NUCLEUS_REVISION", "unknown")
NUCLEUS_BACKUP_DIR = Path(env_str("NUCLEUS_BACKUP_DIR", str(VAR_DIR / "backups")))
# Backups (README, Backups and restore): retention keeps the newest N per engine, and those younger
# than D days (0: off); the admin warns when the newest usable backup is older than
# NUCLEUS_BACKUP_MAX_AGE_HOURS.
NUCLEUS_BACKUP_KEEP = env_int("NUCLEUS_BACKUP_KEEP", 10)
NUCLEUS_BACKUP_KEEP_DAYS = env_int("NUCLEUS_BACKUP_KEEP_DAYS", 0)
NUCLEUS_BACKUP_MAX_AGE_HOURS = env_int("NUCLEUS_BACKUP_MAX_AGE_HOURS", 26)
if NUCLEUS_BACKUP_KEEP < 1:
    raise ImproperlyConfigured("NUCLEUS_BACKUP_KEEP must be at least 1 (the number of backups to keep).")
if NUCLEUS_BACKUP_KEEP_DAYS < 0 or NUCLEUS_BACKUP_MAX_AGE_HOURS < 1:
    raise ImproperlyConfigured(
        "NUCLEUS_BACKUP_KEEP_DAYS must be 0 (off) or more, and NUCLEUS_BACKUP_MAX_AGE_HOURS at least 1."
    )
# Backup manifests are signed (docs/hardening.md, Backup manifest signing): with this key, by default
# SECRET_KEY (backups.signing derives the HMAC key from it with a salt of its own), and verified with it
# or any of the fallbacks, so that the key can be rotated.
NUCLEUS_BACKUP_SIGNING_KEY = env_str("NUCLEUS_BACKUP_SIGNING_KEY")
NUCLEUS_BACKUP_SIGNING_KEY_FALLBACKS = env_list("NUCLEUS_BACKUP_SIGNING_KEY_FALLBACKS", [])
if any(
    len(key) < 32 or "," in key
    for key in [NUCLEUS_BACKUP_SIGNING_KEY, *NUCLEUS_BACKUP_SIGNING_KEY_FALLBACKS]
    if key
):
    raise ImproperlyConfigured(
        "NUCLEUS_BACKUP_SIGNING_KEY and each of the comma-separated NUCLEUS_BACKUP_SIGNING_KEY_FALLBACKS "
        "must be at least 32 characters without commas, e.g. from: python -c 'import secrets; "
        "print(secrets.token_urlsafe(48))'; or leave the key empty to use SECRET_KEY."
    )
DBBACKUP_CLEANUP_KEEP = NUCLEUS_BACKUP_KEEP  # dbbackup's own cleanup agrees with Nucleus' retention
DBBACKUP_HOSTNAME = "nucleus"
# How often a token's last_used_at is written at most (seconds); reads stay cheap.
NUCLEUS_TOKEN_TOUCH_INTERVAL = env_int("NUCLEUS_TOKEN_TOUCH_INTERVAL", 60)
NUCLEUS_IDEMPOTENCY_TTL_HOURS = env_int("NUCLEUS_IDEMPOTENCY_TTL_HOURS", 24)
# An unfinished claim older than this belongs to a crashed request and may be taken over.
NUCLEUS_IDEMPOTENCY_STALE_SECONDS = env_int("NUCLEUS_IDEMPOTENCY_STALE_SECONDS", 90)
# Identity-service JWTs (off unless a public key is set) and per-principal throttling (README, The API);
# both are checked here, so that a mistake stops start-up with the fix in the message.
NUCLEUS_JWT = jwt_config(
    public_key=env_str("NUCLEUS_JWT_PUBLIC_KEY"),
    public_key_file=env_str("NUCLEUS_JWT_PUBLIC_KEY_FILE"),
    issuer=env_str("NUCLEUS_JWT_ISSUER"),
    audience=env_str("NUCLEUS_JWT_AUDIENCE"),
    algorithms=env_list("NUCLEUS_JWT_ALGORITHMS", ["RS256", "ES256"]),
    leeway=env_int("NUCLEUS_JWT_LEEWAY_SECONDS", 30),
)
NUCLEUS_THROTTLE_RATE = env_str("NUCLEUS_THROTTLE_RATE", "6000/min")
NUCLEUS_THROTTLE_OPERATOR_RATE = env_str("NUCLEUS_THROTTLE_OPERATOR_RATE", "off")
parse_rate(NUCLEUS_THROTTLE_RATE, setting="NUCLEUS_THROTTLE_RATE")
parse_rate(NUCLEUS_THROTTLE_OPERATOR_RATE, setting="NUCLEUS_THROTTLE_OPERATOR_RATE")
# Long-polls (`GET /events/?wait=`) waiting at once in one server process (docs/operations.md, Long-polls):
# past the total a long-poll gets 503, past one caller's share 429, both with Retry-After.
NUCLEUS_LONG_POLL_MAX_WAITING = env_int("NUCLEUS_LONG_POLL_MAX_WAITING", 500)
NUCLEUS_LONG_POLL_MAX_WAITING_PER_CALLER = env_int("NUCLEUS_LONG_POLL_MAX_WAITING_PER_CALLER", 100)
if NUCLEUS_LONG_POLL_MAX_WAITING < 1 or NUCLEUS_LONG_POLL_MAX_WAITING_PER_CALLER < 1:
    raise ImproperlyConfigured(
        "NUCLEUS_LONG_POLL_MAX_WAITING and NUCLEUS_LONG_POLL_MAX_WAITING_PER_CALLER must be at least 1 "
        "(long-polls waiting at once per server process, in all and per caller)."
    )
# Who may read /metrics (README, Metrics): signed-in operators, callers presenting NUCLEUS_METRICS_TOKEN,
# and clients whose address is in NUCLEUS_METRICS_ALLOW_CIDRS: by default the loopback addresses while
# DEBUG is on, and no network at all in production (a proxy on the same host would make everyone local).
NUCLEUS_METRICS_ALLOW_CIDRS = env_networks(
    "NUCLEUS_METRICS_ALLOW_CIDRS", ["127.0.0.0/8", "::1"] if DEBUG else []
)
NUCLEUS_METRICS_TOKEN = env_str("NUCLEUS_METRICS_TOKEN")
if NUCLEUS_METRICS_TOKEN and len(NUCLEUS_METRICS_TOKEN) < 32:
    raise ImproperlyConfigured(
        "NUCLEUS_METRICS_TOKEN is shorter than 32 characters. Set it to a random value, e.g. from: "
        "python -c 'import secrets; print(secrets.token_urlsafe(32))', or leave it empty to turn it off."
    )

# Admin sign-in lockout (docs/hardening.md): after this many failed sign-ins of one username from one
# address, that pair is refused (429) for the cool-off, or until `manage.py axes_reset_username` when 0.
NUCLEUS_ADMIN_LOGIN_FAILURE_LIMIT = env_int("NUCLEUS_ADMIN_LOGIN_FAILURE_LIMIT", 5)
NUCLEUS_ADMIN_LOCKOUT_MINUTES = env_int("NUCLEUS_ADMIN_LOCKOUT_MINUTES", 15)
if NUCLEUS_ADMIN_LOGIN_FAILURE_LIMIT < 1 or NUCLEUS_ADMIN_LOCKOUT_MINUTES < 0:
    raise ImproperlyConfigured(
        "NUCLEUS_ADMIN_LOGIN_FAILURE_LIMIT must be at least 1, and NUCLEUS_ADMIN_LOCKOUT_MINUTES 0 (locked "
        "until `manage.py axes_reset_username NAME`) or more."
    )

INSTALLED_APPS = [
    # Admin modules are discovered by the URLconf (admin.autodiscover() there), not at start-up, so
    # that management commands such as dbbackup and dbrestore start quickly.
    "django.contrib.admin.apps.SimpleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "reversion",
    "backups",  # before dbbackup: its dbbackup, dbrestore and listbackups commands wrap dbbackup's
    "dbbackup",
    "django_prometheus",
    "core",
    "schemas",
]

MIDDLEWARE = [
    "core.middleware.RequestIdMiddleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "core.middleware.StaticFilesMiddleware",  # whitenoise, in both of Django's modes
    "core.middleware.BodySizeLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # After everything that may answer a sign-in: turns a locked-out attempt into the 429 page.
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

# django-axes watches sign-ins (its backend refuses a locked-out one before the password is checked);
# ModelBackend signs in. Service tokens and JWTs never go through these (core/authentication.py).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = NUCLEUS_ADMIN_LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=NUCLEUS_ADMIN_LOCKOUT_MINUTES) or None  # 0: until reset
# Per username and address: a stranger cannot lock an operator out from elsewhere, and one address
# gets AXES_FAILURE_LIMIT guesses per account. The address is REMOTE_ADDR, never a forwarded header
# that a client could forge (behind a proxy it is the proxy's, so the lockout is then per username).
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "admin/locked_out.html"
AXES_DISABLE_ACCESS_LOG = True  # failures are kept (AccessAttempt); every successful sign-in need not be
# No start-up line on every command's stdout; failures and lockouts are still logged, without the
# username and address (axes masks them).
AXES_VERBOSE = False

ROOT_URLCONF = "nucleus_project.urls"
WSGI_APPLICATION = "nucleus_project.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "core.context_processors.nucleus_build",
            ],
        },
    },
]


def _database_config() -> dict:
    url = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'nucleus.sqlite3'}")
    try:
        config = dj_database_url.parse(url, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60))
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a database URL Nucleus understands: {exc}")
    if config["ENGINE"] == "django.db.backends.sqlite3":
        if config["NAME"] != ":memory:":
            # A fresh checkout has no var/: `manage.py migrate` should just work, as `make run` does.
            Path(config["NAME"]).parent.mkdir(parents=True, exist_ok=True)
        config["CONN_MAX_AGE"] = 0
        config["OPTIONS"] = {
            # Writers queue on the lock instead of failing with "database is locked".
            "timeout": env_int("SQLITE_BUSY_TIMEOUT", 30),
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
        }
    elif config["ENGINE"] == "django.db.backends.postgresql":
        config["CONN_HEALTH_CHECKS"] = True
        # A runaway statement is cancelled (SQLSTATE 57014, a 503 database_timeout) instead of holding
        # a connection and its locks; 0 turns it off, e.g. for a long one-off `manage.py migrate`.
        timeout_ms = env_int("DATABASE_STATEMENT_TIMEOUT_MS", 30000)
        if timeout_ms < 0:
            raise ImproperlyConfigured(
                "DATABASE_STATEMENT_TIMEOUT_MS must be 0 (off) or a number of milliseconds."
            )
        if timeout_ms:
            options = config.setdefault("OPTIONS", {})
            given = options.get("options", "")
            options["options"] = f"{given} -c statement_timeout={timeout_ms}".strip()
        # Behind a pooler in transaction mode (PgBouncer) a cursor cannot outlive its transaction
        # (docs/operations.md, Connection pooling).
        config["DISABLE_SERVER_SIDE_CURSORS"] = env_bool("DATABASE_DISABLE_SERVER_SIDE_CURSORS", False)
    if config["ENGINE"] in ("django.db.backends.sqlite3", "django.db.backends.postgresql"):
        # django-prometheus' subclass of the same backend counts and times every statement (README, Metrics).
        config["ENGINE"] = config["ENGINE"].replace("django.db.", "django_prometheus.db.", 1)
    return config


DATABASES = {"default": _database_config()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
    "dbbackup": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        # Dumps hold every record and token hash: readable by the service's user only.
        "OPTIONS": {
            "location": str(NUCLEUS_BACKUP_DIR),
            "file_permissions_mode": 0o600,
            "directory_permissions_mode": 0o700,
        },
    },
}

# Limits of NUCLEUS.md section 7.
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
NUCLEUS_MAX_BODY_BYTES = DATA_UPLOAD_MAX_MEMORY_SIZE
NUCLEUS_MAX_RECORD_BYTES = 1024 * 1024
NUCLEUS_MAX_BATCH = 1000
NUCLEUS_MAX_PAGE_SIZE = 1000
NUCLEUS_DEFAULT_PAGE_SIZE = 100
# A page of records, history, events or schema versions ends early once its serialized size passes
# this many bytes (README, The API): 1000 records of 1 MiB would otherwise be a gigabyte in a worker.
NUCLEUS_PAGE_MAX_BYTES = env_int("NUCLEUS_PAGE_MAX_BYTES", 8 * 1024 * 1024)
if NUCLEUS_PAGE_MAX_BYTES < 1:
    raise ImproperlyConfigured(
        "NUCLEUS_PAGE_MAX_BYTES must be a positive number of bytes (default 8388608, 8 MiB)."
    )
NUCLEUS_MAX_JSON_DEPTH = 64
# The cost of a schema (docs/hardening.md, Schema limits): the largest definition accepted, in bytes of
# compact UTF-8 JSON (a 413 above it), and the steps of work the compatibility checker may spend on one
# question before it answers "incompatible: too complex to prove".
NUCLEUS_SCHEMA_MAX_BYTES = env_int("NUCLEUS_SCHEMA_MAX_BYTES", 256 * 1024)
NUCLEUS_SCHEMA_COMPAT_BUDGET = env_int("NUCLEUS_SCHEMA_COMPAT_BUDGET", 200_000)
if NUCLEUS_SCHEMA_MAX_BYTES < 1 or NUCLEUS_SCHEMA_COMPAT_BUDGET < 1:
    raise ImproperlyConfigured(
        "NUCLEUS_SCHEMA_MAX_BYTES and NUCLEUS_SCHEMA_COMPAT_BUDGET must be positive integers, e.g. "
        "NUCLEUS_SCHEMA_MAX_BYTES=262144 and NUCLEUS_SCHEMA_COMPAT_BUDGET=200000."
    )
# How deep arrays and objects may nest in a request body, counted before parsing (a 400 beyond it), so
# that the recursive parser and serializers run far inside Python's recursion limit whatever the stack.
NUCLEUS_MAX_BODY_DEPTH = 128

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "core.authentication.IdentityJWTAuthentication",
        "core.authentication.ServiceTokenAuthentication",
        "core.authentication.OperatorSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.api.parsers.StrictJSONParser"],
    "EXCEPTION_HANDLER": "core.api.problems.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["core.throttling.PrincipalRateThrottle"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "STRICT_JSON": True,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Nucleus API",
    "DESCRIPTION": "The central data service: collections, records, history and idempotent writes.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "PREPROCESSING_HOOKS": ["core.api.openapi.only_canonical_paths"],
    # Swagger UI and Redoc from drf-spectacular-sidecar's static files: nothing from a CDN, so the
    # viewers work offline and run no third-party script (docs/hardening.md).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # No validator badge: it would send the document's address to validator.swagger.io.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
}

# Content-Security-Policy on every response (docs/hardening.md): scripts, styles, fonts and fetches from
# this origin only, no inline script, no eval. The admin's styles are files (core/static/nucleus/);
# the API viewers add inline styles and a blob: worker for themselves (nucleus_project/urls.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],  # the admin's and Swagger UI's icons are data: SVGs in their CSS
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    # Health probes (Docker HEALTHCHECK, load balancers) and Prometheus speak plain HTTP to the container.
    SECURE_REDIRECT_EXEMPT = [r"^(healthz|readyz|metrics)/?$"]
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_CONTENT_TYPE_NOSNIFF = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "core.logging.RequestIdFilter"},
        "request_line": {"()": "core.logging.RequestLineFilter"},
    },
    "formatters": {"json": {"()": "core.logging.JsonFormatter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "json",
            "filters": ["request_id"],
        },
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # The development server logs each request line: without its query string (a `where` holds data).
    "loggers": {
        "django.server": {
            "handlers": ["console"],
            "level": "INFO",
            "propagate": False,
            "filters": ["request_line"],
        }
    },
}
