"""Writes to collections and grants record their actor and request id, as record writes do."""

import json

import pytest
from django.urls import reverse
from reversion.models import Version

from core.models import Collection, Grant, Record, record_pk
from tests.core.records_support import history_entries

pytestmark = pytest.mark.django_db


def _audit(model, object_id) -> list[tuple[str, str, str, dict]]:
    versions = (
        Version.objects.get_for_object_reference(model, object_id)
        .select_related("revision__write_meta")
        .order_by("pk")
    )
    return [
        (
            v.revision.write_meta.actor,
            v.revision.write_meta.request_id,
            v.revision.comment,
            json.loads(v.serialized_data)[0]["fields"],
        )
        for v in versions
    ]


def test_creating_and_changing_a_collection_records_who_did_it(owner):
    created = owner.post(
        reverse("collection-list"), {"name": "audited"}, format="json", HTTP_X_REQUEST_ID="r-1"
    )
    assert created.status_code == 201
    changed = owner.patch(
        reverse("collection-detail", args=["audited"]),
        {"description": "now described"},
        format="json",
        HTTP_X_REQUEST_ID="r-2",
    )
    assert changed.status_code == 200

    collection = Collection.objects.get(name="audited")
    audit = _audit(Collection, collection.pk)
    assert [(actor, request_id, comment) for actor, request_id, comment, _ in audit] == [
        ("service:owner", "r-1", "collection created"),
        ("service:owner", "r-2", "changed description"),
    ]
    assert audit[-1][3]["description"] == "now described"


def test_a_patch_that_changes_nothing_records_nothing(owner, items):
    before = Version.objects.get_for_model(Collection).count()
    response = owner.patch(reverse("collection-detail", args=["items"]), {"description": ""}, format="json")
    assert response.status_code == 200
    assert Version.objects.get_for_model(Collection).count() == before


def test_granting_changing_and_revoking_access_is_recorded(owner, outsider, items):
    url = reverse("grant-list", args=["items"])
    assert owner.post(url, {"service": "outsider", "access": "read"}, format="json").status_code == 201
    grant_pk = Grant.objects.get(collection=items, service=outsider.service).pk
    assert owner.post(url, {"service": "outsider", "access": "write"}, format="json").status_code == 200
    revoke = owner.delete(reverse("grant-detail", args=["items", "outsider"]), HTTP_X_REQUEST_ID="r-revoke")
    assert revoke.status_code == 204

    audit = _audit(Grant, grant_pk)
    assert [comment for _, _, comment, _ in audit] == [
        "granted read to outsider",
        "changed grant of outsider to write",
        "revoked the grant of outsider",
    ]
    assert {actor for actor, _, _, _ in audit} == {"service:owner"}
    assert audit[-1][1] == "r-revoke"
    assert not Grant.objects.filter(pk=grant_pk).exists()


def test_an_operator_deleting_a_full_collection_leaves_a_deletion_in_every_records_history(
    operator, owner, items
):
    for key in ("a", "b"):
        assert (
            owner.post(
                reverse("record-list", args=["items"]), {"key": key, "data": {"k": key}}, format="json"
            ).status_code
            == 201
        )

    assert operator.delete(reverse("collection-detail", args=["items"])).status_code == 204

    assert not Record.objects.exists()
    for key in ("a", "b"):
        entries = history_entries(record_pk(items.pk, key), limit=10)
        assert entries[0]["deleted"] is True
        assert entries[0]["version"] == 2
        assert entries[0]["data"] == {"k": key}
        assert entries[0]["changed_by"] == "operator:alice"
        assert entries[0]["comment"] == "deleted with collection items"
    assert _audit(Collection, items.pk)[-1][2] == "collection deleted"


def test_creating_a_service_and_issuing_and_revoking_tokens_is_recorded_without_the_hash(db):
    from core import services
    from core.models import Service, ServiceToken
    from tests.actors import TEST_ACTOR

    service, _ = services.service_ensure(name="audited", actor=TEST_ACTOR)
    token, plain = services.token_issue(service=service, actor=TEST_ACTOR, label="ci")
    services.token_revoke(token=token, actor=TEST_ACTOR)
    services.token_revoke(token=token, actor=TEST_ACTOR)  # revoking again records nothing new

    assert [c for _, _, c, _ in _audit(Service, service.pk)] == ["service created"]
    token_audit = _audit(ServiceToken, token.pk)
    assert [(actor, comment) for actor, _, comment, _ in token_audit] == [
        ("command:tests", f"token {token.prefix}… issued to audited"),
        ("command:tests", f"token {token.prefix}… revoked"),
    ]
    assert token_audit[-1][3]["revoked_at"] is not None
    for _, _, _, fields in token_audit:
        assert "token_hash" not in fields
        assert plain not in json.dumps(fields)


def test_the_create_service_command_records_itself_as_the_actor(db):
    from django.core.management import call_command

    from core.models import Service

    call_command("create_service", "cmdsvc", stdout=open("/dev/null", "w"), stderr=open("/dev/null", "w"))  # noqa: SIM115
    assert _audit(Service, Service.objects.get(name="cmdsvc").pk)[0][0] == "command:create_service"
