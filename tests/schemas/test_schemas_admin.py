"""The schema registry in the admin: browsable schemas, read-only versions with a diff, migrations."""

import pytest
from django.urls import reverse

from core import services as core_services
from core.models import Collection
from schemas import services
from schemas.models import Schema, SchemaVersion
from tests.actors import TEST_ACTOR
from tests.core.test_admin import form_values

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


# --- collections bound to another service's schema are pinned -----------------------------------------


def binding(name: str) -> tuple:
    return Collection.objects.values_list("schema__name", "schema_version").get(name=name)


def submit_collection(admin_client, collection: Collection, **changes):
    """GET the collection's change form and POST it back as a browser would, with some fields changed."""
    page = reverse("admin:core_collection_change", args=[collection.pk])
    form = form_values(admin_client.get(page))
    form.update({"_save": "Save", **changes})
    return admin_client.post(page, form)


def test_binding_another_services_schema_in_the_admin_pins_its_latest_version(
    admin_client, item_schema, outsider
):
    staff = core_services.collection_create(name="staff", owner=outsider.service, actor=TEST_ACTOR)

    response = submit_collection(admin_client, staff, schema=str(item_schema.pk), schema_version="")

    assert response.status_code == 302, response.content.decode()[:2000]
    assert binding("staff") == ("item", 2)


def test_editing_a_pinned_collection_in_the_admin_keeps_its_pin(admin_client, item_schema, outsider):
    staff = core_services.collection_create(name="staff", owner=outsider.service, actor=TEST_ACTOR)
    core_services.collection_update(collection=staff, schema=item_schema, schema_version=1, actor=TEST_ACTOR)

    response = submit_collection(admin_client, staff, description="edited")

    assert response.status_code == 302, response.content.decode()[:2000]
    assert binding("staff") == ("item", 1)
    assert Collection.objects.get(name="staff").description == "edited"


def test_the_admin_moves_a_pin_and_refuses_to_let_a_foreign_collection_follow(
    admin_client, item_schema, outsider
):
    staff = core_services.collection_create(name="staff", owner=outsider.service, actor=TEST_ACTOR)
    core_services.collection_update(collection=staff, schema=item_schema, schema_version=1, actor=TEST_ACTOR)

    moved = submit_collection(admin_client, staff, schema_version="2")
    refused = submit_collection(admin_client, staff, schema_version="")

    assert moved.status_code == 302, moved.content.decode()[:2000]
    assert refused.status_code == 200
    assert "pinned to a version" in refused.content.decode()
    assert binding("staff") == ("item", 2)


def test_the_record_page_names_the_version_a_pinned_collection_validates_against(
    admin_client, item_schema, outsider
):
    staff = core_services.collection_create(name="staff", owner=outsider.service, actor=TEST_ACTOR)
    core_services.collection_update(collection=staff, schema=item_schema, schema_version=1, actor=TEST_ACTOR)
    record = core_services.record_create(collection=staff, key="a", data={"label": "x"}, actor=TEST_ACTOR)

    page = admin_client.get(reverse("admin:core_record_change", args=[record.pk])).content.decode()

    assert "saving checks version 1, the collection&#x27;s pin" in page
