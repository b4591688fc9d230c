"""One benchmark run: set up, measure each figure raw and through Nucleus, report.

The order is the same in every run: writes first (bulk ingest, single writes, event appends, on raw
and Nucleus tables of the same size), then the records collection is grown to its full size with
reads measured at each checkpoint, then the reads at full size, the listing under memory sampling,
and last backups and restores with the server stopped.

Every paired figure is measured in rounds that alternate raw and Nucleus (raw first, then Nucleus
first, ...), and each side's figure is its total work over its total time: on a shared machine a
change of load during a phase then weighs on both sides alike.
"""

import argparse
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from bench import backups, db, nucleus, raw, report
from bench.clients import ClientFunction, Measurement, run_clients, run_inline
from bench.report import Figure
from bench.server import REPO_ROOT, MemorySampler, Server, ServerConfig, manage, nucleus_env
from bench.workload import GROUPS, SCHEMA, group_name

ITEMS, WRITES, EVENTS = "bench.items", "bench.writes", "bench.events"
BATCH = 1000  # bulk batch and page size
EVENT_BATCH = 100
WHERE_LIMIT = 100
CHECKPOINTS = (10_000, 100_000, 1_000_000)
MIB = 1024 * 1024


@dataclass
class Sizes:
    records: int  # the records collection that reads and the listing run on
    bulk: int  # records ingested by the bulk ingest figure (the first of `records`)
    point_reads: int  # over all clients, at each checkpoint
    where_queries: int  # per query shape, over all clients
    single_writes: int  # creates (and then updates) per client
    single_appends: int  # single-event appends per client
    batch_appends: int  # appends of EVENT_BATCH events, one client
    rounds: int  # alternations of raw and Nucleus per figure
    backup_reps: int


