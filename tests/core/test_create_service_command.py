"""manage.py create_service NAME [--description]: as a real process, and in-process with call_command."""

import hashlib
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from core.models import Service, ServiceToken

BASE_DIR = Path(__file__).resolve().parents[2]


# --- as a subprocess, against a fresh SQLite database -----------------------------------------------


@dataclass(frozen=True)
class Sandbox:
    env: dict
    db_file: Path


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Sandbox:
    """The environment of a manage.py process using a freshly migrated SQLite file of its own."""
    directory = tmp_path_factory.mktemp("create_service")
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{directory / 'nucleus.sqlite3'}",
        "NUCLEUS_VAR_DIR": str(directory),
        "DJANGO_SETTINGS_MODULE": "nucleus_project.settings",
        "DEBUG": "1",
    }
    sandbox = Sandbox(env=env, db_file=directory / "nucleus.sqlite3")
    migrated = manage(sandbox, "migrate", "--noinput")
    assert migrated.returncode == 0, migrated.stdout
    return sandbox


def manage(sandbox: Sandbox, *args: str) -> subprocess.CompletedProcess:
    """Run manage.py as a process; its stderr is merged into stdout, as on a terminal."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=sandbox.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
        check=False,
    )


def query(sandbox: Sandbox, sql: str, params: tuple = ()) -> list[tuple]:
    db = sqlite3.connect(sandbox.db_file)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def last_line(output: str) -> str:
    return output.rstrip("\n").splitlines()[-1]


def token_hashes(sandbox: Sandbox, service: str) -> set[str]:
    rows = query(
        sandbox,
        "SELECT t.token_hash FROM core_servicetoken t JOIN core_service s ON s.id = t.service_id "
        "WHERE s.name = ?",
        (service,),
    )
    return {row[0] for row in rows}


@pytest.mark.slow
@pytest.mark.xdist_group("create-service-sandbox")  # one worker migrates the module's sandbox once
def test_process_creates_the_service_once_and_prints_a_new_token_last_each_time(sandbox):
    first = manage(sandbox, "create_service", "taxon", "--description", "the classifier")
    assert first.returncode == 0, first.stdout
    token = last_line(first.stdout)
    assert token.startswith("nuc_")
    assert " " not in token
    assert "Created service taxon" in first.stdout
    assert query(sandbox, "SELECT name, description, is_active FROM core_service WHERE name = 'taxon'") == [
        ("taxon", "the classifier", 1)
    ]
    assert token_hashes(sandbox, "taxon") == {hashlib.sha256(token.encode()).hexdigest()}

    second = manage(sandbox, "create_service", "taxon")
    assert second.returncode == 0, second.stdout
    assert "Created" not in second.stdout
    other = last_line(second.stdout)
    assert other.startswith("nuc_")
    assert other != token
    assert query(sandbox, "SELECT count(*), min(description) FROM core_service WHERE name = 'taxon'") == [
        (1, "the classifier")
    ]
    assert token_hashes(sandbox, "taxon") == {hashlib.sha256(t.encode()).hexdigest() for t in (token, other)}


@pytest.mark.slow
@pytest.mark.xdist_group("create-service-sandbox")
def test_process_refuses_an_invalid_name_in_one_line(sandbox):
    result = manage(sandbox, "create_service", "Not Valid")
    assert result.returncode != 0
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    assert "not a valid service name" in lines[0]
    assert "Traceback" not in result.stdout
    assert query(sandbox, "SELECT count(*) FROM core_service WHERE name = 'Not Valid'") == [(0,)]


# --- in-process, with call_command --------------------------------------------------------------


def run_command(*args: str) -> str:
    """Run create_service with stdout and stderr into one buffer, as a terminal would show them."""
    output = StringIO()
    call_command("create_service", *args, stdout=output, stderr=output)
    return output.getvalue()


@pytest.mark.django_db
def test_it_creates_the_service_with_a_description_and_prints_the_token_last():
    output = run_command("taxon", "--description", "the classifier")
    token = last_line(output)
    service = Service.objects.get(name="taxon")
    assert service.description == "the classifier"
    assert service.is_active
    stored = ServiceToken.objects.get(service=service)
    assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert stored.prefix == token[:12]
    assert stored.prefix in output.splitlines()[0]


@pytest.mark.django_db
def test_a_second_run_keeps_the_service_and_adds_a_second_token():
    first = last_line(run_command("taxon"))
    second = last_line(run_command("taxon"))
    assert first != second
    assert Service.objects.filter(name="taxon").count() == 1
    assert ServiceToken.objects.filter(service__name="taxon").count() == 2


@pytest.mark.django_db
def test_description_on_a_later_run_replaces_it_and_its_absence_keeps_it():
    run_command("taxon", "--description", "old")
    run_command("taxon")
    assert Service.objects.get(name="taxon").description == "old"
    run_command("taxon", "--description", "new")
    assert Service.objects.get(name="taxon").description == "new"


@pytest.mark.django_db
def test_the_printed_token_authenticates_against_the_api():
    token = last_line(run_command("taxon"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = client.post(reverse("collection-list"), {"name": "classified"}, format="json")
    assert response.status_code == 201
    assert response.json()["owner"] == "taxon"
    assert ServiceToken.objects.get(service__name="taxon").last_used_at is not None


@pytest.mark.django_db
def test_an_invalid_name_is_a_command_error_and_writes_nothing():
    with pytest.raises(CommandError, match="not a valid service name") as refused:
        run_command("Not Valid")
    assert "\n" not in str(refused.value)
    assert not Service.objects.exists()
    assert not ServiceToken.objects.exists()


@pytest.mark.django_db
def test_expires_in_days_sets_the_expiry_of_the_token():
    before = timezone.now()
    run_command("taxon", "--expires-in-days", "30", "--label", "staging")
    token = ServiceToken.objects.get(service__name="taxon")
    assert token.label == "staging"
    assert before + timedelta(days=30) <= token.expires_at <= timezone.now() + timedelta(days=30)


@pytest.mark.django_db
def test_an_expiry_of_less_than_a_day_is_refused_before_anything_is_written():
    with pytest.raises(CommandError, match="at least 1"):
        run_command("taxon", "--expires-in-days", "0")
    assert not Service.objects.exists()
