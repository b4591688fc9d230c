"""Set-based inserts for the hot write paths: records, their history versions, stream events.

On PostgreSQL a batch is one INSERT … SELECT FROM jsonb_to_recordset(%s) with the whole batch as a
single JSON parameter. Django's bulk_create sends one array per column instead, and psycopg's
client-side binding quotes every array element in Python with a regular expression: for a batch of
1000 records that was most of the request's time. Here the batch is serialized once by the json
module (C) and unpacked by the server. Other databases (SQLite) use bulk_create.
"""

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import connections, router
from django.db.models import Field, Lookup, Model

BATCH = 1000


def _default(value):
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value) -> str:
    """Compact JSON, UUIDs and datetimes as strings: the form every set-based statement here takes."""
    return json.dumps(value, default=_default, ensure_ascii=False, separators=(",", ":"))


def insert(
    model: type[Model],
    rows: Sequence[dict[str, Any]],
    *,
    conflict: Sequence[str] = (),
    update: Sequence[str] = (),
    using: str | None = None,
) -> None:
    """Insert rows (dicts of field attname to value; all alike) in one statement per 1000 rows.

    With conflict and update (field names): on a conflict over the conflict fields, update the
    named fields instead (an upsert). Any other constraint violation raises IntegrityError, as
    bulk_create does.
    """
    if not rows:
        return
    db = using or router.db_for_write(model)
    connection = connections[db]
    if connection.vendor != "postgresql":
        model.objects.using(db).bulk_create(
            [model(**row) for row in rows],
            batch_size=BATCH,
            update_conflicts=bool(update),
            unique_fields=list(conflict) or None,
            update_fields=list(update) or None,
        )
        return
    sql = insert_sql(model, list(rows[0]), conflict=conflict, update=update, connection=connection)
    with connection.cursor() as cursor:
        for start in range(0, len(rows), BATCH):
            cursor.execute(sql, [dumps(rows[start : start + BATCH])])


def insert_sql(
    model: type[Model],
    attnames: Sequence[str],
    *,
    conflict: Sequence[str] = (),
    update: Sequence[str] = (),
    connection,
) -> str:
    """INSERT INTO model's table the rows of the JSON array that is the statement's first parameter.

    PostgreSQL only. Every name and type comes from the model's metadata; the rows are the parameter.
    """
    meta = model._meta
    by_attname = {field.attname: field for field in meta.concrete_fields}
    fields = [by_attname[attname] for attname in attnames]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    picked = ", ".join(quote(field.attname) for field in fields)
    shape = ", ".join(f"{quote(field.attname)} {field.db_type(connection)}" for field in fields)
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) "  # noqa: S608
        f"SELECT {picked} FROM jsonb_to_recordset(%s::jsonb) AS r({shape})"
    )
    if update:
        targets = ", ".join(quote(meta.get_field(name).column) for name in conflict)
        changes = ", ".join(
            f"{quote(column)} = EXCLUDED.{quote(column)}"
            for column in (meta.get_field(name).column for name in update)
        )
        sql += f" ON CONFLICT ({targets}) DO UPDATE SET {changes}"
    return sql


@Field.register_lookup
class OneOf(Lookup):
    """`field__one_of=values`: membership in a list sent as one JSON parameter, however long.

    `field__in` sends one parameter per value, which psycopg's client-side binding quotes one by one;
    for the 1000 keys of a bulk write that cost more than the query. On PostgreSQL this is
    `= ANY(ARRAY(SELECT …))`, which the planner turns into index probes; elsewhere `IN (json_each)`.
    """

    lookup_name = "one_of"
    prepare_rhs = False

    def _values(self, connection) -> str:
        field = self.lhs.output_field
        return dumps([field.get_db_prep_value(value, connection) for value in self.rhs])

    def as_sql(self, compiler, connection):
        lhs, params = self.process_lhs(compiler, connection)
        return f"{lhs} IN (SELECT value FROM json_each(%s))", [*params, self._values(connection)]  # noqa: S608

    def as_postgresql(self, compiler, connection):
        lhs, params = self.process_lhs(compiler, connection)
        cast = self.lhs.output_field.db_type(connection)
        return (
            f"{lhs} = ANY(ARRAY(SELECT jsonb_array_elements_text(%s::jsonb)::{cast}))",
            [*params, self._values(connection)],
        )