PRESETS = {
    # The CI smoke run: every figure, small, in about a minute.
    "small": Sizes(
        records=10_000,
        bulk=10_000,
        point_reads=800,
        where_queries=100,
        single_writes=25,
        single_appends=25,
        batch_appends=20,
        rounds=2,
        backup_reps=2,
    ),
    # The sizes of issue 8 and NUCLEUS.md §7.
    "full": Sizes(
        records=1_000_000,
        bulk=100_000,
        point_reads=8_000,
        where_queries=1_000,
        single_writes=400,
        single_appends=400,
        batch_appends=400,
        rounds=4,
        backup_reps=3,
    ),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Nucleus against raw PostgreSQL, in one run (docs/performance.md).",
    )
    parser.add_argument("--full", action="store_true", help="the full sizes (1M records); default: small")
    for size in fields(Sizes):
        parser.add_argument(
            f"--{size.name.replace('_', '-')}", type=int, help=f"override the preset's {size.name}"
        )
    parser.add_argument("--clients", type=int, default=4, help="clients of the concurrent figures (4)")
    parser.add_argument("--seed-clients", type=int, default=2, help="parallel clients growing the collection")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2, as the image)")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (4, as the image)")
    parser.add_argument(
        "--server-url",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="the PostgreSQL server, as a URL of any database on it (env BENCH_POSTGRES_URL)",
    )
    parser.add_argument(
        "--database",
        default=os.environ.get("BENCH_DATABASE", "nucleus_bench"),
        help="the benchmark's own database, dropped and re-created (env BENCH_DATABASE)",
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results", help="results directory")
    parser.add_argument(
        "--work", type=Path, default=REPO_ROOT / "var" / "bench", help="server log, backups, scratch"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database and backups afterwards")
    parser.add_argument("--skip-backups", action="store_true", help="leave out dbbackup/dbrestore")
    args = parser.parse_args(argv)
    preset = "full" if args.full else "small"
    overrides = {size.name: getattr(args, size.name) for size in fields(Sizes) if getattr(args, size.name)}
    args.preset = preset + (
        " with " + ", ".join(f"{k}={v}" for k, v in overrides.items()) if overrides else ""
    )
    args.sizes = Sizes(**{**PRESETS[preset].__dict__, **overrides})
    if "bulk" not in overrides:
        args.sizes.bulk = min(args.sizes.bulk, args.sizes.records)
    if args.sizes.bulk > args.sizes.records:
        parser.error("--bulk cannot exceed --records")
    if args.sizes.records % BATCH or args.sizes.bulk % BATCH:
        parser.error(f"--records and --bulk must be multiples of {BATCH}")
    db.check_database_name(args.database)
    return args


def checkpoints(sizes: Sizes) -> list[int]:
    """Collection sizes at which point reads and the listing are measured: 10k, 100k, 1M and the end."""
    return sorted({size for size in CHECKPOINTS if size <= sizes.records} | {sizes.records})


def split(total: int, parts: int) -> list[int]:
    """total as `parts` near-equal shares."""
    return [total // parts + (1 if part < total % parts else 0) for part in range(parts)]


def boundaries(start: int, stop: int, parts: int, unit: int = 1) -> list[tuple[int, int]]:
    """[start, stop) cut into `parts` consecutive ranges of whole units (empty ones left out)."""
    ranges, first = [], start
    for share in split((stop - start) // unit, parts):
        ranges.append((first, first + share * unit))
        first += share * unit
    ranges[-1] = (ranges[-1][0], stop)
    return [(begin, end) for begin, end in ranges if end > begin]


def add(first: Measurement | None, second: Measurement) -> Measurement:
    if first is None:
        return second
    return Measurement(
        clients=max(first.clients, second.clients),
        ops=first.ops + second.ops,
        items=first.items + second.items,
        seconds=first.seconds + second.seconds,
        latencies=first.latencies + second.latencies,
    )


# One side of a paired figure for one round: the client function and its arguments (a list: one
# process per client; a dict: one client in this process).
Work = tuple[ClientFunction, list[dict] | dict]


def run_work(work: Work) -> Measurement:
    function, args = work
    return run_clients(function, args) if isinstance(args, list) else run_inline(function, args)


class Run:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.sizes: Sizes = args.sizes
        self.url = db.with_database(args.server_url, args.database)
        self.work: Path = args.work
        self.backup_dir = self.work / "backups"
        self.log_path = self.work / "gunicorn.log"
        self.config = ServerConfig(workers=args.workers, threads=args.threads)
        self.figures: list[Figure] = []
        self.measurements: dict[str, dict] = {}
        self.scale: list[dict] = []
        self.phases: dict[str, float] = {}
        self.server: Server | None = None
        self.token = ""
        self.ids: dict[str, int] = {}
        self.began = time.perf_counter()

    # - plumbing

    def say(self, message: str) -> None:
        print(f"[bench {time.perf_counter() - self.began:6.1f}s] {message}", flush=True)

    def nucleus_args(self, **extra) -> dict:
        return {"base_url": self.server.base_url, "token": self.token, **extra}

    def raw_args(self, **extra) -> dict:
        return {"url": self.url, **extra}

    def checkpoint(self) -> None:
        """Write dirty buffers out before timed writes, so no write phase pays for an earlier one's."""
        db.execute(self.url, "CHECKPOINT")

    def phase(self, name: str, began: float) -> None:
        self.phases[name] = round(time.perf_counter() - began, 1)

    def paired(
        self,
        name: str,
        rounds: int,
        raw_work: Callable[[int], Work],
        nucleus_work: Callable[[int], Work],
        *,
        writes: bool = False,
        between: Callable[[int], None] | None = None,
    ) -> tuple[Measurement, Measurement]:
        """Run both sides round by round, alternating which goes first; totals of each side.

        `between(round)` runs after each round (untimed): the bulk ingest measures reads there.
        """
        totals: dict[str, Measurement | None] = {"raw": None, "nucleus": None}
        for number in range(rounds):
            sides = [("raw", raw_work), ("nucleus", nucleus_work)]
            for side, work in sides if number % 2 == 0 else reversed(sides):
                if writes:
                    self.checkpoint()
                totals[side] = add(totals[side], run_work(work(number)))
            if between:
                between(number)
        for side, total in totals.items():
            self.measurements[f"{name}.{side}"] = total.summary()
        return totals["raw"], totals["nucleus"]

    # - the run

    def run(self) -> dict:
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        load_before = os.getloadavg()
        if self.work.exists():
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True)
        try:
            self.prepare()
            try:
                self.measure_bulk_ingest()
                self.measure_single_writes()
                self.measure_events()
                self.grow()
                self.measure_reads_at_full_size()
                self.measure_listing_memory()
            finally:
                self.server.stop()
            if not self.args.skip_backups:
                self.measure_backups()
            sizes_on_disk = db.table_sizes(self.url)
            postgresql = db.server_facts(self.url)
        finally:
            if not self.args.keep:
                db.drop_database(self.args.server_url, self.args.database)
                shutil.rmtree(self.backup_dir, ignore_errors=True)
        return {
            "started_at": started_at,
            "duration_s": round(time.perf_counter() - self.began, 1),
            "revision": revision(),
            "parameters": {
                "preset": self.args.preset,
                **self.sizes.__dict__,
                "clients": self.args.clients,
                "seed_clients": self.args.seed_clients,
                "checkpoints": checkpoints(self.sizes),
                "bulk_batch": BATCH,
                "page_size": BATCH,
                "event_batch": EVENT_BATCH,
                "where_limit": WHERE_LIMIT,
            },
            "server": self.config.describe(),
            "machine": machine(load_before),
            "postgresql": postgresql,
            "database_bytes": sizes_on_disk,
            "raw_tables": self.raw_indexes,
            "figures": [figure.as_dict() for figure in self.figures],
            "scale": self.scale,
            "measurements": self.measurements,
            "phases_s": self.phases,
        }

    def prepare(self) -> None:
        began = time.perf_counter()
        self.say(f"database {self.args.database}: create and migrate")
        db.recreate_database(self.args.server_url, self.args.database)
        self.env = nucleus_env(self.url, self.backup_dir)
        manage("migrate", "--noinput", env=self.env)
        self.token = manage("create_service", "bench", env=self.env).stdout.strip().splitlines()[-1]
        self.server = Server(self.config, self.env, self.log_path)
        self.server.start()
        self.say(
            f"gunicorn on {self.server.base_url}: "
            f"{self.config.workers} workers x {self.config.threads} threads"
        )
        nucleus.setup(
            self.server.base_url, self.token, schema=SCHEMA, records=[ITEMS, WRITES], streams=[EVENTS]
        )
        self.ids = db.collection_ids(self.url, [ITEMS, WRITES, EVENTS])
        self.raw_indexes = db.create_raw_tables(self.url)
        db.copy_collections(self.url, [ITEMS, WRITES, EVENTS])
        self.phase("prepare", began)

    # - writes

    def measure_bulk_ingest(self) -> None:
        sizes = self.sizes
        began = time.perf_counter()
        self.say(f"bulk ingest: {sizes.bulk:,} records in batches of {BATCH}, raw and POST /records/bulk/")
        # Rounds, cut so that the collection passes each checkpoint at the end of a round.
        cuts = sorted(
            {end for _, end in boundaries(0, sizes.bulk, sizes.rounds, BATCH)}
            | {size for size in checkpoints(sizes) if size < sizes.bulk}
        )
        ranges = list(zip([0, *cuts[:-1]], cuts, strict=True))

        def work(function, **extra):
            return lambda number: (
                function,
                dict(
                    extra, first=ranges[number][0], count=ranges[number][1] - ranges[number][0], batch=BATCH
                ),
            )

        def reads_at_checkpoint(number: int) -> None:
            reached = ranges[number][1]
            if reached in checkpoints(sizes) and reached < sizes.records:
                self.measure_reads(reached)

        raw_bulk, bulk = self.paired(
            "bulk_ingest",
            len(ranges),
            work(raw.bulk_insert, **self.raw_args(collection_id=self.ids[ITEMS])),
            work(nucleus.bulk_insert, **self.nucleus_args(collection=ITEMS)),
            writes=True,
            between=reads_at_checkpoint,
        )
        self.figures.append(
            Figure(
                "bulk_ingest",
                f"bulk ingest ({sizes.bulk:,} records, batches of {BATCH})",
                "rows/s",
                bulk.items_per_s,
                raw_bulk.items_per_s,
                note="schema-validated, with history; raw: executemany INSERT, one transaction per batch",
                details={"p50_ms_per_batch": bulk.latency_ms(0.5), "raw_p50_ms": raw_bulk.latency_ms(0.5)},
            )
        )
        self.phase("bulk_ingest", began)

    def measure_single_writes(self) -> None:
        sizes, clients = self.sizes, self.args.clients
        began = time.perf_counter()
        self.say(
            f"single-record writes: {clients} clients x {sizes.single_writes} creates, then as many "
            "If-Match updates"
        )

        def numbers(client: int, number: int) -> list[int]:
            base = client * sizes.single_writes
            begin, end = boundaries(base, base + sizes.single_writes, sizes.rounds)[number]
            return list(range(begin, end))

        rounds = len(boundaries(0, sizes.single_writes, sizes.rounds))
        results = {}
        for kind, raw_function, nucleus_function in (
            ("create", raw.single_creates, nucleus.single_creates),
            ("update", raw.single_updates, nucleus.single_updates),
        ):
            results[kind] = self.paired(
                f"single_{kind}",
                rounds,
                lambda number, function=raw_function: (
                    function,
                    [
                        self.raw_args(collection_id=self.ids[WRITES], numbers=numbers(client, number))
                        for client in range(clients)
                    ],
                ),
                lambda number, function=nucleus_function: (
                    function,
                    [
                        self.nucleus_args(collection=WRITES, numbers=numbers(client, number))
                        for client in range(clients)
                    ],
                ),
                writes=True,
            )
        for kind, title, note in (
            (
                "create",
                f"single-record creates ({clients} clients)",
                "POST /records/ vs BEGIN; INSERT; COMMIT",
            ),
            (
                "update",
                f"If-Match updates ({clients} clients)",
                'PUT /records/{key}/ with If-Match: "1" vs BEGIN; UPDATE ... WHERE version = 1; COMMIT',
            ),
        ):
            raw_result, result = results[kind]
            self.figures.append(
                Figure(
                    f"single_{kind}",
                    title,
                    "ops/s",
                    result.ops_per_s,
                    raw_result.ops_per_s,
                    note=note,
                    details={"p50_ms": result.latency_ms(0.5), "raw_p50_ms": raw_result.latency_ms(0.5)},
                )
            )
        self.phase("single_writes", began)

    def measure_events(self) -> None:
        sizes, clients = self.sizes, self.args.clients
        began = time.perf_counter()
        self.say(
            f"event appends: {clients} clients x {sizes.single_appends} single events, "
            f"then {sizes.batch_appends} batches of {EVENT_BATCH}; then the stream read"
        )

        def appends(function, count: int, batch: int, concurrent: bool, **extra):
            def work(number: int) -> Work:
                begin, end = boundaries(0, count, sizes.rounds)[number]
                args = dict(extra, batch=batch, batches=end - begin, first=begin * batch)
                if concurrent:
                    return function, [args] * clients
                return function, dict(args, producer=clients)

            return work

        rounds = min(sizes.rounds, sizes.single_appends)
        raw_single, single = self.paired(
            "append_single",
            rounds,
            appends(raw.appends, sizes.single_appends, 1, True, **self.raw_args(stream_id=self.ids[EVENTS])),
            appends(nucleus.appends, sizes.single_appends, 1, True, **self.nucleus_args(stream=EVENTS)),
            writes=True,
        )
        rounds = min(sizes.rounds, sizes.batch_appends)
        raw_batch, batch = self.paired(
            "append_batch",
            rounds,
            appends(
                raw.appends,
                sizes.batch_appends,
                EVENT_BATCH,
                False,
                **self.raw_args(stream_id=self.ids[EVENTS]),
            ),
            appends(
                nucleus.appends, sizes.batch_appends, EVENT_BATCH, False, **self.nucleus_args(stream=EVENTS)
            ),
            writes=True,
        )
        last_offset = clients * sizes.single_appends + EVENT_BATCH * sizes.batch_appends
        db.execute(self.url, "ANALYZE core_event")
        raw_read, read = self.paired(
            "stream_read",
            sizes.rounds,
            lambda number: (
                raw.read_stream,
                self.raw_args(stream_id=self.ids[EVENTS], limit=BATCH, last_offset=last_offset),
            ),
            lambda number: (
                nucleus.read_stream,
                self.nucleus_args(stream=EVENTS, limit=BATCH, last_offset=last_offset),
            ),
        )
        self.figures += [
            Figure(
                "append_single",
                f"single-event appends ({clients} clients, one stream)",
                "events/s",
                single.items_per_s,
                raw_single.items_per_s,
                note="raw: BEGIN; SELECT head FOR UPDATE; INSERT; UPDATE head; COMMIT",
                details={"p50_ms": single.latency_ms(0.5), "raw_p50_ms": raw_single.latency_ms(0.5)},
            ),
            Figure(
                "append_batch",
                f"event appends in batches of {EVENT_BATCH} (1 client)",
                "events/s",
                batch.items_per_s,
                raw_batch.items_per_s,
                note="raw: as single appends, the INSERT an executemany of the batch",
                details={"p50_ms": batch.latency_ms(0.5), "raw_p50_ms": raw_batch.latency_ms(0.5)},
            ),
            Figure(
                "stream_read",
                f"stream read start to end ({last_offset:,} events, pages of {BATCH})",
                "events/s",
                read.items_per_s,
                raw_read.items_per_s,
                note='GET /events/?after=&limit= vs keyset SELECT ... WHERE "offset" > %s '
                'ORDER BY "offset" LIMIT; reads Nucleus\' stream on both sides',
                details={"ms_per_page": read.latency_ms(0.5), "raw_ms_per_page": raw_read.latency_ms(0.5)},
            ),
        ]
        self.phase("events", began)

    # - growing the collection, and reads

    def grow(self) -> None:
        """Bulk-insert the rest of the collection through the API, measuring reads at each checkpoint."""
        sizes = self.sizes
        began = time.perf_counter()
        seeded, seeding = sizes.bulk, None
        for stop in checkpoints(sizes):
            if stop <= seeded:
                continue
            self.say(f"growing {ITEMS} to {stop:,} records ({self.args.seed_clients} parallel bulk clients)")
            part = run_clients(
                nucleus.bulk_insert,
                [
                    self.nucleus_args(
                        collection=ITEMS, first=begin, count=end - begin, batch=BATCH, encode_in_loop=True
                    )
                    for begin, end in boundaries(seeded, stop, self.args.seed_clients, BATCH)
                ],
            )
            seeding = add(seeding, part)
            seeded = stop
            if stop < sizes.records:
                self.measure_reads(stop)
        if seeding is not None:
            self.measurements["seeding.nucleus"] = seeding.summary()
            self.figures.append(
                Figure(
                    "seeding",
                    f"growing the collection to {sizes.records:,} ({self.args.seed_clients} bulk clients)",
                    "rows/s",
                    seeding.items_per_s,
                    note="POST /records/bulk/ from parallel clients into the growing collection; "
                    "no raw counterpart",
                )
            )
        self.phase("grow", began)

    def measure_reads_at_full_size(self) -> None:
        began = time.perf_counter()
        self.measure_reads(self.sizes.records, listing=False)
        point = self.scale[-1]["point_read"]
        self.figures.append(
            Figure(
                "point_read",
                f"point reads by key ({self.sizes.records:,} records, {self.args.clients} clients)",
                "ops/s",
                point["nucleus"],
                point["raw"],
                note="GET /records/{key}/ vs SELECT ... WHERE collection_id = %s AND key = %s",
                details={"p50_ms": point["nucleus_p50_ms"], "raw_p50_ms": point["raw_p50_ms"]},
            )
        )
        self.measure_http_floor()
        self.measure_where()
        self.phase("reads", began)

    def measure_http_floor(self) -> None:
        """GET /healthz from the same clients, beside the raw point reads: the most any request can do."""
        records, clients = self.sizes.records, self.args.clients
        raw_point, probe = self.paired(
            "http_floor",
            self.sizes.rounds,
            self.point_read_work(raw.point_reads, records, **self.raw_args(collection_id=self.ids[ITEMS])),
            self.point_read_work(nucleus.probes, records, **self.nucleus_args(collection=ITEMS)),
        )
        self.figures.append(
            Figure(
                "http_floor",
                f"GET /healthz, no database ({clients} clients; ratio to raw point reads)",
                "ops/s",
                probe.ops_per_s,
                raw_point.ops_per_s,
                note="the HTTP stack alone (gunicorn, middleware, JSON logging, metrics): a ceiling "
                "for every API figure, not a figure of Nucleus' own work",
                details={"p50_ms": probe.latency_ms(0.5)},
            )
        )

    def point_read_work(self, function, records: int, **extra) -> Callable[[int], Work]:
        """Round `number`'s share of the point reads, split over the clients, for function."""

        def at(number: int) -> Work:
            shares = split(split(self.sizes.point_reads, self.sizes.rounds)[number], self.args.clients)
            return function, [dict(extra, population=records, count=count, seed=number) for count in shares]

        return at

    def measure_reads(self, records: int, *, listing: bool = True) -> None:
        """Point reads (and the whole listing) at this collection size, raw and through Nucleus."""
        self.say(f"reads at {records:,} records: point reads" + (" and the whole listing" if listing else ""))
        db.execute(self.url, "ANALYZE core_record")
        raw_point, point = self.paired(
            f"point_read@{records}",
            self.sizes.rounds,
            self.point_read_work(raw.point_reads, records, **self.raw_args(collection_id=self.ids[ITEMS])),
            self.point_read_work(nucleus.point_reads, records, **self.nucleus_args(collection=ITEMS)),
        )
        entry = {
            "records": records,
            "point_read": {
                "nucleus": point.ops_per_s,
                "raw": raw_point.ops_per_s,
                "nucleus_p50_ms": point.latency_ms(0.5),
                "raw_p50_ms": raw_point.latency_ms(0.5),
                "nucleus_p99_ms": point.latency_ms(0.99),
                "raw_p99_ms": raw_point.latency_ms(0.99),
            },
        }
        self.scale.append(entry)
        if listing:
            entry["list"] = self.measure_listing(records)

    def measure_listing(self, records: int, sampler: MemorySampler | None = None) -> dict:
        """The whole collection page by page, raw then through Nucleus (under `sampler`, if given)."""
        raw_list = run_inline(raw.list_pages, self.raw_args(collection_id=self.ids[ITEMS], limit=BATCH))
        if sampler:
            with sampler:
                listed = run_inline(nucleus.list_pages, self.nucleus_args(collection=ITEMS, limit=BATCH))
        else:
            listed = run_inline(nucleus.list_pages, self.nucleus_args(collection=ITEMS, limit=BATCH))
        self.measurements[f"list@{records}.raw"] = raw_list.summary()
        self.measurements[f"list@{records}.nucleus"] = listed.summary()
        if listed.items != records or raw_list.items != records:
            raise RuntimeError(
                f"listing found {listed.items:,} (raw {raw_list.items:,}) of {records:,} records"
            )
        return {
            "nucleus": listed.items_per_s,
            "raw": raw_list.items_per_s,
            "pages": listed.ops,
            "nucleus_ms_per_page": listed.seconds / listed.ops * 1000,
            "raw_ms_per_page": raw_list.seconds / raw_list.ops * 1000,
            "nucleus_p99_ms": listed.latency_ms(0.99),
            "raw_p99_ms": raw_list.latency_ms(0.99),
        }

    def measure_where(self) -> None:
        sizes, clients = self.sizes, self.args.clients
        rng = random.Random(f"where:{sizes.records}")
        shapes = {
            "where_selective": (
                "`where` matching one record",
                [{"seq": rng.randrange(sizes.records)} for _ in range(sizes.where_queries)],
            ),
            "where_group": (
                f"`where` on two fields matching ~1/{GROUPS * 3:,} of the records",
                [
                    {"group": group_name(rng.randrange(GROUPS)), "reviewed": True}
                    for _ in range(sizes.where_queries)
                ],
            ),
        }
        for key, (title, filters) in shapes.items():
            self.say(f"where queries: {title}")
            rounds = [filters[begin:end] for begin, end in boundaries(0, len(filters), sizes.rounds)]

            def work(function, rounds=rounds, **extra):
                return lambda number: (
                    function,
                    [
                        dict(extra, filters=rounds[number][client::clients], limit=WHERE_LIMIT)
                        for client in range(clients)
                    ],
                )

            raw_where, where = self.paired(
                key,
                len(rounds),
                work(raw.where_reads, **self.raw_args(collection_id=self.ids[ITEMS])),
                work(nucleus.where_reads, **self.nucleus_args(collection=ITEMS)),
            )
            if where.items != raw_where.items:
                raise RuntimeError(
                    f"{key}: Nucleus returned {where.items} records, the raw query {raw_where.items}"
                )
            self.figures.append(
                Figure(
                    key,
                    f"{title} ({clients} clients)",
                    "queries/s",
                    where.ops_per_s,
                    raw_where.ops_per_s,
                    note=f"GET /records/?where=&limit={WHERE_LIMIT} vs SELECT ... WHERE data @> %s "
                    "ORDER BY key LIMIT, on the same table and GIN index",
                    details={"rows_returned": where.items, "p50_ms": where.latency_ms(0.5)},
                )
            )

    def measure_listing_memory(self) -> None:
        """The whole collection page by page through fresh workers whose memory is sampled meanwhile."""
        began = time.perf_counter()
        records = self.sizes.records
        self.say(f"listing all {records:,} records under memory sampling (fresh workers, no recycling)")
        self.server.stop()
        self.server = Server(
            ServerConfig(self.config.workers, self.config.threads, max_requests=0), self.env, self.log_path
        )
        self.server.start()
        # Warm every worker up, then take the baseline.
        run_clients(
            nucleus.point_reads,
            [self.nucleus_args(collection=ITEMS, population=records, count=50)] * (self.config.workers * 2),
        )
        sampler = MemorySampler(self.server)
        baseline = sampler.rss_kib()
        listing = self.measure_listing(records, sampler)
        self.scale[-1]["list"] = listing
        hwm = sampler.hwm_kib()
        growth = {
            pid: (max(hwm.get(pid, 0), sampler.peak_rss_kib.get(pid, 0)) - baseline.get(pid, 0)) / 1024
            for pid in baseline
        }
        memory = {
            "workers": len(baseline),
            "baseline_rss_mb": {str(pid): round(kib / 1024, 1) for pid, kib in baseline.items()},
            "peak_rss_mb": {str(pid): round(kib / 1024, 1) for pid, kib in sampler.peak_rss_kib.items()},
            "vm_hwm_mb": {str(pid): round(kib / 1024, 1) for pid, kib in hwm.items()},
            "growth_mb": {str(pid): round(mb, 1) for pid, mb in growth.items()},
            "samples": sampler.samples,
            "largest_rss_mb_over_time": sampler.trace,
            "collection_data_mb": round(self.collection_data_bytes() / MIB, 1),
        }
        self.measurements["list_memory"] = memory
        self.figures += [
            Figure(
                "list",
                f"listing all {records:,} records (pages of {BATCH}, 1 client)",
                "rows/s",
                listing["nucleus"],
                listing["raw"],
                note="following `next` vs keyset SELECT ... WHERE key > %s ORDER BY key LIMIT",
                details={k: v for k, v in listing.items() if k.endswith("_ms_per_page")},
            ),
            Figure(
                "list_memory",
                "peak worker memory growth while listing",
                "MB",
                max(growth.values()) if growth else None,
                higher_is_better=False,
                note=f"RSS after warm-up: {max(memory['baseline_rss_mb'].values())} MB per worker; peak "
                f"(VmHWM): {max(memory['vm_hwm_mb'].values())} MB; the collection's data is "
                f"{memory['collection_data_mb']} MB",
                details=memory,
            ),
        ]
        self.phase("listing_memory", began)

    def collection_data_bytes(self) -> int:
        with psycopg.connect(self.url) as conn:
            return conn.execute(
                "SELECT coalesce(sum(pg_column_size(data)), 0) FROM core_record WHERE collection_id = %s",
                [self.ids[ITEMS]],
            ).fetchone()[0]

    # - backups

    def measure_backups(self) -> None:
        began = time.perf_counter()
        reps = self.sizes.backup_reps
        self.say(f"dbbackup / dbrestore vs pg_dump / pg_restore, {reps} repetitions each (server stopped)")
        db.drop_raw_tables(self.url)
        result = backups.measure(
            url=self.url, env=self.env, backup_dir=self.backup_dir, scratch=self.work / "scratch", reps=reps
        )
        self.measurements["backups"] = result
        startup = result["startup_s"]
        self.figures += [
            Figure(
                "startup",
                "manage.py start-up alone (`manage.py version`)",
                "s",
                startup,
                higher_is_better=False,
                note="included in both dbbackup and dbrestore",
            ),
            Figure(
                "dbbackup",
                f"manage.py dbbackup ({result['dump_bytes'] / MIB:,.0f} MB dump)",
                "s",
                result["dbbackup_s"],
                result["pg_dump_s"],
                higher_is_better=False,
                note="vs pg_dump -Fc; without start-up: "
                f"{ratio_text(result['dbbackup_s'] - startup, result['pg_dump_s'])}",
            ),
            Figure(
                "dbrestore",
                "manage.py dbrestore (no safety backup)",
                "s",
                result["dbrestore_s"],
                result["pg_restore_s"],
                higher_is_better=False,
                note="vs pg_restore --clean --if-exists --single-transaction of the same dump; "
                f"without start-up: {ratio_text(result['dbrestore_s'] - startup, result['pg_restore_s'])}",
            ),
        ]
        self.phase("backups", began)


def dated_name(preset: str, today: datetime | None = None) -> str:
    """The name of a full run's dated copy: 2026-11-30-full, 2026-11-30-full-records100000."""
    suffix = preset.replace(" with ", "-").replace(", ", "-").replace("=", "").replace("_", "-")
    return (today or datetime.now(UTC)).strftime("%Y-%m-%d-") + suffix


def ratio_text(value: float, baseline: float) -> str:
    return f"{value / baseline:.2f}x" if baseline else "-"


def revision() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" with uncommitted changes" if dirty else "")


def machine(load_before: tuple[float, float, float]) -> dict:
    memory_kib = 0
    model = platform.processor()
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "load_average_before": [round(value, 2) for value in load_before],
        "load_average_after": [round(value, 2) for value in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run = Run(args)
    results = run.run()
    print()
    print(report.console_table(run.figures))
    names = ["latest"]
    if args.full:  # a dated copy of every full run, to keep beside docs/performance.md
        names.append(dated_name(args.preset))
    for path in report.write(results, run.figures, args.out, names):
        print(f"wrote {path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}")
    missed = [figure.title for figure in run.figures if figure.met is False]
    if missed:
        print(f"{len(missed)} targets not met: {'; '.join(missed)}")
    # The benchmark measures; a missed target is a finding for the report, not a failure of the run.
    return 0


if __name__ == "__main__":
    sys.exit(main())
