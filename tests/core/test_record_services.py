"""The record services and their rules, the history they write, and the checks on record data."""

import json
import math

import pytest
from django.core import serializers
from django.test import override_settings
from reversion.models import Revision, Version

from core import services
from core.errors import (
    Conflict,
    ContentTooLarge,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    ValidationFailed,
)
from core.history import history_entry, record_row, serialize_record
from core.models import Record, RecordTombstone, WriteMeta, record_pk
from core.principals import Actor
from core.validation import check_record_data, merge_patch
from tests.actors import TEST_ACTOR
from tests.core.records_support import db_state, history_count

pytestmark = pytest.mark.django_db

ACTOR = Actor(label="service:owner", request_id="req-1")
MIB = 1024 * 1024


@pytest.fixture
def collection(owner):
    return services.collection_create(actor=TEST_ACTOR, name="things", owner=owner.service)


@pytest.fixture
def strict(owner):
    return services.collection_create(
        actor=TEST_ACTOR, name="strict", owner=owner.service, require_if_match=True
    )


def create(collection, key="k1", data=None) -> Record:
    return services.record_create(collection=collection, key=key, data=data or {"a": 1}, actor=ACTOR)


def versions_of(record_or_pk):
    pk = getattr(record_or_pk, "pk", record_or_pk)
    return Version.objects.get_for_object_reference(Record, pk).order_by("pk")


# --- the rules -----------------------------------------------------------------------------------


def test_record_create_writes_the_record_and_its_first_version(collection):
    record = create(collection, data={"a": [1, {"b": None}]})

    assert (record.key, record.version, record.data) == ("k1", 1, {"a": [1, {"b": None}]})
    assert record.pk == record_pk(collection.pk, "k1")
    assert record.created_by == record.updated_by == "service:owner"
    assert Record.objects.get(pk=record.pk).data == {"a": [1, {"b": None}]}
    (version,) = versions_of(record)
    meta = WriteMeta.objects.get(revision=version.revision)
    assert (meta.actor, meta.request_id, version.revision.comment) == ("service:owner", "req-1", "created")


def test_record_create_refuses_an_existing_key(collection):
    create(collection)
    before = db_state(collection)

    with pytest.raises(Conflict) as raised:
        create(collection, data={"b": 2})

    assert raised.value.code == "record_exists"
    assert db_state(collection) == before


@pytest.mark.parametrize("service", ["record_create", "record_put"])
def test_the_key_bulk_is_reserved(collection, service):
    with pytest.raises(ValidationFailed) as raised:
        getattr(services, service)(collection=collection, key="bulk", data={}, actor=ACTOR)

    assert raised.value.code == "invalid_key"
    assert not Record.objects.exists()


@pytest.mark.parametrize("key", ["k1\n", "\nk1", "k1 ", "ä", "", "x" * 201])
def test_keys_must_match_the_whole_pattern(collection, key):
    with pytest.raises(ValidationFailed):
        services.record_put(collection=collection, key=key, data={}, actor=ACTOR)
    assert not Record.objects.exists()


def test_record_put_creates_then_replaces(collection):
    record, created = services.record_put(collection=collection, key="k1", data={"a": 1}, actor=ACTOR)
    assert (created, record.version) == (True, 1)

    record, created = services.record_put(collection=collection, key="k1", data={"b": 2}, actor=ACTOR)

    assert (created, record.version, record.data) == (False, 2, {"b": 2})
    assert Record.objects.get(pk=record.pk).data == {"b": 2}
    assert [v.revision.comment for v in versions_of(record)] == ["created", "replaced"]


def test_record_put_checks_if_match(collection):
    create(collection)
    services.record_put(collection=collection, key="k1", data={"a": 2}, actor=ACTOR)
    before = db_state(collection)

    with pytest.raises(PreconditionFailed) as raised:
        services.record_put(collection=collection, key="k1", data={}, actor=ACTOR, if_match=frozenset({1}))

    assert raised.value.extra == {"current_version": 2}
    assert db_state(collection) == before
    record, _ = services.record_put(
        collection=collection, key="k1", data={"a": 3}, actor=ACTOR, if_match=frozenset({1, 2})
    )
    assert record.version == 3


