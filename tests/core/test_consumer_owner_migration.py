"""The consumer_owner migration gives every existing consumer position to the owner of its stream."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from core.models import ConsumerPosition


def _migration_before_consumer_owner() -> tuple[str, str]:
    """The core migration that consumer_owner follows, found by name: its number may change on merge."""
    graph = MigrationExecutor(connection).loader.graph
    (node,) = [key for key in graph.nodes if key[0] == "core" and key[1].endswith("_consumer_owner")]
    (parent,) = [key for key in graph.node_map[node].parents if key[0] == "core"]
    return parent


@pytest.mark.django_db(transaction=True)
def test_existing_positions_belong_to_the_stream_owner_afterwards():
    parent = _migration_before_consumer_owner()
    executor = MigrationExecutor(connection)
    executor.migrate([parent])
    try:
        old = executor.loader.project_state(parent).apps
        Service, Collection = old.get_model("core", "Service"), old.get_model("core", "Collection")
        Position = old.get_model("core", "ConsumerPosition")
        owners = [Service.objects.create(name=name) for name in ("alpha", "beta", "reader")]
        now = timezone.now()
        for owner in owners[:2]:
            stream = Collection.objects.create(
                name=f"{owner.name}.events", owner=owner, kind="stream", last_offset=9
            )
            for consumer, offset in (("billing", 3), ("audit", 9)):
                Position.objects.create(
                    stream=stream,
                    consumer=consumer,
                    offset=offset,
                    updated_at=now,
                    updated_by="service:reader",
                )
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

    assert sorted(
        ConsumerPosition.objects.values_list("stream__name", "consumer", "offset", "owner__name")
    ) == [
        ("alpha.events", "audit", 9, "alpha"),
        ("alpha.events", "billing", 3, "alpha"),
        ("beta.events", "audit", 9, "beta"),
        ("beta.events", "billing", 3, "beta"),
    ]
