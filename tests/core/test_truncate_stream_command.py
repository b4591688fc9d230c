"""manage.py truncate_stream NAME --before OFFSET [--force]: drops old events, never unprocessed ones."""

import os
import sqlite3
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from core.models import Event
from tests.core.streams_support import (
    append,
    consumer_url,
    event,
    events_url,
    keep_position,
    last_offset,
    make_stream,
    stream_state,
)

BASE_DIR = Path(__file__).resolve().parents[2]


def truncate(*args: str) -> str:
    output = StringIO()
    call_command("truncate_stream", *args, stdout=output, stderr=output)
    return output.getvalue()


def offsets(stream) -> list[int]:
    return list(Event.objects.filter(stream=stream).order_by("offset").values_list("offset", flat=True))


@pytest.fixture
def stream(owner, reader):
    """The stream `events` of owner with 10 events, readable by reader."""
    stream = make_stream(owner.service, readers=("reader",))
    append(stream, 10)
    return stream


# --- in-process, with call_command --------------------------------------------------------------


@pytest.mark.django_db
def test_it_removes_the_events_below_the_offset_and_reports_it(stream):
    output = truncate("events", "--before", "4")

    assert output.strip() == "Removed 3 events of events before offset 4; last offset is 10."
    assert offsets(stream) == list(range(4, 11))
    assert last_offset(stream) == 10


@pytest.mark.django_db
def test_readers_then_start_at_the_first_kept_event(reader, stream):
    truncate("events", "--before", "4")

    body = reader.get(events_url(), {"after": 0, "limit": 2}).json()

    assert [item["offset"] for item in body["results"]] == [4, 5]
    assert (body["last_offset"], body["next_after"]) == (10, 5)


@pytest.mark.django_db
def test_it_refuses_while_a_consumer_has_not_processed_the_events_and_removes_nothing(stream):
    keep_position(stream, "slow", 2)
    keep_position(stream, "fast", 9)
    before = stream_state(stream)

    with pytest.raises(CommandError) as refused:
        truncate("events", "--before", "4")

    message = str(refused.value)
    assert "\n" not in message
    assert "slow of owner (at 2)" in message
    assert "fast" not in message
    assert "--force" in message
    assert stream_state(stream) == before


@pytest.mark.django_db
def test_it_counts_the_consumers_of_every_service_not_only_the_owners(owner, reader, stream):
    keep_position(stream, "billing", 9)
    keep_position(stream, "billing", 2, keeper="reader")
    before = stream_state(stream)

    with pytest.raises(CommandError) as refused:
        truncate("events", "--before", "4")

    assert "billing of reader (at 2)" in str(refused.value)
    assert "of owner" not in str(refused.value)
    assert stream_state(stream) == before


@pytest.mark.django_db
def test_the_refusal_names_the_ten_furthest_behind_and_counts_the_rest(stream):
    for n in range(12):
        keep_position(stream, f"c{n:02}", n % 3)

    with pytest.raises(CommandError) as refused:
        truncate("events", "--before", "5")

    message = str(refused.value)
    assert message.count(" of owner (at ") == 10
    assert "c09 of owner (at 0)" in message and "c11 of owner (at 2)" not in message
    assert "and 2 more" in message


@pytest.mark.django_db
def test_a_consumer_that_processed_every_event_below_the_offset_does_not_hold_it_back(stream):
    keep_position(stream, "exact", 3)

    output = truncate("events", "--before", "4")

    assert "Removed 3 events" in output
    assert offsets(stream) == list(range(4, 11))


@pytest.mark.django_db
def test_force_removes_events_a_consumer_has_not_processed_and_keeps_its_position(owner, stream):
    keep_position(stream, "slow", 1)

    output = truncate("events", "--before", "6", "--force")

    assert "Removed 5 events" in output
    assert offsets(stream) == list(range(6, 11))
    body = owner.get(consumer_url("slow")).json()
    assert (body["offset"], body["last_offset"], body["lag"]) == (1, 10, 9)


