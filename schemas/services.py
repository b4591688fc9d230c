"""Every write of the schema registry, and the checks that guard stored data when schemas change."""

import hashlib
import json

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from core.errors import Conflict, ContentTooLarge, ValidationFailed
from core.models import Collection, Service
from core.principals import Actor
from core.validation import (
    check_collection_name,  # the same naming rule as collections
    find_problem,
)
from schemas.compat import SchemaProblem, canonical, check_definition, compatibility_errors
from schemas.models import Compatibility, Schema, SchemaVersion
from schemas.selectors import invalid_records
from schemas.validation import compiled_validator, stored_validator


def fingerprint_of(definition) -> str:
    return hashlib.sha256(canonical(definition).encode("utf-8")).hexdigest()


def _check_name(name) -> None:
    check_collection_name(name, what="schema")


@transaction.atomic
def schema_create(
    *, name: str, owner: Service, compatibility: str = Compatibility.BACKWARD, description: str = ""
) -> Schema:
    """Create an empty schema (versions are registered separately); a taken name is a 409."""
    _check_name(name)
    if compatibility not in Compatibility.values:
        raise ValidationFailed(
            "compatibility must be one of " + ", ".join(Compatibility.values) + ".",
            errors=[{"path": "/compatibility", "message": "is not a compatibility mode."}],
        )
    try:
        with transaction.atomic():
            return Schema.objects.create(
                name=name, owner=owner, compatibility=compatibility, description=description
            )
    except IntegrityError:
        raise Conflict(f"A schema named {name!r} already exists.", code="schema_exists")


@transaction.atomic
def schema_update(
    *, schema: Schema, compatibility: str | None = None, description: str | None = None
) -> Schema:
    """Change the compatibility mode (applies to later registrations) or the description."""
    changed = []
    if compatibility is not None and compatibility != schema.compatibility:
        if compatibility not in Compatibility.values:
            raise ValidationFailed(
                "compatibility must be one of " + ", ".join(Compatibility.values) + ".",
                errors=[{"path": "/compatibility", "message": "is not a compatibility mode."}],
            )
        schema.compatibility = compatibility
        changed.append("compatibility")
    if description is not None and description != schema.description:
        schema.description = description
        changed.append("description")
    if changed:
        schema.save(update_fields=[*changed, "updated_at"])
    return schema


def _check_size(definition) -> None:
    """Refuse (413) a definition larger than NUCLEUS_SCHEMA_MAX_BYTES as compact UTF-8 JSON."""
    limit = settings.NUCLEUS_SCHEMA_MAX_BYTES
    try:
        text = json.dumps(definition, ensure_ascii=False, separators=(",", ":"))
    except RecursionError:
        return  # find_problem names the depth instead
    # surrogatepass: a lone surrogate is refused by find_problem, with its path, after this
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limit:
        message = f"is {size} bytes as compact JSON; the limit is {limit}."
        raise ContentTooLarge(
            f"/definition {message}",
            code="schema_too_large",
            errors=[{"path": "/definition", "message": message}],
        )


def _checked_definition(definition) -> str:
    # Cost first: nothing else is done with a definition over the size limit.
    _check_size(definition)
    # What the database cannot store (NUL, unpaired surrogates) or the checks cannot recurse into.
    storable = find_problem(definition, "/definition", 1, settings.NUCLEUS_MAX_JSON_DEPTH)
    if storable:
        path, message = storable
        raise ValidationFailed(
            f"{path} {message}", code="invalid_schema", errors=[{"path": path, "message": message}]
        )
    fingerprint = fingerprint_of(definition)
    try:
        check_definition(definition)
        compiled_validator(fingerprint, definition)  # what validates records must compile (and is kept)
    except SchemaProblem as exc:
        raise ValidationFailed(
            exc.message,
            code="invalid_schema",
            errors=[{"path": "/definition" + exc.path, "message": exc.message}],
        )
    except RecursionError:
        message = "is nested too deeply to be checked."
        raise ValidationFailed(
            f"/definition {message}",
            code="invalid_schema",
            errors=[{"path": "/definition", "message": message}],
        )
    return fingerprint