@pytest.mark.parametrize("if_match", [frozenset({1}), "*", frozenset()])
def test_if_match_on_a_missing_record_fails(collection, if_match):
    with pytest.raises(PreconditionFailed) as raised:
        services.record_put(collection=collection, key="k1", data={}, actor=ACTOR, if_match=if_match)

    assert raised.value.extra == {"current_version": None}
    assert not Record.objects.exists()


def test_if_none_match_refuses_an_existing_record(collection):
    create(collection)
    before = db_state(collection)

    with pytest.raises(PreconditionFailed):
        services.record_put(collection=collection, key="k1", data={}, actor=ACTOR, if_none_match=True)

    assert db_state(collection) == before


def test_record_patch_merges_and_checks_its_preconditions(collection):
    create(collection, data={"a": 1, "b": {"c": 1}})

    record = services.record_patch(
        collection=collection, key="k1", patch={"a": None, "b": {"d": 2}}, actor=ACTOR
    )

    assert (record.version, record.data) == (2, {"b": {"c": 1, "d": 2}})
    with pytest.raises(PreconditionFailed):
        services.record_patch(collection=collection, key="k1", patch={}, actor=ACTOR, if_match=frozenset({1}))
    with pytest.raises(NotFound):
        services.record_patch(collection=collection, key="nope", patch={}, actor=ACTOR)
    with pytest.raises(PreconditionFailed):
        services.record_patch(collection=collection, key="nope", patch={}, actor=ACTOR, if_match="*")
    with pytest.raises(ValidationFailed):
        services.record_patch(collection=collection, key="k1", patch=[1], actor=ACTOR)
    assert Record.objects.get(key="k1").version == 2


def test_record_delete_keeps_history_and_a_tombstone(collection):
    record = create(collection)

    services.record_delete(collection=collection, key="k1", actor=ACTOR)

    assert not Record.objects.exists()
    tombstone = RecordTombstone.objects.get(pk=record.pk)
    assert (tombstone.key, tombstone.version, tombstone.deleted_by) == ("k1", 2, "service:owner")
    entry = history_entry(record.pk, 2)
    assert (entry["deleted"], entry["data"], entry["comment"]) == (True, {"a": 1}, "deleted")


def test_record_delete_checks_its_preconditions(collection):
    create(collection)
    before = db_state(collection)

    with pytest.raises(NotFound):
        services.record_delete(collection=collection, key="nope", actor=ACTOR)
    with pytest.raises(PreconditionFailed):
        services.record_delete(collection=collection, key="nope", actor=ACTOR, if_match=frozenset({1}))
    with pytest.raises(PreconditionFailed):
        services.record_delete(collection=collection, key="k1", actor=ACTOR, if_match=frozenset({7}))

    assert db_state(collection) == before


def test_versions_continue_across_delete_and_recreate(collection):
    create(collection)
    services.record_put(collection=collection, key="k1", data={"a": 2}, actor=ACTOR)
    services.record_delete(collection=collection, key="k1", actor=ACTOR)

    assert create(collection, data={"a": 4}).version == 4
    services.record_delete(collection=collection, key="k1", actor=ACTOR)
    record, created = services.record_put(collection=collection, key="k1", data={"a": 6}, actor=ACTOR)
    assert (created, record.version) == (True, 6)
    services.record_delete(collection=collection, key="k1", actor=ACTOR)
    (item,) = services.records_bulk(
        collection=collection, mode="insert", items=[{"key": "k1", "data": {}}], actor=ACTOR
    )
    assert (item.version, item.created) == (8, True)
    assert [json.loads(v.serialized_data)[0]["fields"]["version"] for v in versions_of(record)] == list(
        range(1, 9)
    )


