"""A (collection, key text_pattern_ops) index serving key_prefix filters on PostgreSQL.

Under a non-C collation the unique (collection, key) index cannot serve `key LIKE 'prefix%'`;
text_pattern_ops can. SQLite compares keys bytewise already; there the migration does nothing.
"""

from django.db import migrations

INDEX = "core_record_key_prefix"


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {INDEX} ON core_record (collection_id, key text_pattern_ops)"
        )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("core", "0005_idempotency_claim_ids")]

    operations = [migrations.RunPython(create_index, drop_index, elidable=False)]
