"""The operators' admin: pages render, tokens are shown once, and record edits go through the services."""

import hashlib
import json
import re
from datetime import timedelta
from html import unescape
from html.parser import HTMLParser

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from reversion.models import Version

from core import services
from core.models import Collection, Record, RecordTombstone, Service, ServiceToken
from core.principals import Actor
from schemas import services as schema_services
from tests.actors import TEST_ACTOR
from tests.core.records_support import history_entries

TOKEN_RE = re.compile(r"nuc_[A-Za-z0-9_-]{20,}")
ACTOR = Actor(label="service:owner")


@pytest.fixture
def root(django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.com", "pw")


@pytest.fixture
def admin(client, root):
    """Django's test client, signed in to the admin as a superuser."""
    client.force_login(root)
    return client


@pytest.fixture
def record(items) -> Record:
    return services.record_create(collection=items, key="a", data={"n": 1}, actor=ACTOR)


def url(name: str, *args) -> str:
    return reverse(f"admin:core_{name}", args=args)


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def history(record_id) -> list[dict]:
    return history_entries(record_id, limit=100)


def versions_of(record_id) -> list[Version]:
    return list(Version.objects.filter(object_id=str(record_id)).order_by("pk"))


def record_form(**fields) -> dict:
    """The POST body of the record change form: data is the JSON text of the textarea."""
    form = {"_save": "Save", **fields}
    if "data" in form and not isinstance(form["data"], str):
        form["data"] = json.dumps(form["data"])
    return form


class _FormValues(HTMLParser):
    """What a browser would submit from the page's main form, before the user changes anything."""

    def __init__(self):
        super().__init__()
        self.values: dict[str, list[str]] = {}
        self._textarea = self._select = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        name = attrs.get("name")
        if tag == "input" and name and attrs.get("type") not in ("submit", "button", "file"):
            if attrs.get("type") in ("checkbox", "radio"):
                if "checked" in attrs:
                    self.values.setdefault(name, []).append(attrs.get("value") or "on")
                return
            self.values.setdefault(name, []).append(attrs.get("value") or "")
        elif tag == "textarea" and name:
            self._textarea = name
            self.values[name] = [""]
        elif tag == "select" and name:
            self._select = name
            self.values.setdefault(name, [])
        elif tag == "option" and self._select and "selected" in attrs:
            self.values[self._select].append(attrs.get("value") or "")

    def handle_endtag(self, tag):
        if tag == "textarea" and self._textarea:
            # Browsers drop the newline that Django puts right after <textarea>.
            self.values[self._textarea][0] = self.values[self._textarea][0].removeprefix("\n")
            self._textarea = None
        elif tag == "select":
            self._select = None

    def handle_data(self, data):
        if self._textarea:
            self.values[self._textarea][0] += data


def form_values(response) -> dict:
    parser = _FormValues()
    parser.feed(response.content.decode())
    parser.values.pop("csrfmiddlewaretoken", None)
    return {name: values if len(values) != 1 else values[0] for name, values in parser.values.items()}


def submit(admin, page: str, follow: bool = False, **changes):
    """GET an admin form and POST it back as a browser would, with some fields changed."""
    form = form_values(admin.get(page))
    form.update({"_save": "Save", **changes})
    return admin.post(page, form, follow=follow)


# --- pages render --------------------------------------------------------------------------------


def test_the_index_lists_the_core_models(admin):
    response = admin.get(reverse("admin:index"))
    assert response.status_code == 200
    html = response.content.decode()
    for name in ("service", "servicetoken", "collection", "record"):
        assert url(f"{name}_changelist") in html


@pytest.mark.parametrize("model", ["service", "servicetoken", "collection", "record"])
def test_changelists_render(admin, record, model):
    response = admin.get(url(f"{model}_changelist"))
    assert response.status_code == 200
    html = response.content.decode()
    assert re.search(r"<title>Select [a-z ]+ to change \| Nucleus admin</title>", html)
    assert '<div id="site-name"><a href="/admin/">Nucleus</a></div>' in html


def test_change_forms_render(admin, owner, record, items):
    token = ServiceToken.objects.filter(service=owner.service).first()
    pages = [
        url("service_change", owner.service.pk),
        url("servicetoken_change", token.pk),
        url("collection_change", items.pk),
        url("record_change", record.pk),
        url("service_add"),
        url("servicetoken_add"),
        url("collection_add"),
        url("record_add"),
    ]
    for page in pages:
        response = admin.get(page)
        assert response.status_code == 200, page


def test_the_record_changelist_filters_by_collection(admin, record, items):
    response = admin.get(url("record_changelist"), {"collection__id__exact": items.pk})
    assert response.status_code == 200
    assert url("record_change", record.pk) in response.content.decode()


def test_a_token_page_never_shows_the_token(admin, owner):
    token = ServiceToken.objects.get(service=owner.service)
    for page in (url("servicetoken_change", token.pk), url("servicetoken_changelist")):
        html = admin.get(page).content.decode()
        assert owner.token not in html
        assert token.token_hash not in html
        assert token.prefix in html


# --- services and tokens -------------------------------------------------------------------------


def assert_shown_once(admin, response, service: Service, later_page: str) -> ServiceToken:
    """The plain token is in the messages of this response only; returns the token it stands for."""
    assert response.status_code == 200
    shown = [TOKEN_RE.findall(message) for message in messages_of(response)]
    shown = [token for tokens in shown for token in tokens]
    assert len(shown) == 1, shown
    plain = shown[0]
    assert response.content.decode().count(plain) == 1

    stored = ServiceToken.objects.get(token_hash=hashlib.sha256(plain.encode()).hexdigest())
    assert stored.service == service
    assert stored.prefix == plain[:12]
    later = admin.get(later_page).content.decode()
    assert plain not in later
    assert plain not in admin.get(url("servicetoken_change", stored.pk)).content.decode()
    return stored


def test_adding_a_token_shows_it_once(admin, owner):
    before = set(ServiceToken.objects.values_list("pk", flat=True))
    response = admin.post(
        url("servicetoken_add"),
        {
            "service": owner.service.pk,
            "label": "deploy",
            "expires_at_0": "",
            "expires_at_1": "",
            "_save": "Save",
        },
        follow=True,
    )
    token = assert_shown_once(admin, response, owner.service, url("servicetoken_changelist"))
    assert set(ServiceToken.objects.values_list("pk", flat=True)) - before == {token.pk}
    assert token.label == "deploy"
    assert token.expires_at is None
    assert token.revoked_at is None


def test_a_token_added_in_the_admin_authenticates(admin, owner):
    response = admin.post(
        url("servicetoken_add"),
        {"service": owner.service.pk, "label": "", "expires_at_0": "", "expires_at_1": "", "_save": "Save"},
        follow=True,
    )
    (plain,) = TOKEN_RE.findall(" ".join(messages_of(response)))
    assert Client().get(reverse("collection-list"), HTTP_AUTHORIZATION=f"Bearer {plain}").status_code == 200


def test_adding_a_token_with_an_expiry_stores_it(admin, owner):
    response = admin.post(
        url("servicetoken_add"),
        {
            "service": owner.service.pk,
            "label": "short",
            "expires_at_0": "2999-01-31",
            "expires_at_1": "12:00:00",
            "_save": "Save",
        },
        follow=True,
    )
    token = assert_shown_once(admin, response, owner.service, url("servicetoken_changelist"))
    assert token.expires_at is not None
    assert token.expires_at.year == 2999


def test_adding_a_token_that_has_already_expired_is_refused(admin, owner):
    count = ServiceToken.objects.count()
    response = admin.post(
        url("servicetoken_add"),
        {
            "service": owner.service.pk,
            "label": "late",
            "expires_at_0": "2000-01-31",
            "expires_at_1": "12:00:00",
            "_save": "Save",
        },
        follow=True,
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors() == ["expires_at must be in the future."]
    assert not TOKEN_RE.search(response.content.decode())
    assert ServiceToken.objects.count() == count


def test_the_issue_token_action_shows_the_token_once(admin, owner):
    before = set(ServiceToken.objects.values_list("pk", flat=True))
    response = admin.post(
        url("service_changelist"),
        {"action": "issue_token", "_selected_action": [owner.service.pk], "select_across": "0", "index": "0"},
        follow=True,
    )
    token = assert_shown_once(admin, response, owner.service, url("service_changelist"))
    assert set(ServiceToken.objects.values_list("pk", flat=True)) - before == {token.pk}


def test_the_revoke_action_revokes_the_selected_tokens(admin, owner, reader):
    owner_token = ServiceToken.objects.get(service=owner.service)
    reader_token = ServiceToken.objects.get(service=reader.service)
    response = admin.post(
        url("servicetoken_changelist"),
        {"action": "revoke", "_selected_action": [owner_token.pk], "select_across": "0", "index": "0"},
        follow=True,
    )
    assert response.status_code == 200
    owner_token.refresh_from_db()
    reader_token.refresh_from_db()
    assert owner_token.revoked_at is not None
    assert reader_token.revoked_at is None
    assert owner.get(reverse("collection-list")).status_code == 401
    assert reader.get(reverse("collection-list")).status_code == 200


def test_adding_a_service_in_the_admin_issues_a_token_shown_once(admin):
    response = submit(admin, url("service_add"), follow=True, name="taxon", description="classifier")
    service = Service.objects.get(name="taxon")
    assert service.description == "classifier"
    assert service.is_active
    token = assert_shown_once(admin, response, service, url("service_change", service.pk))
    assert ServiceToken.objects.get(service=service) == token
    assert token.label == "issued in admin"


def test_adding_a_service_without_a_token(admin):
    form = form_values(admin.get(url("service_add")))
    assert form.pop("issue_token") == "on"  # ticked by default; an unticked checkbox is not submitted
    response = admin.post(url("service_add"), {**form, "name": "quiet", "_save": "Save"}, follow=True)
    assert response.status_code == 200
    assert not TOKEN_RE.findall(response.content.decode())
    assert Service.objects.filter(name="quiet").exists()
    assert not ServiceToken.objects.filter(service__name="quiet").exists()


def test_deactivating_a_service_in_the_admin_locks_it_out(admin, owner):
    page = url("service_change", owner.service.pk)
    form = form_values(admin.get(page))
    del form["is_active"]  # an unticked checkbox is not submitted
    form.update(description="gone", _save="Save")
    response = admin.post(page, form)
    assert response.status_code == 302
    owner.service.refresh_from_db()
    assert owner.service.is_active is False
    assert owner.service.description == "gone"
    assert owner.get(reverse("collection-list")).status_code == 401


# --- records -------------------------------------------------------------------------------------


def test_adding_a_record_in_the_admin_writes_history(admin, items):
    response = admin.post(url("record_add"), record_form(collection=items.pk, key="b", data={"m": 1}))
    assert response.status_code == 302
    stored = Record.objects.get(collection=items, key="b")
    assert stored.data == {"m": 1}
    assert stored.version == 1
    assert stored.created_by == stored.updated_by == "operator:root"
    (entry,) = history(stored.pk)
    assert (entry["version"], entry["changed_by"], entry["comment"]) == (1, "operator:root", "created")


def test_adding_a_record_with_a_taken_key_is_a_form_error(admin, record, items):
    response = admin.post(url("record_add"), record_form(collection=items.pk, key="a", data={"m": 1}))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert Record.objects.get(pk=record.pk).data == {"n": 1}
    assert len(versions_of(record.pk)) == 1


def test_adding_a_record_whose_data_is_not_an_object_is_refused_on_the_form(admin, items):
    response = admin.post(url("record_add"), record_form(collection=items.pk, key="b", data=[1, 2]))
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.errors["data"] == ["data must be a JSON object.", "/data: must be an object."]
    assert not form.non_field_errors()
    assert form["key"].value() == "b"
    assert not Record.objects.exists()
    assert not Version.objects.get_for_model(Record).exists()
    assert not LogEntry.objects.exists()


def test_editing_a_record_into_a_non_object_is_refused_on_the_form(admin, record):
    response = admin.post(url("record_change", record.pk), record_form(data="[1]"))
    assert response.status_code == 200
    assert "data must be a JSON object." in response.context["adminform"].form.errors["data"]
    stored = Record.objects.get(pk=record.pk)
    assert (stored.data, stored.version) == ({"n": 1}, 1)
    assert len(versions_of(record.pk)) == 1


def test_editing_a_record_writes_a_new_version_by_the_operator(admin, record):
    response = submit(admin, url("record_change", record.pk), data=json.dumps({"n": 2}))
    assert response.status_code == 302
    stored = Record.objects.get(pk=record.pk)
    assert stored.data == {"n": 2}
    assert stored.version == 2
    assert stored.updated_by == "operator:root"
    assert stored.created_by == "service:owner"

    newest, oldest = history(record.pk)
    assert (newest["version"], newest["data"], newest["changed_by"]) == (2, {"n": 2}, "operator:root")
    assert newest["deleted"] is False
    assert (oldest["version"], oldest["changed_by"]) == (1, "service:owner")
    assert len(versions_of(record.pk)) == 2

    api = admin.get(reverse("record-history", args=["items", "a"]))
    assert api.status_code == 200
    assert [(e["version"], e["changed_by"]) for e in api.json()["results"]] == [
        (2, "operator:root"),
        (1, "service:owner"),
    ]


def test_the_record_change_form_shows_data_as_indented_json(admin, record):
    services.record_put(collection=record.collection, key="a", data={"n": 1, "tags": ["x"]}, actor=ACTOR)
    textarea = form_values(admin.get(url("record_change", record.pk)))["data"]
    assert textarea == json.dumps(Record.objects.get(pk=record.pk).data, indent=2)  # jsonb orders keys
    assert '\n  "tags": [\n    "x"\n  ]' in textarea


def test_an_edit_that_breaks_the_schema_is_refused_on_the_data_field(admin, record, items):
    schema = schema_services.schema_create(name="item", owner=items.owner)
    definition = {"type": "object", "properties": {"n": {"type": "integer", "maximum": 5}}, "required": ["n"]}
    schema_services.schema_version_register(schema=schema, definition=definition, actor=ACTOR)
    services.collection_update(collection=items, schema=schema, actor=ACTOR)

    response = submit(admin, url("record_change", record.pk), data='{"n": 9}')

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.errors["data"] == [
        "The data does not match the schema of 'items' (version 1): "
        "/data/n: 9 is greater than the maximum of 5"
    ]
    assert not form.non_field_errors()
    html = response.content.decode()
    assert "9 is greater than the maximum of 5" in html
    assert "&quot;n&quot;: 9" in html  # what the operator typed is kept, to be corrected
    stored = Record.objects.get(pk=record.pk)
    assert (stored.data, stored.version) == ({"n": 1}, 1)
    assert len(versions_of(record.pk)) == 1


def test_the_record_changelist_filters_by_update_time(admin, record, items):
    old = services.record_create(collection=items, key="old", data={}, actor=ACTOR)
    Record.objects.filter(pk=old.pk).update(updated_at=old.updated_at - timedelta(days=400))

    page = admin.get(url("record_changelist")).content.decode()
    assert "By updated at" in page and "Past 7 days" in page
    since = (timezone.now() - timedelta(days=7)).isoformat()
    recent = admin.get(url("record_changelist"), {"updated_at__gte": since}).content.decode()

    assert url("record_change", record.pk) in recent
    assert url("record_change", old.pk) not in recent


def test_the_record_changelist_searches_by_key(admin, record, items):
    other = services.record_create(collection=items, key="order-17", data={}, actor=ACTOR)
    html = admin.get(url("record_changelist"), {"q": "der-1"}).content.decode()
    assert url("record_change", other.pk) in html
    assert url("record_change", record.pk) not in html


def test_the_record_change_form_cannot_move_a_record(admin, record, owner):
    other = services.collection_create(actor=TEST_ACTOR, name="other", owner=owner.service)
    response = admin.post(
        url("record_change", record.pk), record_form(collection=other.pk, key="moved", data={"n": 2})
    )
    assert response.status_code == 302
    stored = Record.objects.get(pk=record.pk)
    assert (stored.collection_id, stored.key, stored.data) == (record.collection_id, "a", {"n": 2})
    assert not Record.objects.filter(key="moved").exists()


def test_editing_a_record_with_invalid_data_is_refused(admin, record):
    response = admin.post(url("record_change", record.pk), record_form(data="not json"))
    assert response.status_code == 200
    assert "data" in response.context["adminform"].form.errors
    stored = Record.objects.get(pk=record.pk)
    assert (stored.data, stored.version) == ({"n": 1}, 1)
    assert len(versions_of(record.pk)) == 1


def test_deleting_a_record_in_the_admin_keeps_its_history(admin, record):
    response = admin.post(url("record_delete", record.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not Record.objects.filter(pk=record.pk).exists()
    assert RecordTombstone.objects.get(pk=record.pk).version == 2

    newest, oldest = history(record.pk)
    assert (newest["version"], newest["deleted"], newest["changed_by"]) == (2, True, "operator:root")
    assert newest["data"] == {"n": 1}
    assert oldest["deleted"] is False

    api = admin.get(reverse("record-history", args=["items", "a"]))
    assert api.status_code == 200
    assert api.json()["results"][0]["deleted"] is True


def test_the_delete_selected_action_deletes_through_the_service(admin, record, items):
    other = services.record_create(collection=items, key="b", data={}, actor=ACTOR)
    response = admin.post(
        url("record_changelist"),
        {"action": "delete_selected", "_selected_action": [str(record.pk), str(other.pk)], "post": "yes"},
    )
    assert response.status_code == 302
    assert not Record.objects.exists()
    assert [history(pk)[0]["deleted"] for pk in (record.pk, other.pk)] == [True, True]


def test_the_history_page_lists_every_version(admin, record, items):
    services.record_put(collection=items, key="a", data={"n": 2}, actor=ACTOR)
    response = admin.get(url("record_history", record.pk))
    assert response.status_code == 200
    html = response.content.decode()
    for version in versions_of(record.pk):
        assert url("record_revision", record.pk, version.pk) in html
    rows = re.findall(r'<tr id="version-(\d+)">(.*?)</tr>', html, re.S)
    text = [(number, " ".join(unescape(re.sub(r"<[^>]+>", "", row)).split())) for number, row in rows]
    assert [number for number, _ in text] == ["2", "1"]
    assert text[0][1].startswith("version 2 (current)")
    assert text[0][1].endswith('service:owner replaced {"n": 2}')
    assert text[1][1].endswith('service:owner created {"n": 1}')


def test_the_revision_page_shows_the_old_version_without_changing_anything(admin, record, items):
    services.record_put(collection=items, key="a", data={"n": 2}, actor=ACTOR)
    first = versions_of(record.pk)[0]
    response = admin.get(url("record_revision", record.pk, first.pk))
    assert response.status_code == 200
    assert response.context["adminform"].form.initial["data"] == {"n": 1}
    stored = Record.objects.get(pk=record.pk)
    assert (stored.data, stored.version) == ({"n": 2}, 2)
    assert len(versions_of(record.pk)) == 2


def test_posting_the_revision_form_reverts_through_the_service(admin, record, items):
    services.record_put(collection=items, key="a", data={"n": 2}, actor=ACTOR)
    first = versions_of(record.pk)[0]
    response = admin.post(url("record_revision", record.pk, first.pk), record_form(data={"n": 1}))
    assert response.status_code == 302
    stored = Record.objects.get(pk=record.pk)
    assert (stored.data, stored.version, stored.updated_by) == ({"n": 1}, 3, "operator:root")

    newest = history(record.pk)[0]
    assert (newest["version"], newest["data"]) == (3, {"n": 1})
    assert newest["changed_by"] == "operator:root"
    assert newest["comment"] == "reverted to version 1"
    assert len(versions_of(record.pk)) == 3


def test_the_recover_list_shows_a_deleted_record(admin, record, items):
    services.record_delete(collection=items, key="a", actor=ACTOR)
    deletion = versions_of(record.pk)[-1]
    response = admin.get(url("record_recoverlist"))
    assert response.status_code == 200
    assert url("record_recover", deletion.pk) in response.content.decode()

    assert admin.get(url("record_recover", deletion.pk)).status_code == 200
    assert not Record.objects.filter(pk=record.pk).exists()


def test_posting_the_recover_form_recreates_the_record_with_its_next_version(admin, record, items):
    services.record_put(collection=items, key="a", data={"n": 2}, actor=ACTOR)
    services.record_delete(collection=items, key="a", actor=ACTOR)
    deletion = versions_of(record.pk)[-1]
    response = admin.post(
        url("record_recover", deletion.pk), record_form(collection=items.pk, key="a", data={})
    )
    assert response.status_code == 302
    stored = Record.objects.get(pk=record.pk)
    assert (stored.key, stored.data, stored.version) == ("a", {"n": 2}, 4)
    assert stored.updated_by == "operator:root"

    newest = history(record.pk)[0]
    assert (newest["version"], newest["deleted"], newest["changed_by"]) == (4, False, "operator:root")
    assert [entry["version"] for entry in history(record.pk)] == [4, 3, 2, 1]
    assert (
        admin.get(url("record_recoverlist")).content.decode().count(url("record_recover", deletion.pk)) == 0
    )


def test_a_stale_record_form_does_not_overwrite_a_newer_version(admin, record, items):
    page = url("record_change", record.pk)
    form = form_values(admin.get(page))
    assert form["loaded_version"] == "1"
    services.record_put(collection=items, key="a", data={"n": "api"}, actor=ACTOR)

    form.update(data=json.dumps({"n": "admin"}), _save="Save")
    response = admin.post(page, form)
    assert response.status_code == 200
    assert "is at version 2" in " ".join(response.context["adminform"].form.non_field_errors())
    stored = Record.objects.get(pk=record.pk)
    assert (stored.data, stored.version) == ({"n": "api"}, 2)
    assert len(versions_of(record.pk)) == 2


def test_records_of_a_collection_that_requires_if_match_are_edited_deleted_and_recovered(
    admin, record, items
):
    services.collection_update(actor=TEST_ACTOR, collection=items, require_if_match=True)
    assert submit(admin, url("record_change", record.pk), data=json.dumps({"n": 2})).status_code == 302
    assert Record.objects.get(pk=record.pk).version == 2

    first = versions_of(record.pk)[0]
    assert admin.post(url("record_revision", record.pk, first.pk), record_form(data={})).status_code == 302
    assert Record.objects.get(pk=record.pk).data == {"n": 1}

    assert admin.post(url("record_delete", record.pk), {"post": "yes"}).status_code == 302
    assert not Record.objects.filter(pk=record.pk).exists()
    deletion = versions_of(record.pk)[-1]
    assert admin.post(url("record_recover", deletion.pk), record_form(data={})).status_code == 302
    assert (Record.objects.get(pk=record.pk).version, history(record.pk)[0]["comment"]) == (
        5,
        "reverted to version 4",
    )


def test_reverting_needs_the_change_permission(client, django_user_model, record, items):
    services.record_put(collection=items, key="a", data={"n": 2}, actor=ACTOR)
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_record"))
    client.force_login(viewer)
    first = versions_of(record.pk)[0]
    assert client.post(url("record_revision", record.pk, first.pk), record_form(data={})).status_code == 403
    services.record_delete(collection=items, key="a", actor=ACTOR)
    deletion = versions_of(record.pk)[-1]
    assert client.post(url("record_recover", deletion.pk), record_form(data={})).status_code == 403
    assert not Record.objects.exists()
    assert len(versions_of(record.pk)) == 3


def test_reverting_to_an_unknown_version_is_a_404(admin, record, items):
    other = services.record_create(collection=items, key="b", data={}, actor=ACTOR)
    version_of_b = versions_of(other.pk)[0]
    assert admin.post(url("record_revision", record.pk, version_of_b.pk), record_form()).status_code == 404
    assert admin.post(url("record_revision", record.pk, 999999), record_form()).status_code == 404
    assert admin.post(url("record_recover", 999999), record_form()).status_code == 404
    assert [r.version for r in Record.objects.order_by("key")] == [1, 1]


# --- collections ---------------------------------------------------------------------------------


def test_deleting_a_collection_in_the_admin_takes_its_records(admin, record, items):
    response = admin.post(url("collection_delete", items.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not Collection.objects.filter(pk=items.pk).exists()
    assert not Record.objects.exists()


def test_adding_a_collection_in_the_admin_with_a_grant(admin, owner, reader):
    response = submit(
        admin,
        url("collection_add"),
        name="things",
        kind="records",
        owner=str(owner.service.pk),
        description="made by hand",
        **{"grants-TOTAL_FORMS": "1", "grants-0-service": str(reader.service.pk), "grants-0-access": "read"},
    )
    assert response.status_code == 302
    collection = Collection.objects.get(name="things")
    assert (collection.owner, collection.description) == (owner.service, "made by hand")
    assert list(collection.grants.values_list("service__name", "access")) == [("reader", "read")]
    assert reader.get(reverse("collection-detail", args=["things"])).status_code == 200


def test_changing_a_collection_and_its_grants_in_the_admin(admin, items, outsider):
    page = url("collection_change", items.pk)
    form = form_values(admin.get(page))
    rows = {form[f"grants-{n}-service"]: n for n in range(int(form["grants-INITIAL_FORMS"]))}
    reader_row = rows[str(Service.objects.get(name="reader").pk)]
    writer_row = rows[str(Service.objects.get(name="writer").pk)]
    form.update(
        {
            "description": "edited",
            "require_if_match": "on",
            f"grants-{reader_row}-access": "write",
            f"grants-{writer_row}-DELETE": "on",
            "grants-TOTAL_FORMS": "3",
            "grants-2-service": str(outsider.service.pk),
            "grants-2-access": "read",
            "_save": "Save",
        }
    )
    response = admin.post(page, form)
    assert response.status_code == 302
    items.refresh_from_db()
    assert (items.description, items.require_if_match) == ("edited", True)
    assert sorted(items.grants.values_list("service__name", "access")) == [
        ("outsider", "read"),
        ("reader", "write"),
    ]
    message = LogEntry.objects.get(object_id=str(items.pk)).get_change_message()
    assert "Added grant" in message
    assert "Changed Access for grant" in message
    assert "Deleted grant" in message


def test_granting_the_owner_in_the_admin_is_refused(admin, items, owner):
    response = submit(
        admin,
        url("collection_change", items.pk),
        description="edited",
        **{"grants-TOTAL_FORMS": "3", "grants-2-service": str(owner.service.pk), "grants-2-access": "read"},
    )
    assert response.status_code == 200
    assert "already has full access" in response.content.decode()
    items.refresh_from_db()
    assert items.description == ""
    assert sorted(items.grants.values_list("service__name", "access")) == [
        ("reader", "read"),
        ("writer", "write"),
    ]
