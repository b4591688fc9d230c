"""Every Nucleus management command on a database that was never migrated: a one-line reason, no traceback.

What a new user meets when a command runs before `manage.py migrate` (the quick start once raced it).
Commands that need Nucleus' tables exit non-zero saying to migrate, and write nothing. `listbackups`
and `dbrestore` work without them by design (the recovery runbook restores into an empty database):
they say so in one line as well. On the suite's engine: a SQLite file, or a fresh PostgreSQL database.
"""

from pathlib import Path

import pytest

from tests.processes import clean_env, manage
from tests.test_observability import server_database

MIGRATE = "run manage.py migrate"


def unmigrated(tmp_path: Path, *command: str):
    """Run command on a database nothing was ever migrated into; (result, tables afterwards)."""
    with server_database(tmp_path) as url:
        env = clean_env(DATABASE_URL=url, NUCLEUS_BACKUP_DIR=str(tmp_path / "backups"))
        result = manage(*command, env=env)
        tables = manage(
            "shell",
            "-c",
            "from django.db import connection as c; print(c.introspection.table_names())",
            env=env,
        )
    return result, tables.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "command",
    [
        ("create_service", "taxon"),
        ("create_service", "taxon", "--description", "Classifier", "--expires-in-days", "30"),
        ("truncate_stream", "feed", "--before", "1"),
        ("dbbackup",),
        ("dbbackup", "--note", "before the release"),
        ("verifybackup",),
        ("verifybackup", "20200101-000000-000000"),
        ("resignbackups",),
        ("resignbackups", "--adopt-unsigned"),
    ],
    ids=lambda command: " ".join(command),
)
def test_a_command_that_needs_the_tables_says_to_migrate_in_one_line(tmp_path, db, command):
    result, tables = unmigrated(tmp_path, *command)

    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert MIGRATE in line, line
    assert tables == "[]", "nothing was created"
    backups = tmp_path / "backups"
    assert not backups.exists() or not any(path.is_file() for path in backups.rglob("*")), "no dump written"


def test_dbrestore_without_a_backup_says_so_in_one_line(tmp_path, db):
    result, tables = unmigrated(tmp_path, "dbrestore", "--noinput")

    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "There is no usable" in line and "backup in backup storage" in line, line
    assert tables == "[]"


def test_listbackups_lists_storage_and_says_to_migrate_in_one_line(tmp_path, db):
    # A fresh checkout: not even the backup directory exists yet.
    result, tables = unmigrated(tmp_path, "listbackups")

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout.split()[:2] == ["Name", "Datetime"]
    (line,) = result.stderr.strip().splitlines()
    assert MIGRATE in line, line
    assert tables == "[]"
