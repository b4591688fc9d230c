"""Every error the API returns is an RFC 9457 problem (application/problem+json), and writes nothing."""

import http.client
import json
from urllib.parse import urlsplit

import pytest
from django.test import override_settings
from django.urls import path, reverse
from rest_framework.test import APIClient
from reversion.models import Revision, Version

from core.api.base import NucleusAPIView
from core.models import Collection, Grant, Record, RecordTombstone

MIB = 1024 * 1024


# --- a urlconf whose view fails unexpectedly (used with override_settings(ROOT_URLCONF=__name__)) ----


class ExplodingView(NucleusAPIView):
    permission_classes = []

    def get(self, request):
        raise RuntimeError("secret detail")

    def post(self, request):
        raise RuntimeError("secret detail")


def exploding_plain_view(request):
    raise RuntimeError("secret detail")


urlpatterns = [
    path("api/v1/explode/", ExplodingView.as_view()),
    path("api/v1/explode-plain/", exploding_plain_view),
]
handler500 = "nucleus_project.urls.handler500"


# --- helpers -------------------------------------------------------------------------------------


def records_url(collection: str = "items") -> str:
    return reverse("record-list", args=[collection])


def assert_problem(response, status: int, code: str | None = None) -> dict:
    """The response is a problem of this status (and code); returns its body."""
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/problem+json")
    body = json.loads(response.content)
    assert {"type", "title", "status", "detail", "code"} <= set(body)
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["type"] == f"urn:nucleus:problem:{body['code']}"
    if code is not None:
        assert body["code"] == code
    assert response.has_header("X-Request-ID")
    return body


def database_state() -> dict:
    # Idempotency keys are left out: a refusal is stored as the first response, to be replayed.
    return {
        model.__name__: model.objects.count()
        for model in (Collection, Grant, Record, RecordTombstone, Revision, Version)
    }


@pytest.fixture
def unchanged(items):
    """Asserts, after the test, that the database holds exactly what it held before."""
    before = database_state()
    yield
    assert database_state() == before


def post_raw(client, url: str, body: bytes | str, content_type: str = "application/json", **extra):
    if isinstance(body, str):
        body = body.encode("utf-8")
    return client.generic("POST", url, body, content_type=content_type, **extra)


def nested(depth: int) -> dict:
    """An object with `depth` levels of objects (the outermost counts as one)."""
    value: dict = {"leaf": True}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


# --- 400: the body is not JSON Nucleus accepts ---------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"data": {"a": 1}', id="truncated"),
        pytest.param(b"{'data': {}}", id="single-quotes"),
        pytest.param(b"  \n ", id="only-whitespace"),
        pytest.param(b'{"data": {"a": NaN}}', id="nan"),
        pytest.param(b'{"data": {"a": Infinity}}', id="infinity"),
        pytest.param(b'{"data": {"a": -Infinity}}', id="minus-infinity"),
        pytest.param(b'{"data": {"a": ' + b"9" * 5000 + b"}}", id="5000-digit-integer"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="nested-100000-deep"),
        pytest.param(b'{"data": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001, id="objects-100000-deep"),
        pytest.param(b'{"data": {"name": "caf\xe9"}}', id="latin-1-not-utf-8"),
        pytest.param(b'{"data": {"name": "\xff\xfe"}}', id="invalid-utf-8"),
    ],
)
def test_it_rejects_a_body_that_is_not_strict_json_with_400(owner, unchanged, body):
    response = post_raw(owner, records_url(), body)
    assert_problem(response, 400)


def test_it_rejects_malformed_json_even_with_an_idempotency_key(owner, unchanged):
    response = post_raw(owner, records_url(), b'{"data": ', HTTP_IDEMPOTENCY_KEY="k-1")
    assert_problem(response, 400)


def test_it_rejects_a_body_that_is_not_an_object(owner, unchanged):
    response = post_raw(owner, records_url(), b"[1, 2]")
    assert_problem(response, 400, "body_not_object")


# --- 401, 403, 404, 405, 406 ---------------------------------------------------------------------


def test_anonymous_caller_gets_401(unchanged):
    response = APIClient().get(reverse("collection-list"))
    assert_problem(response, 401, "not_authenticated")
    assert "Bearer" in response["WWW-Authenticate"]


def test_invalid_token_gets_401(unchanged):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    response = post_raw(client, records_url(), b'{"data": {}}')
    assert_problem(response, 401)


