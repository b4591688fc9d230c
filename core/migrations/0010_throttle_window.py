"""The request counters of core/throttling.py: one row per principal, touched by one raw UPSERT.

Like Django's own database cache table, it has no model: nothing reads it through the ORM, and the
migration state stays untouched, so `makemigrations --check` is clean. On PostgreSQL the table is
UNLOGGED: counters need not survive a crash, and commits that touch only them skip the WAL flush.
"""

from django.db import migrations

COLUMNS = "scope varchar(200) NOT NULL PRIMARY KEY, window_end_ms bigint NOT NULL, hits bigint NOT NULL"


def create_table(apps, schema_editor):
    unlogged = "UNLOGGED " if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(f"CREATE {unlogged}TABLE core_throttle_window ({COLUMNS})")


def drop_table(apps, schema_editor):
    schema_editor.execute("DROP TABLE core_throttle_window")


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0009_streams"),
    ]

    operations = [
        migrations.RunPython(create_table, drop_table),
    ]
