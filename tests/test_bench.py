"""The benchmark's own logic (bench/): sizes, rounds, targets and the report. The CI smoke run
(`make bench` in .ci/run) checks that the whole benchmark runs."""

from datetime import UTC, datetime

import pytest

from bench import report, run
from bench.clients import ClientResult, combine
from bench.report import Figure
from bench.workload import SCHEMA, record_data, record_id, record_key


def test_shares_and_ranges_cover_everything_once():
    assert run.split(10, 3) == [4, 3, 3]
    assert run.boundaries(0, 10_000, 3, 1000) == [(0, 4000), (4000, 7000), (7000, 10_000)]
    assert run.boundaries(5, 7, 4) == [(5, 6), (6, 7)]


def test_checkpoints_are_the_powers_of_ten_up_to_the_size_and_the_size():
    sizes = run.PRESETS["full"]
    assert run.checkpoints(sizes) == [10_000, 100_000, 1_000_000]
    small = run.Sizes(**{**sizes.__dict__, "records": 250_000})
    assert run.checkpoints(small) == [10_000, 100_000, 250_000]


def test_presets_and_overrides():
    args = run.parse_args(["--database", "nucleus_bench_x"])
    assert args.sizes == run.PRESETS["small"] and args.preset == "small"
    args = run.parse_args(["--full", "--records", "100000", "--database", "nucleus_bench_x"])
    assert args.sizes.records == 100_000 and args.sizes.bulk == 100_000
    assert args.preset == "full with records=100000"
    day = datetime(2026, 11, 30, tzinfo=UTC)
    assert run.dated_name(args.preset, day) == "2026-11-30-full-records100000"
    assert run.dated_name("full", day) == "2026-11-30-full"


@pytest.mark.parametrize("name", ["nucleus", "test_nucleus", "postgres", "Bad-Name"])
def test_it_refuses_databases_it_would_clobber(name):
    with pytest.raises(SystemExit):
        run.parse_args(["--database", name])


def test_throughput_spans_the_common_start_to_the_last_finish():
    measured = combine(
        [
            ClientResult(ops=10, items=100, started=1.0, finished=3.0, latencies=[0.1] * 10),
            ClientResult(ops=10, items=100, started=1.5, finished=5.0, latencies=[0.3] * 10),
        ]
    )
    assert measured.seconds == 4.0 and measured.ops_per_s == 5.0 and measured.items_per_s == 50.0
    assert measured.latency_ms(0.0) == pytest.approx(100) and measured.latency_ms(1.0) == pytest.approx(300)


def test_targets_judge_ratios_both_ways_and_values():
    bulk = Figure("bulk_ingest", "bulk", "rows/s", nucleus=4000, raw=10_000)
    assert bulk.ratio == 0.4 and bulk.met is True
    assert Figure("point_read", "reads", "ops/s", nucleus=100, raw=1000).met is False
    assert Figure("dbrestore", "restore", "s", nucleus=11.5, raw=10, higher_is_better=False).met is True
    assert Figure("dbbackup", "backup", "s", nucleus=12, raw=10, higher_is_better=False).met is False
    assert Figure("list_memory", "memory", "MB", nucleus=20, higher_is_better=False).met is True
    assert Figure("where_group", "where", "queries/s", nucleus=1, raw=2).met is None  # no target


def test_the_table_shows_ratio_target_and_verdict():
    table = report.console_table(
        [
            Figure("bulk_ingest", "bulk ingest", "rows/s", nucleus=3000, raw=10_000),
            Figure("dbbackup", "dbbackup", "s", nucleus=1.1, raw=1.0, higher_is_better=False),
        ]
    )
    lines = table.splitlines()
    assert lines[0].split() == ["figure", "Nucleus", "raw", "PostgreSQL", "ratio", "target", "met"]
    assert "30.0%" in lines[2] and ">= 40%" in lines[2] and lines[2].endswith("NO")
    assert "1.10x" in lines[3] and "<= 1.15x" in lines[3] and lines[3].endswith("yes")


def test_records_are_valid_under_the_benchmark_schema_and_keyed_as_nucleus_keys_them():
    import jsonschema

    validator = jsonschema.Draft202012Validator(SCHEMA)
    for i in (0, 1, 999, 123_456, 999_999):
        validator.validate(record_data(i))
        validator.validate(record_data(i, revision=1))
    from core.models import record_pk

    assert record_id(7, record_key(42)) == record_pk(7, record_key(42))