def test_reader_writing_gets_403(reader, unchanged):
    response = reader.post(records_url(), {"key": "a", "data": {}}, format="json")
    assert_problem(response, 403, "forbidden")


def test_unknown_collection_gets_404(owner, unchanged):
    response = owner.post(records_url("nope"), {"data": {}}, format="json")
    assert_problem(response, 404, "collection_not_found")
    assert_problem(owner.get(reverse("collection-detail", args=["nope"])), 404)


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("url", ["/api/v1/nothing-here/", "/api/v1/nothing-here", "/api/v1/", "/api/v2/x"])
def test_unknown_path_under_the_api_gets_a_404_problem(owner, unchanged, debug, url):
    with override_settings(DEBUG=debug):
        assert_problem(owner.get(url), 404, "not_found")
        assert_problem(owner.post(url, {"data": {}}, format="json"), 404, "not_found")


def test_unknown_method_gets_405(owner, unchanged):
    response = owner.put(reverse("collection-list"), {"name": "x"}, format="json")
    assert_problem(response, 405, "method_not_allowed")
    assert_problem(owner.delete(reverse("record-list", args=["items"])), 405)


def test_unacceptable_accept_header_gets_406(owner, unchanged):
    response = owner.get(reverse("collection-list"), HTTP_ACCEPT="text/csv")
    assert_problem(response, 406, "not_acceptable")
    response = owner.post(records_url(), {"data": {}}, format="json", HTTP_ACCEPT="text/csv")
    assert_problem(response, 406, "not_acceptable")


def test_problem_json_is_an_acceptable_answer(owner, unchanged):
    response = owner.get(reverse("collection-detail", args=["nope"]), HTTP_ACCEPT="application/problem+json")
    assert_problem(response, 404)


# --- 413: bodies over 10 MiB ---------------------------------------------------------------------


def test_a_body_over_10_mib_gets_413(owner, unchanged):
    body = b'{"data": {"blob": "' + b"x" * (11 * MIB) + b'"}}'
    response = post_raw(owner, records_url(), body)
    assert_problem(response, 413, "payload_too_large")


def test_a_body_over_10_mib_gets_413_with_an_idempotency_key(owner, unchanged):
    body = b'{"data": {"blob": "' + b"x" * (11 * MIB) + b'"}}'
    response = post_raw(owner, records_url(), body, HTTP_IDEMPOTENCY_KEY="big")
    assert_problem(response, 413)


@pytest.mark.django_db(transaction=True)
def test_a_body_over_10_mib_gets_413_over_real_http(live_server, owner, items):
    before = database_state()
    url = urlsplit(live_server.url)
    body = b'{"data": {"blob": "' + b"x" * (11 * MIB) + b'"}}'
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        connection.request(
            "POST",
            records_url(),
            body=body,
            headers={
                "Authorization": f"Bearer {owner.token}",
                "Content-Type": "application/json",
                "Content-Length": str(len(body)),
            },
        )
        response = connection.getresponse()
        payload = response.read()
    finally:
        connection.close()
    assert response.status == 413
    assert response.getheader("Content-Type").startswith("application/problem+json")
    assert response.getheader("X-Request-ID")
    problem = json.loads(payload)
    assert problem["status"] == 413
    assert problem["code"] == "payload_too_large"
    assert {"type", "title", "detail"} <= set(problem)
    assert database_state() == before


# --- 415 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "text/csv"])
def test_a_body_that_is_not_json_gets_415(owner, unchanged, content_type):
    response = post_raw(owner, records_url(), b'{"data": {}}', content_type=content_type)
    assert_problem(response, 415, "unsupported_media_type")


# --- 422: valid JSON that Nucleus will not store -------------------------------------------------


def test_validation_errors_point_into_the_body(owner, unchanged):
    response = owner.post(records_url(), {"data": {}, "extra": 1, "colour": "red"}, format="json")
    body = assert_problem(response, 422, "validation_failed")
    assert {error["path"] for error in body["errors"]} == {"/extra", "/colour"}
    assert all(error["message"] for error in body["errors"])


def test_validation_errors_of_serializers_are_json_pointers(owner, unchanged):
    response = owner.post(
        reverse("collection-list"), {"name": "x", "kind": "table", "bogus": 1}, format="json"
    )
    body = assert_problem(response, 422, "validation_failed")
    assert {error["path"] for error in body["errors"]} == {"/bogus"}
    response = owner.post(reverse("collection-list"), {"name": "Bad Name!", "kind": "table"}, format="json")
    body = assert_problem(response, 422)
    assert all(error["path"].startswith("/") for error in body["errors"])
    assert {error["path"] for error in body["errors"]} <= {"/name", "/kind"}
    assert body["errors"]


