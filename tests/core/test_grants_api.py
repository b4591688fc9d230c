"""/api/v1/collections/{name}/grants/: who may give access, and what a read or write grant allows."""

import pytest
from django.urls import reverse

from core import services
from core.models import Grant, Record
from core.principals import Actor


def grants(name: str = "items") -> str:
    return reverse("grant-list", args=[name])


def grant(service: str, name: str = "items") -> str:
    return reverse("grant-detail", args=[name, service])


def records(name: str = "items") -> str:
    return reverse("record-list", args=[name])


def record(key: str, name: str = "items") -> str:
    return reverse("record-detail", args=[name, key])


def assert_problem(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code
    return body


def access_of(service: str) -> list[str]:
    return list(
        Grant.objects.filter(collection__name="items", service__name=service).values_list("access", flat=True)
    )


@pytest.fixture
def existing(items) -> Record:
    return services.record_create(
        collection=items, key="a", data={"n": 1}, actor=Actor(label="service:owner")
    )


# --- managing grants -----------------------------------------------------------------------------


def test_the_owner_lists_the_grants(owner, items):
    response = owner.get(grants())
    assert response.status_code == 200
    body = response.json()
    assert body["next"] is None
    assert [(g["collection"], g["service"], g["access"]) for g in body["results"]] == [
        ("items", "reader", "read"),
        ("items", "writer", "write"),
    ]


@pytest.mark.parametrize("access", ["read", "write"])
def test_the_owner_grants_access(owner, outsider, items, access):
    response = owner.post(grants(), {"service": "outsider", "access": access}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert (body["collection"], body["service"], body["access"]) == ("items", "outsider", access)
    assert access_of("outsider") == [access]
    assert outsider.get(reverse("collection-detail", args=["items"])).status_code == 200


def test_granting_again_changes_the_access_in_the_same_grant(owner, outsider, items, existing):
    assert owner.post(grants(), {"service": "outsider", "access": "write"}, format="json").status_code == 201
    assert outsider.put(record("a"), {"data": {"n": 2}}, format="json").status_code == 200

    response = owner.post(grants(), {"service": "outsider", "access": "read"}, format="json")
    assert response.status_code == 200
    assert response.json()["access"] == "read"
    assert access_of("outsider") == ["read"]
    assert_problem(outsider.put(record("a"), {"data": {"n": 3}}, format="json"), 403)
    assert Record.objects.get(pk=existing.pk).data == {"n": 2}

    response = owner.post(grants(), {"service": "outsider", "access": "read"}, format="json")
    assert response.status_code == 200
    assert access_of("outsider") == ["read"]


def test_an_operator_manages_grants(operator, outsider, items):
    response = operator.post(grants(), {"service": "outsider", "access": "read"}, format="json")
    assert response.status_code == 201
    assert access_of("outsider") == ["read"]
    assert operator.delete(grant("outsider")).status_code == 204
    assert access_of("outsider") == []


def test_granting_to_an_unknown_service_is_a_422(owner, items):
    body = assert_problem(
        owner.post(grants(), {"service": "nobody", "access": "read"}, format="json"), 422, "unknown_service"
    )
    assert [e["path"] for e in body["errors"]] == ["/service"]
    assert Grant.objects.count() == 2


def test_granting_to_the_owner_is_a_422(owner, items):
    body = assert_problem(
        owner.post(grants(), {"service": "owner", "access": "read"}, format="json"), 422, "grant_to_owner"
    )
    assert [e["path"] for e in body["errors"]] == ["/service"]
    assert access_of("owner") == []


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"service": "outsider", "access": "admin"}, "/access"),
        ({"service": "outsider"}, "/access"),
        ({"access": "read"}, "/service"),
        ({"service": "outsider", "access": "read", "until": "never"}, "/until"),
    ],
)
def test_an_invalid_grant_body_is_a_422(owner, outsider, items, body, path):
    problem = assert_problem(owner.post(grants(), body, format="json"), 422)
    assert [e["path"] for e in problem["errors"]] == [path]
    assert access_of("outsider") == []