@pytest.mark.django_db
def test_offsets_are_not_reused_after_truncating_everything(owner, stream):
    output = truncate("events", "--before", "11")

    assert "Removed 10 events" in output
    assert offsets(stream) == []
    assert last_offset(stream) == 10
    response = owner.post(events_url(), {"events": [event("after.truncation")]}, format="json")
    assert response.status_code == 201
    assert (response.json()["first_offset"], response.json()["last_offset"]) == (11, 11)
    assert offsets(stream) == [11]
    assert owner.get(events_url()).json()["results"][0]["offset"] == 11


@pytest.mark.django_db
def test_an_id_of_a_truncated_event_is_appended_again_at_a_new_offset(owner, stream):
    first_id = Event.objects.get(stream=stream, offset=1).event_id
    truncate("events", "--before", "2")

    response = owner.post(events_url(), {"events": [event("again", {}, first_id)]}, format="json")

    assert response.json()["events"] == [{"id": str(first_id), "offset": 11, "duplicate": False}]


@pytest.mark.django_db
def test_truncating_again_removes_nothing_more(stream):
    truncate("events", "--before", "5")

    output = truncate("events", "--before", "5")

    assert output.strip() == "Removed 0 events of events before offset 5; last offset is 10."
    assert offsets(stream) == list(range(5, 11))


@pytest.mark.django_db
def test_other_streams_are_not_touched(owner, stream):
    other = make_stream(owner.service, "audit")
    append(other, 4)

    truncate("events", "--before", "8")

    assert offsets(other) == [1, 2, 3, 4]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("events", "--before", "0"), "between 1 and 11"),
        (("events", "--before", "12"), "between 1 and 11"),
        (("nowhere", "--before", "2"), "no collection 'nowhere'"),
        (("items", "--before", "2"), "holds records, not events"),
    ],
)
def test_bad_arguments_are_a_one_line_command_error_and_remove_nothing(stream, items, args, message):
    before = stream_state(stream)

    with pytest.raises(CommandError, match=message) as refused:
        truncate(*args)

    assert "\n" not in str(refused.value)
    assert stream_state(stream) == before


# --- as a subprocess, against a fresh SQLite database -----------------------------------------------


SEED = """
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
from core import services
from core.principals import Actor
actor = Actor(label="command:seed")
owner, _ = services.service_ensure(name="owner", actor=actor)
stream = services.collection_create(name="events", owner=owner, actor=actor, kind="stream")
events = [{"type": "t", "data": {"n": n}} for n in range(10)]
services.stream_append(stream=stream, events=events, actor=actor)
services.consumer_position_set(stream=stream, consumer="slow", offset=2, actor=actor)
"""


@pytest.mark.slow
def test_as_a_process_it_refuses_in_one_line_then_truncates_and_reports(tmp_path):
    db_file = tmp_path / "nucleus.sqlite3"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{db_file}",
        "NUCLEUS_VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "nucleus_project.settings",
        "DEBUG": "1",
    }

    def manage(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def stored_offsets() -> list[int]:
        db = sqlite3.connect(db_file)
        try:
            return [row[0] for row in db.execute('SELECT "offset" FROM core_event ORDER BY "offset"')]
        finally:
            db.close()

    prepared = manage("shell", "-c", SEED)  # migrate and seed in one process
    assert prepared.returncode == 0, prepared.stderr
    assert stored_offsets() == list(range(1, 11))

    refused = manage("truncate_stream", "events", "--before", "5")

    assert refused.returncode != 0
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert "slow of owner (at 2)" in lines[0]
    assert "Traceback" not in refused.stderr
    assert stored_offsets() == list(range(1, 11))

    done = manage("truncate_stream", "events", "--before", "5", "--force")

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.strip() == "Removed 4 events of events before offset 5; last offset is 10."
    assert stored_offsets() == list(range(5, 11))
