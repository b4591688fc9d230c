"""The Nucleus side: the same work as bench.raw, through the HTTP API of a running server.

Each function is one client with one kept-alive connection (see bench.api). Request bodies are
encoded before the timed loop; responses are read and parsed as JSON inside it, as a client would.
"""

import json
import random
import time
from collections.abc import Callable

from bench.api import API, Api, collection_path, next_path, record_path, records_list_path
from bench.clients import ClientResult
from bench.workload import event_data, event_id, record_data, record_key


def _encode(body) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _timed(result: ClientResult, operation: Callable[[], int]) -> None:
    began = time.perf_counter()
    result.items += operation()
    result.latencies.append(time.perf_counter() - began)
    result.ops += 1


def _bulk_body(first: int, end: int) -> bytes:
    records = [{"key": record_key(i), "data": record_data(i)} for i in range(first, end)]
    return _encode({"mode": "insert", "records": records})


def bulk_insert(index: int, args: dict, start) -> ClientResult:
    """POST /records/bulk/ in insert mode, `batch` records a request, one request after the other.

    With `encode_in_loop`, bodies are made as they are sent (seeding a large collection: memory)."""
    collection, first, count, batch = args["collection"], args["first"], args["count"], args["batch"]
    path = f"{collection_path(collection)}/records/bulk/"
    ranges = [(begin, min(begin + batch, first + count)) for begin in range(first, first + count, batch)]
    bodies = None if args.get("encode_in_loop") else [_bulk_body(*bounds) for bounds in ranges]
    api = Api(args["base_url"], args["token"])
    result = ClientResult()

    def post(number):
        body = bodies[number] if bodies else _bulk_body(*ranges[number])
        _, answer, _ = api.post(path, body, expect=(201,))
        return len(answer["results"])

    result.started = start()
    for number in range(len(ranges)):
        _timed(result, lambda number=number: post(number))
    result.finished = time.perf_counter()
    api.close()
    return result


def single_creates(index: int, args: dict, start) -> ClientResult:
    """POST /records/ one record a request."""
    path = f"{collection_path(args['collection'])}/records/"
    bodies = [_encode({"key": record_key(i), "data": record_data(i)}) for i in args["numbers"]]
    api = Api(args["base_url"], args["token"])
    result = ClientResult()

    def create(body):
        api.post(path, body, expect=(201,))
        return 1

    result.started = start()
    for body in bodies:
        _timed(result, lambda body=body: create(body))
    result.finished = time.perf_counter()
    api.close()
    return result


def single_updates(index: int, args: dict, start) -> ClientResult:
    """PUT /records/{key}/ with If-Match: the version the client holds (1), replacing the data."""
    collection = args["collection"]
    requests = [
        (record_path(collection, record_key(i)), _encode({"data": record_data(i, revision=1)}))
        for i in args["numbers"]
    ]
    api = Api(args["base_url"], args["token"])
    result = ClientResult()

    def update(path, body):
        _, answer, _ = api.put(path, body, headers={"If-Match": '"1"'}, expect=(200,))
        if answer["version"] != 2:
            raise RuntimeError(f"PUT {path} answered version {answer['version']}")
        return 1

    result.started = start()
    for path, body in requests:
        _timed(result, lambda path=path, body=body: update(path, body))
    result.finished = time.perf_counter()
    api.close()
    return result


def _get_each(paths: list[str], args: dict, start) -> ClientResult:
    """GET every path in turn on one kept-alive connection, each expected to answer 200."""
    api = Api(args["base_url"], args["token"])
    result = ClientResult()

    def read(path):
        api.get(path, expect=(200,))
        return 1

    result.started = start()
    for path in paths:
        _timed(result, lambda path=path: read(path))
    result.finished = time.perf_counter()
    api.close()
    return result


def point_reads(index: int, args: dict, start) -> ClientResult:
    """GET /records/{key}/ for random keys of the collection."""
    rng = random.Random(f"point:{index}:{args.get('seed', 0)}")
    paths = [
        record_path(args["collection"], record_key(rng.randrange(args["population"])))
        for _ in range(args["count"])
    ]
    return _get_each(paths, args, start)