@pytest.mark.parametrize(
    ("call", "kwargs"),
    [
        (services.record_put, {"key": "k1", "data": {}}),
        (services.record_patch, {"key": "k1", "patch": {}}),
        (services.record_delete, {"key": "k1"}),
        (services.record_revert, {"key": "k1", "version": 1}),
        (services.records_bulk, {"mode": "upsert", "items": [{"key": "k1", "data": {}}]}),
    ],
)
def test_require_if_match_refuses_writes_of_existing_records_without_it(strict, call, kwargs):
    create(strict)
    before = db_state(strict)

    with pytest.raises(PreconditionRequired):
        call(collection=strict, actor=ACTOR, **kwargs)

    assert db_state(strict) == before


@pytest.mark.parametrize(
    ("call", "kwargs"),
    [
        (services.record_create, {"key": "k1", "data": {}}),
        (services.record_put, {"key": "k1", "data": {}}),
        (services.record_patch, {"key": "k1", "patch": {}}),
        (services.record_delete, {"key": "k1"}),
        (services.record_revert, {"key": "k1", "version": 1}),
        (services.records_bulk, {"mode": "insert", "items": [{"key": "k1", "data": {}}]}),
    ],
)
def test_record_services_refuse_a_stream(owner, call, kwargs):
    stream = services.collection_create(actor=TEST_ACTOR, name="events", owner=owner.service, kind="stream")

    with pytest.raises(NotFound) as raised:
        call(collection=stream, actor=ACTOR, **kwargs)

    assert raised.value.code == "not_a_records_collection"
    assert not Record.objects.exists()


def test_record_revert_rules(collection):
    create(collection)
    services.record_put(collection=collection, key="k1", data={"a": 2}, actor=ACTOR)

    for version in (0, -1, True, "1", 1.0, None):
        with pytest.raises(ValidationFailed):
            services.record_revert(collection=collection, key="k1", version=version, actor=ACTOR)
    with pytest.raises(NotFound):
        services.record_revert(collection=collection, key="k1", version=3, actor=ACTOR)
    with pytest.raises(PreconditionFailed):
        services.record_revert(
            collection=collection, key="k1", version=1, actor=ACTOR, if_match=frozenset({1})
        )
    assert history_count(collection, "k1") == 2

    record, created = services.record_revert(collection=collection, key="k1", version=1, actor=ACTOR)
    assert (record.version, record.data, created) == (3, {"a": 1}, False)


def test_records_bulk_reports_the_index_of_the_first_problem(collection):
    create(collection, key="taken")
    before = db_state(collection)

    with pytest.raises(ValidationFailed) as invalid:
        services.records_bulk(
            collection=collection,
            mode="insert",
            items=[{"key": "a", "data": {}}, {"key": "b", "data": 1}],
            actor=ACTOR,
        )
    with pytest.raises(Conflict) as taken:
        services.records_bulk(
            collection=collection,
            mode="insert",
            items=[{"key": "a", "data": {}}, {"key": "taken", "data": {}}],
            actor=ACTOR,
        )

    assert invalid.value.extra == {"index": 1}
    assert taken.value.extra == {"index": 1}
    assert db_state(collection) == before


@override_settings(NUCLEUS_MAX_BATCH=3)
def test_records_bulk_honours_the_batch_limit(collection):
    with pytest.raises(ValidationFailed) as raised:
        services.records_bulk(
            collection=collection, mode="insert", items=[{"data": {}} for _ in range(4)], actor=ACTOR
        )
    assert raised.value.code == "too_many_items"
    assert (
        len(
            services.records_bulk(collection=collection, mode="insert", items=[{"data": {}}] * 3, actor=ACTOR)
        )
        == 3
    )


