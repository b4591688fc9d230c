# Nucleus production image: gunicorn on port 8011 as a non-root user, static files served by whitenoise,
# PostgreSQL 15 client tools for dbbackup. It never migrates on start: run the one-off
# `docker compose run --rm nucleus python manage.py migrate` (docs/operations.md).
#
#   docker build --build-arg BUILD_ENV=production --build-arg BUILD_DATE=... \
#     --build-arg BUILD_VERSION=1.2.3 --build-arg VCS_REF=$(git rev-parse --short HEAD) .

FROM python:3.11-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt


FROM python:3.11-slim-bookworm

# pg_dump/pg_restore of the server's major version (bookworm ships PostgreSQL 15).
RUN apt-get update \
    && apt-get install -y --no-install-recommends "postgresql-client-15=15.*" \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 nucleus \
    && useradd --system --uid 10001 --gid nucleus --home-dir /var/lib/nucleus --no-create-home \
       --shell /usr/sbin/nologin nucleus \
    && install -d -o nucleus -g nucleus -m 0750 /var/lib/nucleus /var/lib/nucleus/backups

COPY --from=builder /opt/venv /opt/venv

ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DEBUG=false \
    DJANGO_SETTINGS_MODULE=nucleus_project.settings \
    NUCLEUS_BACKUP_DIR=/var/lib/nucleus/backups \
    STATIC_ROOT=/app/staticfiles

WORKDIR /app
COPY . .

# The throwaway key and host exist only for this step; the real ones come from the environment at run time.
RUN SECRET_KEY="collectstatic-at-build-time-only-not-a-secret-0123456789abcdef" \
    ALLOWED_HOSTS=localhost \
    python manage.py collectstatic --noinput --verbosity 0 \
    && python -m compileall -q .

# Build metadata last, so a new revision reuses every layer above.
ARG BUILD_ENV=production
ARG BUILD_DATE=""
ARG BUILD_VERSION=dev
ARG VCS_REF=unknown
LABEL org.opencontainers.image.title="Nucleus" \
      org.opencontainers.image.description="The central data service" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.version="${BUILD_VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      nucleus.build-env="${BUILD_ENV}"
ENV NUCLEUS_VERSION=$BUILD_VERSION \
    NUCLEUS_REVISION=$VCS_REF

USER 10001:10001
EXPOSE 8011

# /healthz touches no database. The Host header is the first ALLOWED_HOSTS entry, so Django accepts it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; host = os.environ.get('ALLOWED_HOSTS', '').split(',')[0].strip().lstrip('.').replace('*', '') or 'localhost'; urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:8011/healthz', headers={'Host': host}), timeout=4)"]

CMD ["gunicorn", "--config", "gunicorn.conf.py", "--bind", "0.0.0.0:8011", "nucleus_project.asgi:application"]