@pytest.mark.parametrize("grantee", ["reader", "writer"])
def test_grantees_may_not_manage_grants(request, outsider, items, grantee):
    client = request.getfixturevalue(grantee)
    assert_problem(client.get(grants()), 403)
    assert_problem(client.post(grants(), {"service": "outsider", "access": "read"}, format="json"), 403)
    assert_problem(client.post(grants(), {"service": grantee, "access": "write"}, format="json"), 403)
    assert_problem(client.delete(grant("reader")), 403)
    assert access_of("outsider") == []
    assert access_of("reader") == ["read"]
    assert access_of("writer") == ["write"]


def test_an_outsider_gets_404_for_grants(outsider, items):
    assert_problem(outsider.get(grants()), 404, "collection_not_found")
    assert_problem(
        outsider.post(grants(), {"service": "outsider", "access": "write"}, format="json"),
        404,
        "collection_not_found",
    )
    assert_problem(outsider.delete(grant("reader")), 404, "collection_not_found")
    assert access_of("outsider") == []
    assert access_of("reader") == ["read"]


def test_deleting_a_grant_takes_the_access_away(owner, reader, items, existing):
    assert reader.get(record("a")).status_code == 200
    response = owner.delete(grant("reader"))
    assert response.status_code == 204
    assert response.content == b""
    assert access_of("reader") == []
    assert_problem(reader.get(reverse("collection-detail", args=["items"])), 404, "collection_not_found")
    assert_problem(reader.get(record("a")), 404, "collection_not_found")
    assert "items" not in [c["name"] for c in reader.get(reverse("collection-list")).json()["results"]]


def test_deleting_a_grant_that_does_not_exist_is_a_404(owner, outsider, items):
    assert_problem(owner.delete(grant("outsider")), 404, "grant_not_found")
    assert_problem(owner.delete(grant("nobody")), 404, "grant_not_found")
    assert Grant.objects.count() == 2


def test_the_grant_path_without_trailing_slash_answers_too(owner, items):
    assert owner.delete(grant("reader").rstrip("/")).status_code == 204
    assert access_of("reader") == []


# --- what grants allow ---------------------------------------------------------------------------


def test_a_read_grant_allows_reads(reader, items, existing):
    assert reader.get(records()).status_code == 200
    assert [r["key"] for r in reader.get(records()).json()["results"]] == ["a"]
    response = reader.get(record("a"))
    assert response.status_code == 200
    assert response.json()["data"] == {"n": 1}
    assert reader.get(reverse("record-history", args=["items", "a"])).status_code == 200


def test_a_read_grant_gets_403_on_every_record_write(reader, items, existing):
    assert_problem(reader.post(records(), {"key": "b", "data": {}}, format="json"), 403)
    assert_problem(reader.put(record("a"), {"data": {"n": 9}}, format="json"), 403)
    assert_problem(reader.put(record("c"), {"data": {"n": 9}}, format="json"), 403)
    assert_problem(reader.patch(record("a"), {"data": {"n": 9}}, format="json"), 403)
    assert_problem(reader.delete(record("a")), 403)
    assert_problem(
        reader.post(
            reverse("record-bulk", args=["items"]),
            {"mode": "upsert", "records": [{"key": "a", "data": {}}]},
            format="json",
        ),
        403,
    )
    assert_problem(
        reader.post(reverse("record-revert", args=["items", "a"]), {"version": 1}, format="json"), 403
    )
    assert list(Record.objects.values_list("key", "version", "data")) == [("a", 1, {"n": 1})]


def test_a_write_grant_writes_and_implies_read(writer, items, existing):
    assert writer.get(record("a")).status_code == 200
    assert writer.get(records()).status_code == 200
    assert writer.post(records(), {"key": "b", "data": {"n": 2}}, format="json").status_code == 201
    assert writer.put(record("a"), {"data": {"n": 3}}, format="json").status_code == 200
    assert writer.patch(record("a"), {"data": {"m": 4}}, format="json").status_code == 200
    assert writer.delete(record("b")).status_code == 204
    stored = Record.objects.get(key="a")
    assert stored.data == {"n": 3, "m": 4}
    assert stored.version == 3
    assert stored.updated_by == "service:writer"
    assert not Record.objects.filter(key="b").exists()


def test_an_outsider_gets_404_on_records(outsider, items, existing):
    assert_problem(outsider.get(record("a")), 404, "collection_not_found")
    assert_problem(outsider.put(record("a"), {"data": {"n": 9}}, format="json"), 404, "collection_not_found")
    assert Record.objects.get(key="a").data == {"n": 1}