def probes(index: int, args: dict, start) -> ClientResult:
    """GET /healthz: the whole HTTP stack (gunicorn, middleware, logging, metrics) and no database.

    Not a figure of Nucleus' work: the ceiling that any request served by this stack stays under.
    """
    return _get_each(["/healthz"] * args["count"], args, start)


def where_reads(index: int, args: dict, start) -> ClientResult:
    """GET /records/?where=<JSON>&limit=: the first page of the records containing it."""
    paths = [
        records_list_path(
            args["collection"], where=json.dumps(where, separators=(",", ":")), limit=args["limit"]
        )
        for where in args["filters"]
    ]
    api = Api(args["base_url"], args["token"])
    result = ClientResult()

    def read(path):
        _, answer, _ = api.get(path, expect=(200,))
        return len(answer["results"])

    result.started = start()
    for path in paths:
        _timed(result, lambda path=path: read(path))
    result.finished = time.perf_counter()
    api.close()
    return result


def list_pages(index: int, args: dict, start) -> ClientResult:
    """The whole collection page by page, following `next` until it is null."""
    api = Api(args["base_url"], args["token"])
    result = ClientResult()
    path = [records_list_path(args["collection"], limit=args["limit"])]

    def page():
        _, answer, _ = api.get(path[0], expect=(200,))
        path[0] = next_path(answer["next"])
        return len(answer["results"])

    result.started = start()
    while path[0]:
        _timed(result, page)
    result.finished = time.perf_counter()
    api.close()
    return result


def appends(index: int, args: dict, start) -> ClientResult:
    """POST /events/ with `batch` events a request, each with a producer-chosen id."""
    path = f"{collection_path(args['stream'])}/events/"
    producer = args.get("producer", index)
    bodies = []
    n = args.get("first", 0)  # the producer's next event number: rounds continue where the last stopped
    for _ in range(args["batches"]):
        events = []
        for _ in range(args["batch"]):
            events.append(
                {
                    "id": event_id("nucleus", producer, n),
                    "type": "item.classified",
                    "data": event_data(producer, n),
                }
            )
            n += 1
        bodies.append(_encode({"events": events}))
    api = Api(args["base_url"], args["token"])
    result = ClientResult()

    def append(body):
        _, answer, _ = api.post(path, body, expect=(201,))
        return answer["last_offset"] - answer["first_offset"] + 1

    result.started = start()
    for body in bodies:
        _timed(result, lambda body=body: append(body))
    result.finished = time.perf_counter()
    api.close()
    return result


def read_stream(index: int, args: dict, start) -> ClientResult:
    """GET /events/?after=&limit= from the start to the last offset, following next_after."""
    base = f"{collection_path(args['stream'])}/events/"
    api = Api(args["base_url"], args["token"])
    result = ClientResult()
    after = [0]

    def page():
        _, answer, _ = api.get(f"{base}?after={after[0]}&limit={args['limit']}", expect=(200,))
        after[0] = answer["next_after"]
        return len(answer["results"])

    result.started = start()
    while True:
        _timed(result, page)
        if after[0] >= args["last_offset"]:
            break
    result.finished = time.perf_counter()
    api.close()
    return result


def setup(base_url: str, token: str, *, schema: dict, records: list[str], streams: list[str]) -> None:
    """The schema (one version) and the collections the benchmark uses, bound to it."""
    api = Api(base_url, token)
    try:
        api.post(f"{API}/schemas/", {"name": "bench.item", "description": "benchmark records"})
        api.post(f"{API}/schemas/bench.item/versions/", {"definition": schema})
        for name in records:
            api.post(f"{API}/collections/", {"name": name, "kind": "records", "schema": "bench.item"})
        for name in streams:
            api.post(f"{API}/collections/", {"name": name, "kind": "stream"})
    finally:
        api.close()