def test_a_missing_field_is_named(owner, unchanged):
    body = assert_problem(owner.post(records_url(), {"key": "a"}, format="json"), 422)
    assert body["errors"] == [{"path": "/data", "message": "is required."}]


def test_record_data_over_1_mib_gets_422(owner, unchanged):
    response = owner.post(records_url(), {"key": "big", "data": {"blob": "x" * (MIB + 1)}}, format="json")
    body = assert_problem(response, 413, "record_too_large")
    assert body["errors"][0]["path"] == "/data"
    assert not Record.objects.filter(key="big").exists()


@pytest.mark.parametrize(
    ("raw", "pointer"),
    [
        pytest.param(r'{"data": {"s": "a\u0000b"}}', "/data/s", id="nul-in-string"),
        pytest.param(r'{"data": {"a\u0000": 1}}', "/data/a\x00", id="nul-in-key"),
        pytest.param(r'{"data": {"list": [1, "\u0000"]}}', "/data/list/1", id="nul-in-list"),
        pytest.param(r'{"data": {"s": "\ud800"}}', "/data/s", id="lone-surrogate-in-string"),
        pytest.param(r'{"data": {"s": "x\udfffy"}}', "/data/s", id="lone-low-surrogate"),
        pytest.param(r'{"data": {"\ud800": 1}}', r"/data/\ud800", id="lone-surrogate-in-key"),
        pytest.param(r'{"data": {"a/b": {"c~d": "\u0000"}}}', "/data/a~1b/c~0d", id="pointer-escaping"),
    ],
)
def test_data_postgresql_cannot_store_gets_422(owner, unchanged, raw, pointer):
    response = post_raw(owner, records_url(), raw, HTTP_IDEMPOTENCY_KEY="odd-unicode")
    body = assert_problem(response, 422, "invalid_data")
    # A lone surrogate cannot be sent back in UTF-8: the pointer spells it as the escape \ud800.
    assert [error["path"] for error in body["errors"]] == [pointer]


def test_a_paired_surrogate_escape_is_an_ordinary_character(owner, items):
    response = post_raw(owner, records_url(), r'{"key": "emoji", "data": {"s": "\ud83d\ude00"}}')
    assert response.status_code == 201, response.content
    assert Record.objects.get(key="emoji").data == {"s": "\U0001f600"}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"name": "x\x00y"}, id="nul-in-name"),
        pytest.param({"name": "things", "description": "a\x00b"}, id="nul-in-description"),
        pytest.param({"name": "things", "description": "a\ud800b"}, id="surrogate-in-description"),
        pytest.param({"name": "things", "kind": "\ud800"}, id="surrogate-in-choice"),
    ],
)
def test_odd_unicode_in_collection_fields_gets_422(owner, unchanged, body):
    raw = json.dumps(body)  # ensure_ascii: the surrogate travels as the escape \ud800
    response = post_raw(owner, reverse("collection-list"), raw)
    problem = assert_problem(response, 422)
    assert problem["errors"] and all(error["path"].startswith("/") for error in problem["errors"])


@pytest.mark.parametrize("key", ["a\n", "a\x00", "caf\u00e9", "\ud800", "a/b", ""])
def test_odd_record_keys_get_422(owner, unchanged, key):
    response = post_raw(owner, records_url(), json.dumps({"key": key, "data": {}}))
    problem = assert_problem(response, 422, "invalid_key")
    assert problem["errors"][0]["path"] == "/key"


def test_data_nested_65_deep_gets_422(owner, unchanged):
    response = owner.post(records_url(), {"key": "deep", "data": nested(65)}, format="json")
    body = assert_problem(response, 422, "invalid_data")
    assert body["errors"][0]["path"].startswith("/data/a/a/a")


def test_data_nested_within_the_limit_is_stored(owner, items):
    response = owner.post(records_url(), {"key": "deep", "data": nested(32)}, format="json")
    assert response.status_code == 201, response.content
    assert Record.objects.get(key="deep").data == nested(32)


def test_data_nested_900_deep_gets_400_not_500(owner, unchanged):
    raw = '{"data": ' + '{"a": ' * 900 + "1" + "}" * 901
    response = post_raw(owner, records_url(), raw, HTTP_IDEMPOTENCY_KEY="deep")
    body = assert_problem(response, 400, "body_too_deep")
    assert "128" in body["detail"]