def following_collections(schema: Schema) -> QuerySet[Collection]:
    """The collections that follow the schema's latest version: its owner's own, unpinned ones.

    Only these are checked when a version is registered. Collections of other services are pinned, and
    their owners move the pin; so registering never reads, locks or depends on another service's data.
    """
    return Collection.objects.filter(schema=schema, schema_version__isnull=True, owner_id=schema.owner_id)


def _evaluate(schema: Schema, definition, fingerprint: str, *, lock: bool) -> tuple[list, dict]:
    previous = list(schema.versions.order_by("version").values_list("definition", flat=True))
    incompatibilities = [
        e.as_dict()
        for e in compatibility_errors(
            schema.compatibility, definition, previous, budget=settings.NUCLEUS_SCHEMA_COMPAT_BUDGET
        )
    ]
    collections = following_collections(schema).order_by("name")
    if lock:
        collections = collections.select_for_update()
    report = invalid_records(
        collections=list(collections), validator=compiled_validator(fingerprint, definition)
    )
    return incompatibilities, report


@transaction.atomic
def schema_version_register(*, schema: Schema, definition, actor: Actor) -> tuple[SchemaVersion, bool]:
    """Register definition as the next version; returns (version, created).

    An identical definition returns the existing version. Refuses (409) a definition incompatible under
    the schema's mode, or one that records of a collection following the latest version (the schema
    owner's own) would not satisfy. Locks the schema and those collections until commit.
    """
    fingerprint = _checked_definition(definition)
    # NO KEY UPDATE: registrations and following bindings queue here, while collections of other
    # services that reference the schema (their foreign-key checks lock it FOR KEY SHARE) never wait.
    schema = Schema.objects.select_for_update(no_key=True).get(pk=schema.pk)
    existing = schema.versions.filter(fingerprint=fingerprint).first()
    if existing is not None:
        return existing, False
    incompatibilities, report = _evaluate(schema, definition, fingerprint, lock=True)
    if incompatibilities:
        raise Conflict(
            f"The definition is not {schema.compatibility} compatible with {schema.name!r}: "
            f"{incompatibilities[0]['message']}",
            code="incompatible_schema",
            errors=incompatibilities,
        )
    if report:
        total = sum(entry["count"] for entry in report.values())
        raise Conflict(
            f"{total} stored records would not be valid under this definition; nothing was registered.",
            code="invalid_records",
            count=total,
            invalid_records=report,
        )
    last = schema.versions.order_by("-version").values_list("version", flat=True).first() or 0
    version = SchemaVersion.objects.create(
        schema=schema,
        version=last + 1,
        definition=definition,
        fingerprint=fingerprint,
        created_at=timezone.now(),
        created_by=actor.label,
    )
    return version, True


def schema_compatibility_check(*, schema: Schema, definition) -> dict:
    """The dry run of registration: what registering definition would say, writing nothing.

    Like registration, it reads only the collections that follow the latest version (the owner's own).
    """
    fingerprint = _checked_definition(definition)
    incompatibilities, report = _evaluate(schema, definition, fingerprint, lock=False)
    return {
        "compatible": not incompatibilities and not report,
        "errors": incompatibilities,
        "invalid_records": {name: entry["count"] for name, entry in report.items()},
    }


def collection_schema_check(*, collection: Collection, schema: Schema, version: int | None) -> SchemaVersion:
    """Refuse (409) binding collection to schema at version (None: following the latest) if a stored
    record fails that version; returns the version checked.

    Following the latest locks the schema row until commit, as registration does, so that no version
    can be registered between this check and the commit of the binding (the latest is read after the
    lock). A pinned version is immutable, so checking against it takes no lock of the schema: another
    service binding or moving its pin never holds up the schema owner's registrations.
    """
    if version is None:
        Schema.objects.select_for_update(no_key=True).get(pk=schema.pk)
        checked = schema.versions.order_by("-version").first()
    else:
        checked = schema.versions.get(version=version)
    report = invalid_records(
        collections=[collection], validator=stored_validator(checked.fingerprint, checked.definition)
    )
    if report:
        entry = report[collection.name]
        raise Conflict(
            f"{entry['count']} records of {collection.name!r} are not valid under {schema.name!r} "
            f"version {checked.version}; nothing was changed.",
            code="invalid_records",
            count=entry["count"],
            sample_keys=entry["sample_keys"],
        )
    return checked
