"""The schema registry in the admin: browsable schemas, read-only versions with a diff, migrations."""

import pytest
from django.urls import reverse

from schemas import services
from schemas.models import Schema, SchemaVersion
from tests.actors import TEST_ACTOR

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@example.com", "pw-not-used")
    client.force_login(user)
    return client


@pytest.fixture
def item_schema(owner):
    schema = services.schema_create(name="item", owner=owner.service)
    services.schema_version_register(
        schema=schema,
        definition={"type": "object", "properties": {"label": {"type": "string"}}},
        actor=TEST_ACTOR,
    )
    services.schema_version_register(
        schema=schema,
        definition={
            "type": "object",
            "properties": {"label": {"type": "string", "description": "Shown to people"}},
        },
        actor=TEST_ACTOR,
    )
    return schema


def test_schemas_are_listed_with_their_latest_version(admin_client, item_schema):
    response = admin_client.get(reverse("admin:schemas_schema_changelist"))
    assert response.status_code == 200
    assert "item" in response.content.decode()
    page = admin_client.get(reverse("admin:schemas_schema_change", args=[item_schema.pk])).content.decode()
    assert "BACKWARD" in page
    assert "Delete" not in page  # schemas are contracts; nobody deletes them here


def test_a_version_shows_its_definition_pretty_printed_and_the_diff_from_the_previous(
    admin_client, item_schema
):
    second = SchemaVersion.objects.get(schema=item_schema, version=2)
    page = admin_client.get(reverse("admin:schemas_schemaversion_change", args=[second.pk])).content.decode()
    assert "&quot;label&quot;: {" in page  # indented JSON
    assert "--- version 1" in page
    assert "+++ version 2" in page
    assert "+      &quot;description&quot;: &quot;Shown to people&quot;," in page
    first = SchemaVersion.objects.get(schema=item_schema, version=1)
    assert (
        "This is the first version."
        in admin_client.get(reverse("admin:schemas_schemaversion_change", args=[first.pk])).content.decode()
    )


def test_versions_are_read_only_in_the_admin(admin_client, item_schema):
    version = SchemaVersion.objects.get(schema=item_schema, version=1)
    assert admin_client.get(reverse("admin:schemas_schemaversion_add")).status_code == 403
    response = admin_client.post(
        reverse("admin:schemas_schemaversion_change", args=[version.pk]), {"definition": "{}"}
    )
    assert response.status_code == 403
    assert (
        admin_client.post(
            reverse("admin:schemas_schemaversion_delete", args=[version.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    version.refresh_from_db()
    assert version.definition == {"type": "object", "properties": {"label": {"type": "string"}}}


def test_changing_the_compatibility_mode_in_the_admin_goes_through_the_service(admin_client, item_schema):
    response = admin_client.post(
        reverse("admin:schemas_schema_change", args=[item_schema.pk]),
        {
            "compatibility": "FULL",
            "description": "items",
            "versions-TOTAL_FORMS": "2",
            "versions-INITIAL_FORMS": "2",
            "versions-MIN_NUM_FORMS": "0",
            "versions-MAX_NUM_FORMS": "1000",
            "versions-0-id": str(SchemaVersion.objects.get(schema=item_schema, version=2).pk),
            "versions-0-schema": str(item_schema.pk),
            "versions-1-id": str(SchemaVersion.objects.get(schema=item_schema, version=1).pk),
            "versions-1-schema": str(item_schema.pk),
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    item_schema.refresh_from_db()
    assert (item_schema.compatibility, item_schema.description) == ("FULL", "items")
    assert Schema.objects.count() == 1


def test_the_migration_page_lists_applied_migrations_per_app(admin_client):
    page = admin_client.get(reverse("admin-migrations"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Every migration is applied." in html
    assert "0001_schema_registry" in html
    assert "0004_collection_schema" in html
    index = admin_client.get(reverse("admin:index")).content.decode()
    assert reverse("admin-migrations") in index


def test_the_migration_page_is_for_staff_only(client):
    response = client.get(reverse("admin-migrations"))
    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]
