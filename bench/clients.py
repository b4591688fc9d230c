"""Concurrent clients: each one a process of its own, started together behind a barrier.

Processes, not threads, so that neither the raw psycopg clients nor the HTTP clients share a GIL and
each client is as independent as a separate client service would be. Set-up (connecting, preparing
payloads) happens before the barrier and is not timed.
"""

import multiprocessing
import statistics
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

# A client function takes (index, args, start) and returns a ClientResult. It calls start() once it
# is ready; start() blocks until every client is ready and returns the common start time.
ClientFunction = Callable[[int, dict, Callable[[], float]], "ClientResult"]
CLIENT_TIMEOUT = 3600


@dataclass
class ClientResult:
    ops: int = 0  # operations done (requests, transactions, queries)
    items: int = 0  # rows or events those operations carried
    started: float = 0.0
    finished: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds per operation


@dataclass
class Measurement:
    """What one timed phase did, over all its clients."""

    clients: int
    ops: int
    items: int
    seconds: float
    latencies: list[float]

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    @property
    def items_per_s(self) -> float:
        return self.items / self.seconds if self.seconds else 0.0

    def latency_ms(self, quantile: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, round(quantile * (len(ordered) - 1)))
        return ordered[index] * 1000

    def summary(self) -> dict:
        return {
            "clients": self.clients,
            "ops": self.ops,
            "items": self.items,
            "seconds": round(self.seconds, 4),
            "ops_per_s": round(self.ops_per_s, 1),
            "items_per_s": round(self.items_per_s, 1),
            "latency_ms": {
                "mean": round(statistics.fmean(self.latencies) * 1000, 3) if self.latencies else None,
                "p50": _round(self.latency_ms(0.5)),
                "p99": _round(self.latency_ms(0.99)),
            },
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def combine(results: list[ClientResult]) -> Measurement:
    """Throughput over the wall time from the common start to the last client's finish."""
    started = min(result.started for result in results)
    finished = max(result.finished for result in results)
    return Measurement(
        clients=len(results),
        ops=sum(result.ops for result in results),
        items=sum(result.items for result in results),
        seconds=finished - started,
        latencies=[latency for result in results for latency in result.latencies],
    )


def _client_main(function: ClientFunction, index: int, args: dict, barrier, queue) -> None:
    def start() -> float:
        barrier.wait()
        return time.perf_counter()

    try:
        queue.put((index, function(index, args, start), None))
    except BaseException:
        barrier.abort()
        queue.put((index, None, traceback.format_exc()))


def run_clients(function: ClientFunction, args: list[dict]) -> Measurement:
    """Run function in len(args) processes at once; raise if any of them fails."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(args))
    queue = context.Queue()
    processes = [
        context.Process(target=_client_main, args=(function, index, client_args, barrier, queue))
        for index, client_args in enumerate(args)
    ]
    for process in processes:
        process.start()
    results: dict[int, ClientResult] = {}
    failures = []
    try:
        for _ in processes:
            index, result, failure = queue.get(timeout=CLIENT_TIMEOUT)
            if failure:
                failures.append(f"client {index}:\n{failure}")
            else:
                results[index] = result
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join()
    if failures:
        raise RuntimeError("a benchmark client failed:\n" + "\n".join(failures))
    return combine([results[index] for index in sorted(results)])


def run_inline(function: ClientFunction, args: dict) -> Measurement:
    """One client in this process (for sequential work such as bulk ingest and page-by-page reads)."""
    return combine([function(0, args, time.perf_counter)])
