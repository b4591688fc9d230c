"""Listing large records through a real gunicorn: pages end at the byte budget, workers stay small.

200 records of ~1 MiB listed with limit=1000 used to come back as one 200 MiB page, growing the
worker by several hundred MB; with NUCLEUS_PAGE_MAX_BYTES (8 MiB by default) they arrive in pages of
eight, each read from the database a few rows at a time, and a worker's peak RSS grows by less
than 64 MB.
"""

import http.client
import json
import secrets
from urllib.parse import urlsplit

import pytest
from django.urls import reverse

from core import services
from tests.actors import TEST_ACTOR
from tests.concurrency.test_concurrency import database_url
from tests.processes import Gunicorn, clean_env, free_port, gunicorn_command, status_kib

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RECORDS = 200
RECORD_CHARS = 1024 * 1024 - 64  # the data {"text": ...} stays just under the 1 MiB limit
BATCH = 10  # records per bulk write: 10 MiB per statement
MAX_GROWTH_KIB = 64 * 1024
PAGE_TIMEOUT = 60  # seconds: the old code took seconds to answer with the whole listing at once


@pytest.fixture
def server(tmp_path):
    """The image's gunicorn command with one worker (so every page is served by it), DEBUG off."""
    port = free_port()
    env = clean_env(
        DJANGO_SETTINGS_MODULE="nucleus_project.settings",
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=database_url(),
        GUNICORN_WORKERS="1",
        GUNICORN_THREADS="2",
        NUCLEUS_BACKUP_DIR=str(tmp_path / "backups"),
        STATIC_ROOT=str(tmp_path / "static"),
        LOG_LEVEL="WARNING",
    )
    with Gunicorn(gunicorn_command(port), port=port, env=env, log_path=tmp_path / "gunicorn.log") as gunicorn:
        yield gunicorn
        gunicorn.kill()  # idle gthread workers would make a graceful stop wait


def get(server: Gunicorn, path: str, token: str) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=PAGE_TIMEOUT)
    try:
        headers = {"Authorization": f"Bearer {token}", "X-Forwarded-Proto": "https"}
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    assert response.status == 200, f"{response.status} {body[:500]!r}\n{server.log_tail()}"
    return json.loads(body)


def large_text(index: int) -> str:
    """~1 MiB of text that names its record; random blocks keep it from being trivially small."""
    head = f"record {index:03d} "
    block = secrets.token_hex(512)
    return (head + block * (RECORD_CHARS // len(block) + 1))[:RECORD_CHARS]


def test_listing_200_records_of_1_mib_comes_in_pages_and_a_worker_grows_by_less_than_64_mb(server):
    service, _ = services.service_ensure(actor=TEST_ACTOR, name="owner", description="")
    _, token = services.token_issue(actor=TEST_ACTOR, service=service, label="tests")
    collection = services.collection_create(actor=TEST_ACTOR, name="large", owner=service)
    for start in range(0, RECORDS, BATCH):
        services.records_bulk(
            collection=collection,
            mode="insert",
            items=[
                {"key": f"r{i:03d}", "data": {"text": large_text(i)}} for i in range(start, start + BATCH)
            ],
            actor=TEST_ACTOR,
        )
    url = reverse("record-list", args=["large"])
    get(server, f"{url}?limit=1", token)  # warm the worker up: imports, connection, caches
    (worker,) = server.worker_pids()
    before_kib = status_kib(worker, "VmHWM")

    pages, path = [], f"{url}?limit=1000"
    while path is not None:
        assert len(pages) < RECORDS, "pagination does not end"
        body = get(server, path, token)
        pages.append([(record["key"], record["data"]["text"][:10]) for record in body["results"]])
        path = None
        if body["next"] is not None:
            parts = urlsplit(body["next"])
            path = f"{parts.path}?{parts.query}"
    growth_kib = status_kib(worker, "VmHWM") - before_kib
    print(f"{len(pages)} pages; the worker's peak RSS grew by {growth_kib / 1024:.1f} MB")

    listed = [item for page in pages for item in page]
    assert listed == [(f"r{i:03d}", f"record {i:03d}") for i in range(RECORDS)], "every record exactly once"
    assert len(pages) >= RECORDS // 10, f"{len(pages)} pages: the budget of 8 MiB ends them early"
    assert server.worker_pids() == [worker], "the worker served every page"
    assert growth_kib < MAX_GROWTH_KIB, f"the worker's peak RSS grew by {growth_kib / 1024:.1f} MB"