def test_a_body_nested_to_the_body_limit_reaches_validation(owner, unchanged):
    # 128 levels: the body, then `data` and 126 objects below it.
    response = owner.post(records_url(), {"key": "deep", "data": nested(127)}, format="json")
    body = assert_problem(response, 422, "invalid_data")
    assert body["errors"][0]["path"] == "/data" + "/a" * 64


def test_a_body_nested_one_level_past_the_body_limit_is_a_400(owner, unchanged):
    response = owner.post(records_url(), {"key": "deep", "data": nested(128)}, format="json")
    assert_problem(response, 400, "body_too_deep")


def test_nesting_after_a_string_ending_in_an_escaped_backslash_counts(owner, unchanged):
    body = '{"data": {"s": "a\\\\", "t": ' + "[" * 127 + "]" * 127 + "}}"
    assert_problem(post_raw(owner, records_url(), body), 400, "body_too_deep")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param('{"data": {"s": "' + "[" * 5000 + '"}}', id="brackets-in-a-string"),
        pytest.param('{"data": {"s": "\\\\", "t": "' + "{" * 5000 + '\\""}}', id="escapes-then-brackets"),
        pytest.param('{"data": {"' + "[" * 300 + '": [[1]]}}', id="brackets-in-a-key"),
    ],
)
def test_brackets_inside_strings_do_not_count_as_nesting(owner, items, body):
    response = post_raw(owner, records_url(), body)
    assert response.status_code == 201, response.content[:300]
    assert Record.objects.get(key=response.json()["key"]).data == json.loads(body)["data"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param('{"data": "' + '\\"' * 50_000 + "[" * 300, id="unterminated-string-of-escaped-quotes"),
        pytest.param('{"data": ' + "[" * 300 + '"', id="unterminated-string-after-brackets"),
        pytest.param("[" * 129 + "]" * 128, id="unbalanced-deep"),
    ],
)
def test_a_malformed_deep_body_is_a_400(owner, unchanged, body):
    assert_problem(post_raw(owner, records_url(), body), 400)


# --- 500: no internals ---------------------------------------------------------------------------


@override_settings(ROOT_URLCONF=__name__)
@pytest.mark.parametrize("method", ["get", "post"])
def test_an_unexpected_error_is_a_500_problem_without_internals(owner, unchanged, method):
    response = getattr(owner, method)("/api/v1/explode/", {"data": {}}, format="json")
    body = assert_problem(response, 500, "internal_error")
    text = response.content.decode()
    assert "secret detail" not in text
    assert "RuntimeError" not in text
    assert "Traceback" not in text
    assert set(body) == {"type", "title", "status", "detail", "code"}


@override_settings(ROOT_URLCONF=__name__)
def test_an_unexpected_error_outside_drf_is_a_500_problem_without_internals(owner, unchanged):
    owner.raise_request_exception = False
    response = owner.get("/api/v1/explode-plain/")
    assert_problem(response, 500, "internal_error")
    assert "secret detail" not in response.content.decode()
    assert "Traceback" not in response.content.decode()


def test_a_4000_digit_integer_is_stored_exactly(owner, items):
    number = int("7" * 4000)
    response = post_raw(owner, records_url(), '{"key": "big-int", "data": {"n": ' + "7" * 4000 + "}}")
    assert response.status_code == 201, response.content[:300]
    assert Record.objects.get(key="big-int").data == {"n": number}
    fetched = owner.get(reverse("record-detail", args=["items", "big-int"]))
    assert fetched.status_code == 200
    assert json.loads(fetched.content)["data"]["n"] == number


@pytest.mark.parametrize(
    "where",
    [
        pytest.param('{"s": "\\ud800"}', id="lone-surrogate"),
        pytest.param('{"s": "\\u0000"}', id="nul-in-string"),
        pytest.param('{"\\u0000": 1}', id="nul-in-key"),
        pytest.param('{"n": NaN}', id="nan"),
        pytest.param('{"n": 1e400}', id="overflowing-number"),
        pytest.param("[" * 100_000 + "]" * 100_000, id="nested-100000-deep"),
        pytest.param('{"n": ' + "9" * 5000 + "}", id="5000-digit-integer"),
        pytest.param('{"s": ', id="malformed"),
        pytest.param("[1]", id="not-an-object"),
    ],
)
def test_a_where_filter_no_record_could_match_gets_400(owner, unchanged, where):
    response = owner.get(records_url(), {"where": where})
    assert_problem(response, 400, "invalid_filter")
