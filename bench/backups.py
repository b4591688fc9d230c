"""manage.py dbbackup / dbrestore against pg_dump -Fc / pg_restore by hand, on the same database.

Each repetition runs the hand-made command and Nucleus' command back to back, alternating which goes
first, after a CHECKPOINT, so that both see the same cache and load; the figures are medians.
"""

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import db
from bench.server import REPO_ROOT

# What dbrestore runs (backups/dumps.py, PostgresConnector.restore_from) when the live database holds
# only what the dump creates.
RESTORE_OPTIONS = ("--clean", "--if-exists", "--single-transaction", "--exit-on-error")


def _timed_run(command: list[str], env: dict[str, str]) -> float:
    began = time.perf_counter()
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - began
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return elapsed


def _interleaved(rep: int, url: str, env: dict[str, str], *runs: tuple[list[float], list[str]]) -> None:
    """Run each command once, after a CHECKPOINT, the order alternating with the repetition."""
    for samples, command in runs if rep % 2 == 0 else reversed(runs):
        db.execute(url, "CHECKPOINT")
        samples.append(_timed_run(command, env))


def _median(values: list[float]) -> float:
    return statistics.median(values)


def measure(*, url: str, env: dict[str, str], backup_dir: Path, scratch: Path, reps: int) -> dict:
    """Start-up, dumps and restores, `reps` times each; returns medians and every sample."""
    manage = [sys.executable, "manage.py"]
    scratch.mkdir(parents=True, exist_ok=True)
    startup = [_timed_run([*manage, "version"], env) for _ in range(reps)]

    hand_dump, nucleus_dump = [], []
    for rep in range(reps):
        hand = scratch / f"hand-{rep}.dump"
        _interleaved(
            rep,
            url,
            env,
            (hand_dump, ["pg_dump", f"--dbname={url}", "--format=custom", f"--file={hand}"]),
            (nucleus_dump, [*manage, "dbbackup", "--quiet"]),
        )
    dumps = sorted(backup_dir.glob("*.psql.bin"), key=lambda path: path.stat().st_mtime)
    dump = dumps[-1]
    hand_size = (scratch / "hand-0.dump").stat().st_size

    hand_restore, nucleus_restore = [], []
    for rep in range(reps):
        _interleaved(
            rep,
            url,
            env,
            (hand_restore, ["pg_restore", f"--dbname={url}", *RESTORE_OPTIONS, str(dump)]),
            (nucleus_restore, [*manage, "dbrestore", "--noinput", "--quiet", "-i", dump.name]),
        )
    shutil.rmtree(scratch, ignore_errors=True)
    return {
        "repetitions": reps,
        "dump_file": dump.name,
        "dump_bytes": dump.stat().st_size,
        "hand_dump_bytes": hand_size,
        "startup_s": _median(startup),
        "pg_dump_s": _median(hand_dump),
        "dbbackup_s": _median(nucleus_dump),
        "pg_restore_s": _median(hand_restore),
        "dbrestore_s": _median(nucleus_restore),
        "samples": {
            "startup": startup,
            "pg_dump": hand_dump,
            "dbbackup": nucleus_dump,
            "pg_restore": hand_restore,
            "dbrestore": nucleus_restore,
        },
        "commands": {
            "startup": "python manage.py version",
            "pg_dump": "pg_dump --dbname=<db> --format=custom --file=<scratch file>",
            "dbbackup": "python manage.py dbbackup --quiet",
            "pg_restore": "pg_restore --dbname=<db> --clean --if-exists --single-transaction --exit-on-error "
            "<the newest dbbackup dump>",
            "dbrestore": "python manage.py dbrestore --noinput --quiet -i <the newest dbbackup dump> "
            "(no safety backup)",
        },
    }
