"""The benchmark's data: deterministic record keys, record data matching SCHEMA, and events."""

import uuid

LABELS = (
    "invoice", "receipt", "memo", "contract", "offer", "order", "claim", "report", "letter", "note",
    "statement", "policy", "form", "ticket", "quote", "payslip", "manual", "minutes", "permit", "notice",
)  # fmt: skip
PHRASES = (
    "scanned at the front desk and classified automatically",
    "received by e-mail from an external sender",
    "uploaded through the customer portal",
    "imported from the legacy archive in a nightly batch",
    "forwarded by the workflow engine for review",
    "captured by the mobile app with a low-resolution camera",
    "re-classified after an operator corrected the label",
)
# Records fall into GROUPS groups: a `where` on a group matches about 1 in GROUPS records.
GROUPS = 1000

# Every record's data is valid under this schema (draft 2020-12, closed, with bounds and an enum), so
# Nucleus validates realistic documents, not trivially small ones.
SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["seq", "label", "score", "group", "source", "reviewed", "tags"],
    "properties": {
        "seq": {"type": "integer", "minimum": 0},
        "label": {"enum": list(LABELS)},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "group": {"type": "string", "pattern": "^g[0-9]{4}$"},
        "source": {"type": "string", "maxLength": 100},
        "reviewed": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 8, "uniqueItems": True},
        "note": {"type": "string", "maxLength": 500},
        "pages": {"type": "integer", "minimum": 1, "maximum": 10000},
    },
}


def record_id(collection_id: int, key: str) -> uuid.UUID:
    """The primary key Nucleus gives a record (core.models.record_pk), so raw rows look the same."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"nucleus:{collection_id}:{key}")


def record_key(i: int) -> str:
    return f"item-{i:08d}"


def record_data(i: int, revision: int = 0) -> dict:
    """About 260 bytes of JSON; `revision` changes score and review state, as an update would."""
    mixed = (i * 2654435761 + revision * 40503) & 0xFFFFFFFF
    return {
        "seq": i,
        "label": LABELS[i % len(LABELS)],
        "score": round((mixed % 1000) / 1000, 3),
        "group": group_name(i),
        "source": f"scanner-{i % 7}.site-{i % 13}",
        "reviewed": (i + revision) % 3 == 0,
        "tags": sorted({LABELS[(i * 3) % len(LABELS)], LABELS[(i * 7 + 1) % len(LABELS)], "batch"}),
        "note": f"Document {i} {PHRASES[mixed % len(PHRASES)]}; revision {revision}.",
        "pages": 1 + mixed % 40,
    }


def group_name(i: int) -> str:
    return f"g{i % GROUPS:04d}"


def event_id(stream: str, producer: int, n: int) -> str:
    """A producer-chosen event id: stable, so a rerun of a phase sends the same ids."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench:{stream}:{producer}:{n}"))


def event_data(producer: int, n: int) -> dict:
    i = producer * 1_000_000 + n
    return {
        "key": record_key(i),
        "label": LABELS[i % len(LABELS)],
        "score": round((i * 7919 % 1000) / 1000, 3),
    }
