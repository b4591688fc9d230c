"""/api/v1/collections/: create, list, read, change and delete collections, scoped by who asks."""

import pytest
from django.urls import reverse

from core import services
from core.models import Collection, Record
from core.principals import Actor
from tests.actors import TEST_ACTOR

LIST = reverse("collection-list")


def detail(name: str) -> str:
    return reverse("collection-detail", args=[name])


def assert_problem(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code
    return body


def error_paths(body: dict) -> list[str]:
    return [error["path"] for error in body["errors"]]


def add_records(collection: Collection, count: int) -> None:
    actor = Actor(label="service:owner")
    for n in range(count):
        services.record_create(collection=collection, key=f"r{n}", data={"n": n}, actor=actor)


# --- create --------------------------------------------------------------------------------------


def test_a_service_creates_a_collection_it_owns_with_defaults(owner):
    response = owner.post(LIST, {"name": "things"}, format="json")
    assert response.status_code == 201
    assert response["Location"] == "http://testserver" + detail("things")
    body = response.json()
    assert body["name"] == "things"
    assert body["owner"] == "owner"
    assert body["kind"] == "records"
    assert body["description"] == ""
    assert body["require_if_match"] is False
    assert body["created_at"] and body["updated_at"]

    collection = Collection.objects.get(name="things")
    assert collection.owner == owner.service
    assert collection.kind == "records"
    assert collection.require_if_match is False


def test_it_stores_the_optional_settings(owner):
    response = owner.post(
        LIST,
        {"name": "flows.state", "description": "workflow state", "require_if_match": True},
        format="json",
    )
    assert response.status_code == 201
    collection = Collection.objects.get(name="flows.state")
    assert collection.description == "workflow state"
    assert collection.require_if_match is True


def test_it_creates_a_stream(owner):
    response = owner.post(LIST, {"name": "events", "kind": "stream"}, format="json")
    assert response.status_code == 201
    assert response.json()["kind"] == "stream"
    assert Collection.objects.get(name="events").kind == "stream"


def test_a_duplicate_name_is_a_409_and_leaves_the_first(owner, outsider, items):
    response = outsider.post(LIST, {"name": "items", "description": "mine"}, format="json")
    assert_problem(response, 409, "collection_exists")
    collection = Collection.objects.get(name="items")
    assert collection.owner == owner.service
    assert collection.description == ""


@pytest.mark.parametrize("name", ["Bad", "1abc", "a..b", "a.", "-a", "with space", "a/b", "x" * 101, ""])
def test_an_invalid_name_is_a_422_pointing_at_name(owner, name):
    body = assert_problem(owner.post(LIST, {"name": name}, format="json"), 422)
    assert "/name" in error_paths(body)
    assert not Collection.objects.exists()


def test_an_unknown_field_is_a_422(owner):
    body = assert_problem(owner.post(LIST, {"name": "things", "colour": "red"}, format="json"), 422)
    assert error_paths(body) == ["/colour"]
    assert not Collection.objects.exists()


def test_an_unknown_kind_is_a_422(owner):
    body = assert_problem(owner.post(LIST, {"name": "things", "kind": "table"}, format="json"), 422)
    assert error_paths(body) == ["/kind"]
    assert not Collection.objects.exists()


def test_a_service_may_not_create_for_another_owner(owner, outsider):
    body = assert_problem(outsider.post(LIST, {"name": "things", "owner": "owner"}, format="json"), 422)
    assert error_paths(body) == ["/owner"]
    assert not Collection.objects.exists()


def test_a_service_may_name_itself_as_owner(owner):
    assert owner.post(LIST, {"name": "things", "owner": "owner"}, format="json").status_code == 201


def test_an_operator_must_name_the_owner(operator, owner):
    body = assert_problem(operator.post(LIST, {"name": "things"}, format="json"), 422)
    assert error_paths(body) == ["/owner"]
    body = assert_problem(operator.post(LIST, {"name": "things", "owner": "nobody"}, format="json"), 422)
    assert error_paths(body) == ["/owner"]
    assert not Collection.objects.exists()

    response = operator.post(LIST, {"name": "things", "owner": "owner"}, format="json")
    assert response.status_code == 201
    assert response.json()["owner"] == "owner"
    assert Collection.objects.get(name="things").owner == owner.service


# --- list ----------------------------------------------------------------------------------------


def names(response) -> list[str]:
    assert response.status_code == 200
    return [collection["name"] for collection in response.json()["results"]]


def test_a_service_lists_owned_and_granted_collections_only(owner, reader, writer, outsider, items):
    services.collection_create(actor=TEST_ACTOR, name="outsiders", owner=outsider.service)
    services.collection_create(actor=TEST_ACTOR, name="owners", owner=owner.service)
    assert names(owner.get(LIST)) == ["items", "owners"]
    assert names(reader.get(LIST)) == ["items"]
    assert names(writer.get(LIST)) == ["items"]
    assert names(outsider.get(LIST)) == ["outsiders"]


def test_a_service_with_nothing_lists_nothing(outsider, items):
    assert outsider.get(LIST).json() == {"results": [], "next": None}


def test_an_operator_lists_every_collection(operator, outsider, items):
    services.collection_create(actor=TEST_ACTOR, name="outsiders", owner=outsider.service)
    assert names(operator.get(LIST)) == ["items", "outsiders"]


def test_the_list_pages_with_limit_and_next(owner):
    for n in range(5):
        services.collection_create(actor=TEST_ACTOR, name=f"c{n}", owner=owner.service)
    seen = []
    url = LIST + "?limit=2"
    pages = 0
    while url:
        response = owner.get(url)
        assert response.status_code == 200
        body = response.json()
        assert len(body["results"]) <= 2
        seen += [collection["name"] for collection in body["results"]]
        url = body["next"]
        pages += 1
    assert seen == ["c0", "c1", "c2", "c3", "c4"]
    assert pages == 3


def test_a_full_last_page_has_no_next(owner):
    for n in range(2):
        services.collection_create(actor=TEST_ACTOR, name=f"c{n}", owner=owner.service)
    body = owner.get(LIST + "?limit=2").json()
    assert len(body["results"]) == 2
    assert body["next"] is None


@pytest.mark.parametrize("limit", ["0", "1001", "x", "-1"])
def test_an_invalid_limit_is_a_400(owner, limit):
    assert_problem(owner.get(LIST, {"limit": limit}), 400, "invalid_limit")


def test_a_forged_cursor_is_a_400(owner):
    assert_problem(owner.get(LIST, {"cursor": "not-a-cursor"}), 400, "invalid_cursor")


@pytest.mark.parametrize("limit", [1, 10, 40])
def test_listing_takes_the_same_queries_for_any_page_size(owner, reader, limit, django_assert_num_queries):
    for n in range(40):
        collection = services.collection_create(actor=TEST_ACTOR, name=f"c{n:02}", owner=owner.service)
        if n % 2:
            services.grant_set(actor=TEST_ACTOR, collection=collection, service_name="reader", access="read")
    # token lookup, last_used_at, the page itself
    with django_assert_num_queries(3):
        response = reader.get(LIST, {"limit": limit})
    assert len(response.json()["results"]) == min(limit, 20)
    with django_assert_num_queries(3):
        response = owner.get(LIST, {"limit": limit})
    assert len(response.json()["results"]) == limit


# --- read ----------------------------------------------------------------------------------------


def test_the_owner_and_grantees_read_a_collection(owner, reader, writer, items):
    for client in (owner, reader, writer):
        response = client.get(detail("items"))
        assert response.status_code == 200
        assert response.json()["name"] == "items"
        assert response.json()["owner"] == "owner"


def test_the_path_without_trailing_slash_answers_too(reader, items):
    response = reader.get(detail("items").rstrip("/"))
    assert response.status_code == 200
    assert response.json()["name"] == "items"


def test_an_outsider_gets_404_not_403(outsider, items):
    hidden = assert_problem(outsider.get(detail("items")), 404, "collection_not_found")
    missing = assert_problem(outsider.get(detail("nothing")), 404, "collection_not_found")
    assert hidden["title"] == missing["title"]


def test_an_operator_reads_any_collection(operator, items):
    assert operator.get(detail("items")).status_code == 200


# --- change --------------------------------------------------------------------------------------


def test_the_owner_changes_the_settings(owner, items):
    response = owner.patch(
        detail("items"), {"description": "all the items", "require_if_match": True}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["description"] == "all the items"
    assert response.json()["require_if_match"] is True
    items.refresh_from_db()
    assert items.description == "all the items"
    assert items.require_if_match is True


@pytest.mark.parametrize("grantee", ["reader", "writer"])
def test_grantees_may_not_change_the_settings(request, grantee, items):
    client = request.getfixturevalue(grantee)
    assert_problem(client.patch(detail("items"), {"description": "mine"}, format="json"), 403)
    items.refresh_from_db()
    assert items.description == ""


def test_an_outsider_gets_404_on_patch(outsider, items):
    assert_problem(outsider.patch(detail("items"), {"description": "mine"}, format="json"), 404)
    items.refresh_from_db()
    assert items.description == ""


def test_an_operator_changes_the_settings(operator, items):
    response = operator.patch(detail("items"), {"description": "fixed"}, format="json")
    assert response.status_code == 200
    items.refresh_from_db()
    assert items.description == "fixed"


@pytest.mark.parametrize("body", [{"name": "renamed"}, {"kind": "stream"}, {"owner": "reader"}])
def test_name_kind_and_owner_cannot_be_patched(owner, items, body):
    response = assert_problem(owner.patch(detail("items"), body, format="json"), 422)
    assert error_paths(response) == [f"/{next(iter(body))}"]
    items.refresh_from_db()
    assert (items.name, items.kind, items.owner.name) == ("items", "records", "owner")


# --- delete --------------------------------------------------------------------------------------


def test_the_owner_deletes_an_empty_collection(owner, items):
    response = owner.delete(detail("items"))
    assert response.status_code == 204
    assert not Collection.objects.filter(name="items").exists()
    assert_problem(owner.get(detail("items")), 404)


def test_the_owner_may_not_delete_a_collection_with_records(owner, items):
    add_records(items, 3)
    body = assert_problem(owner.delete(detail("items")), 409, "collection_not_empty")
    assert body["count"] == 3
    assert Collection.objects.filter(name="items").exists()
    assert Record.objects.filter(collection=items).count() == 3


@pytest.mark.parametrize("grantee", ["reader", "writer"])
def test_grantees_may_not_delete(request, grantee, items):
    client = request.getfixturevalue(grantee)
    assert_problem(client.delete(detail("items")), 403)
    assert Collection.objects.filter(name="items").exists()


def test_an_outsider_gets_404_on_delete(outsider, items):
    assert_problem(outsider.delete(detail("items")), 404)
    assert Collection.objects.filter(name="items").exists()


def test_an_operator_deletes_a_collection_with_its_records(operator, items):
    add_records(items, 3)
    assert operator.delete(detail("items")).status_code == 204
    assert not Collection.objects.filter(name="items").exists()
    assert not Record.objects.exists()
