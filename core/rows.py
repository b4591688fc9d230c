"""Model instances from hand-written SQL, for the few lookups every API request makes.

Compiling an ORM query (select_related, ordering, annotations) costs more Python time than the
database needs to answer it: for the token, collection and record lookups of a point read it was
most of the request. These lookups are written once as SQL built from the models' metadata, and
their rows become ordinary model instances through Model.from_db, as the ORM itself does.
"""

import functools
from collections.abc import Sequence

from django.db import connections, router
from django.db.models import Model


@functools.cache
def columns(model: type[Model], alias: str) -> str:
    """Every concrete column of model, qualified by the table alias, in field order."""
    quote = connections[router.db_for_read(model)].ops.quote_name
    return ", ".join(f"{alias}.{quote(field.column)}" for field in model._meta.concrete_fields)


def table(model: type[Model]) -> str:
    return connections[router.db_for_read(model)].ops.quote_name(model._meta.db_table)


@functools.cache
def _converters(model: type[Model], using: str) -> tuple:
    """Per concrete field: the backend's and the field's from-database converters (JSON, booleans …)."""
    connection = connections[using]
    found = []
    for field in model._meta.concrete_fields:
        column = field.get_col(model._meta.db_table)
        found.append(
            (column, tuple(connection.ops.get_db_converters(column) + field.get_db_converters(connection)))
        )
    return tuple(found)


def _instance(model: type[Model], values: Sequence, using: str) -> Model:
    connection = connections[using]
    converted = []
    for value, (column, converters) in zip(values, _converters(model, using), strict=True):
        for converter in converters:
            value = converter(value, column, connection)
        converted.append(value)
    return model.from_db(using, None, converted)


def fetch_one(sql: str, params: Sequence, models: Sequence[type[Model] | None], using: str) -> list | None:
    """Run sql and split its one row (or None) into instances of models, in column order.

    A None in models stands for one plain trailing column. A model whose primary key column is
    NULL (the row of a LEFT JOIN that found nothing) comes back as None.
    """
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    result, start = [], 0
    for model in models:
        if model is None:
            result.append(row[start])
            start += 1
            continue
        fields = model._meta.concrete_fields
        values = row[start : start + len(fields)]
        start += len(fields)
        result.append(None if values[0] is None else _instance(model, values, using))
    return result
