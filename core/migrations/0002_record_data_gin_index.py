"""A GIN index (jsonb_path_ops) serving `where` containment queries on PostgreSQL.

SQLite has no GIN indexes; there the migration does nothing and `where` scans the collection's rows.
"""

from django.db import migrations

INDEX = "core_record_data_gin"


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {INDEX} ON core_record USING gin (data jsonb_path_ops)")


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("core", "0001_initial")]

    operations = [migrations.RunPython(create_index, drop_index, elidable=False)]
