"""The benchmark's PostgreSQL database: creating it, mirroring Nucleus' tables for the raw baselines."""

import re
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

RAW_SCHEMA = "bench_raw"
# Nucleus tables the raw baselines mirror, and the name of each copy in RAW_SCHEMA.
MIRRORED = {"core_collection": "collection", "core_record": "record", "core_event": "event"}


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def check_database_name(name: str) -> None:
    """Refuse the names other work uses: the benchmark drops and re-creates its database."""
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", name):
        raise SystemExit(f"--database {name!r}: use lower-case letters, digits and '_'.")
    if name in {"nucleus", "postgres", "template0", "template1"} or name.startswith("test_"):
        raise SystemExit(f"--database {name!r} belongs to something else; the benchmark would drop it.")


def recreate_database(server_url: str, name: str) -> None:
    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def create_raw_tables(url: str) -> dict[str, list[str]]:
    """Copies of Nucleus' collection, record and event tables in RAW_SCHEMA, with every index,
    check and default (LIKE ... INCLUDING ALL) and the same foreign keys, pointed at the copies.

    Built from the migrated database itself, so the raw tables keep up with Nucleus' migrations.
    Returns each copy's index definitions, for the report.
    """
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(RAW_SCHEMA)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(RAW_SCHEMA)))
        for source, copy in MIRRORED.items():
            conn.execute(
                sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(
                    sql.Identifier(RAW_SCHEMA, copy), sql.Identifier("public", source)
                )
            )
        foreign_keys = conn.execute(
            """
            SELECT c.conrelid::regclass::text, c.conname, c.confrelid::regclass::text,
                   pg_get_constraintdef(c.oid)
            FROM pg_constraint c
            WHERE c.contype = 'f' AND c.conrelid::regclass::text = ANY(%s)
            """,
            [list(MIRRORED)],
        ).fetchall()
        for table, name, referenced, definition in foreign_keys:
            if referenced not in MIRRORED:
                continue  # owner, schema: the raw work never writes those columns' rows
            definition = definition.replace(
                f"REFERENCES {referenced}(", f"REFERENCES {RAW_SCHEMA}.{MIRRORED[referenced]}("
            )
            conn.execute(
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(
                    sql.Identifier(RAW_SCHEMA, MIRRORED[table]), sql.Identifier(name)
                )
                + sql.SQL(definition)  # pg_get_constraintdef's own output
            )
        indexes = conn.execute(
            "SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = %s ORDER BY tablename, indexname",
            [RAW_SCHEMA],
        ).fetchall()
    report: dict[str, list[str]] = {}
    for table, definition in indexes:
        report.setdefault(table, []).append(definition)
    return report


def copy_collections(url: str, names: list[str]) -> None:
    """The raw copies of these Nucleus collections (same ids), which raw records and events refer to."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("INSERT INTO {} SELECT * FROM public.core_collection WHERE name = ANY(%s)").format(
                sql.Identifier(RAW_SCHEMA, "collection")
            ),
            [names],
        )


def drop_raw_tables(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(RAW_SCHEMA)))


def execute(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def collection_ids(url: str, names: list[str]) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT name, id FROM core_collection WHERE name = ANY(%s)", [names]).fetchall()
    return dict(rows)


def server_facts(url: str) -> dict:
    with psycopg.connect(url) as conn:
        facts = {"version": conn.execute("SHOW server_version").fetchone()[0]}
        for setting in ("shared_buffers", "work_mem", "synchronous_commit", "max_connections", "jit"):
            facts[setting] = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(setting))).fetchone()[0]
    return facts


def table_sizes(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """
            SELECT n.nspname || '.' || c.relname, pg_total_relation_size(c.oid)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = 'r' AND n.nspname IN ('public', %s)
            ORDER BY 2 DESC LIMIT 12
            """,
            [RAW_SCHEMA],
        ).fetchall()
        total = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    return {"database": total, **dict(rows)}
