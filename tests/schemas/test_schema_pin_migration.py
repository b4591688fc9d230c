"""The migration that introduces pins: existing collections bound to another service's schema are pinned."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = ("core", "0011_consumer_owner")
PIN = ("core", "0012_collection_schema_version_pin")


def migrate(targets) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor


@pytest.fixture
def migrated_back():
    """The database migrated back to before the pins; migrated forward to every app's latest afterwards."""
    executor = migrate([BEFORE])
    yield executor.loader.project_state([BEFORE]).apps
    executor = MigrationExecutor(connection)
    migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_existing_foreign_bindings_are_pinned_to_the_latest_version_and_own_ones_follow(migrated_back):
    apps = migrated_back
    Service = apps.get_model("core", "Service")
    Collection = apps.get_model("core", "Collection")
    Schema = apps.get_model("schemas", "Schema")
    SchemaVersion = apps.get_model("schemas", "SchemaVersion")
    owner, other = Service.objects.create(name="owner"), Service.objects.create(name="other")
    person = Schema.objects.create(name="person", owner=owner)
    staffing = Schema.objects.create(name="staffing", owner=other)
    for schema, versions in ((person, 3), (staffing, 1)):
        for number in range(1, versions + 1):
            SchemaVersion.objects.create(
                schema=schema,
                version=number,
                definition={"title": str(number)},
                fingerprint=f"{schema.name}-{number}",
                created_at="2026-01-01T00:00:00Z",
                created_by="tests",
            )
    for name, collection_owner, schema in [
        ("people", owner, person),  # the schema's owner: keeps following the latest
        ("staff", other, person),  # another service: pinned to person's latest, 3
        ("rota", other, staffing),  # its own schema: follows
        ("loose", other, None),  # unbound: nothing to pin
    ]:
        Collection.objects.create(name=name, owner=collection_owner, schema=schema)

    migrate([PIN])

    with connection.cursor() as cursor:
        cursor.execute("SELECT name, schema_version FROM core_collection ORDER BY name")
        pins = dict(cursor.fetchall())
    assert pins == {"loose": None, "people": None, "rota": None, "staff": 3}