def test_records_bulk_writes_one_revision(collection):
    create(collection, key="old")
    revisions = Revision.objects.count()

    items = services.records_bulk(
        collection=collection,
        mode="upsert",
        items=[{"key": "old", "data": {"v": 2}}, {"key": "new", "data": {"v": 1}}],
        actor=ACTOR,
    )

    assert [(i.key, i.version, i.created) for i in items] == [("old", 2, False), ("new", 1, True)]
    assert Revision.objects.count() == revisions + 1
    revision = Revision.objects.latest("pk")
    assert sorted(Version.objects.filter(revision=revision).values_list("object_repr", flat=True)) == [
        "new",
        "old",
    ]
    assert revision.write_meta.request_id == "req-1"


# --- history format ------------------------------------------------------------------------------


def django_json(record: Record):
    return json.loads(serializers.serialize("json", [record]))


def as_stored(record: Record, **changes) -> dict:
    """The record's fields as a history version should give them back (reversion's field_dict)."""
    fields = {field.attname: getattr(record, field.attname) for field in Record._meta.concrete_fields}
    return {**fields, **changes}


def assert_version_is(version: Version, expected: dict) -> None:
    """Equal field by field; timestamps exactly, or to the millisecond as Django's serializer keeps them."""
    stored = version.field_dict
    for name in ("created_at", "updated_at"):
        moment = expected[name]
        if stored[name] != moment:
            expected = {**expected, name: moment.replace(microsecond=moment.microsecond // 1000 * 1000)}
    assert stored == expected


def test_serialize_record_writes_what_djangos_serializer_writes(collection):
    data = {"text": "Zoë ✓ 😀", "n": [1, 2.5, -3, 10**20], "nested": {"t": True, "f": False, "z": None}}
    record = create(collection, data=data)
    Record.objects.filter(pk=record.pk).update(schema_version=3)
    record = Record.objects.get(pk=record.pk)

    assert json.loads(serialize_record(record_row(record))) == django_json(record)


def test_history_reads_back_as_the_record_was_written(collection):
    data = {"text": "Zoë ✓ 😀", "n": [1, 2.5, -3, 10**20], "nested": {"t": True, "f": False, "z": None}}
    record = create(collection, data=data)
    Record.objects.filter(pk=record.pk).update(schema_version=3)

    (version,) = versions_of(record)
    assert json.loads(version.serialized_data)[0]["model"] == "core.record"
    # the history was written before schema_version was set
    assert_version_is(version, as_stored(Record.objects.get(pk=record.pk), schema_version=None))


def test_history_of_every_kind_of_write_reads_back_as_written(collection):
    create(collection)
    services.record_put(collection=collection, key="k1", data={"b": 2}, actor=ACTOR)
    after_put = Record.objects.get(key="k1")
    services.record_patch(collection=collection, key="k1", patch={"c": 3}, actor=ACTOR)
    after_patch = Record.objects.get(key="k1")
    services.records_bulk(
        collection=collection, mode="upsert", items=[{"key": "k1", "data": {"d": 4}}], actor=ACTOR
    )
    after_bulk = Record.objects.get(key="k1")
    services.record_delete(collection=collection, key="k1", actor=ACTOR)

    versions = list(versions_of(after_put))
    assert len(versions) == 5
    assert_version_is(versions[1], as_stored(after_put))
    assert_version_is(versions[2], as_stored(after_patch))
    assert after_patch.data == {"b": 2, "c": 3}
    assert_version_is(versions[3], as_stored(after_bulk))
    assert after_bulk.created_at == after_put.created_at  # an upsert keeps when and by whom it was created
    deletion = versions[4].field_dict
    assert deletion["updated_at"] >= after_bulk.updated_at
    assert_version_is(
        versions[4], as_stored(after_bulk, version=5, deleted=True, updated_at=deletion["updated_at"])
    )


def test_reversion_reads_our_versions(collection):
    record = create(collection, data={"a": 1})
    services.record_delete(collection=collection, key="k1", actor=ACTOR)

    first, deletion = versions_of(record)

    assert_version_is(first, as_stored(record))
    assert first.field_dict["created_by"] == "service:owner"
    assert (deletion.field_dict["version"], deletion.field_dict["deleted"]) == (2, True)
    assert first.object_repr == "k1"
    assert first.revision.write_meta.actor == "service:owner"
    assert list(Version.objects.get_deleted(Record)) == [deletion]


# --- check_record_data ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "path", "message"),
    [
        ({"x": math.nan}, "/data/x", "finite"),
        ({"x": [1, math.inf]}, "/data/x/1", "finite"),
        ({"x": {"y": -math.inf}}, "/data/x/y", "finite"),
        ({"s": "a\x00b"}, "/data/s", "NUL"),
        ({"s": "é\x00"}, "/data/s", "NUL"),
        ({"a\x00": 1}, "/data/a\x00", "NUL"),
        ({"s": "\ud800"}, "/data/s", "surrogate"),
        ({"s": "ok \udfff"}, "/data/s", "surrogate"),
        ({"\udc00": 1}, "/data/\udc00", "surrogate"),
        ({"a/b": {"c~d": math.nan}}, "/data/a~1b/c~0d", "finite"),
    ],
)
def test_check_record_data_rejects_what_the_database_cannot_hold(data, path, message):
    with pytest.raises(ValidationFailed) as raised:
        check_record_data(data)

    assert raised.value.errors[0]["path"] == path
    assert message in raised.value.errors[0]["message"]


def test_check_record_data_accepts_valid_unicode_and_numbers():
    data = {
        "emoji": "😀",
        "cjk": "漢字",
        "rtl": "שלום",
        "big": 10**40,
        "tiny": 5e-324,
        "neg": -0.0,
        "ctl": "\x01\x1f",
    }

    assert check_record_data(data) == len(
        json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    )


@pytest.mark.parametrize("data", [[], "x", 1, None, True])
def test_check_record_data_wants_an_object(data):
    with pytest.raises(ValidationFailed) as raised:
        check_record_data(data, path="/records/2/data")

    assert raised.value.errors == [{"path": "/records/2/data", "message": "must be an object."}]


def nested(depth: int, kind: type, leaf=None):
    """`depth` nested containers, the outermost an object, the innermost of `kind` (holding leaf, if any)."""
    value = ({} if leaf is None else {"leaf": leaf}) if kind is dict else ([] if leaf is None else [leaf])
    for _ in range(depth - 2):
        value = {"a": value} if kind is dict else [value]
    return {"a": value}


@pytest.mark.parametrize("kind", [dict, list])
@pytest.mark.parametrize("leaf", [None, "text"])
def test_check_record_data_allows_64_levels_of_nesting_and_no_more(kind, leaf):
    check_record_data(nested(64, kind, leaf))

    with pytest.raises(ValidationFailed) as raised:
        check_record_data(nested(65, kind, leaf))
    assert raised.value.code == "invalid_data"
    assert "deeper than 64" in raised.value.errors[0]["message"]
    assert raised.value.errors[0]["path"].count("/") == 65  # "/data" and 64 steps down to the 65th level


def test_check_record_data_allows_one_mebibyte_and_no_more():
    overhead = len('{"s":""}')

    assert check_record_data({"s": "x" * (MIB - overhead)}) == MIB
    with pytest.raises(ContentTooLarge) as raised:
        check_record_data({"s": "x" * (MIB - overhead + 1)})
    assert raised.value.code == "record_too_large"
    assert raised.value.status == 413


def test_check_record_data_counts_utf8_bytes():
    overhead = len('{"s":""}')

    assert check_record_data({"s": "é" * ((MIB - overhead) // 2)}) == MIB
    with pytest.raises(ContentTooLarge):
        check_record_data({"s": "é" * ((MIB - overhead) // 2) + "x"})


def test_merge_patch_follows_rfc_7386_examples():
    # The examples of RFC 7386, section 3.
    cases = [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ]
    for target, patch, expected in cases:
        original = json.loads(json.dumps(target))
        assert merge_patch(target, patch) == expected
        assert target == original
