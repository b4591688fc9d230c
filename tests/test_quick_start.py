"""The README's walk-through with curl works when pasted into a shell on a fresh checkout.

The block runs as written, with three substitutions only: `make run &` becomes the two commands its
recipe runs (migrate, then runserver; without creating .venv, which exists here) with the output in a
file, `.venv/bin/python` this interpreter, and port 8011 a free one. It starts the server in the
background and goes on at once, exactly as a reader pasting it does: it must wait for the server
itself (create_service once raced the first migration), and hide no error.
"""

import contextlib
import os
import re
import signal
import subprocess
import sys

from tests.processes import REPO_ROOT, SUBPROCESS_TIMEOUT, clean_env, free_port

README = REPO_ROOT / "README.md"
MAKEFILE = REPO_ROOT / "Makefile"


def walk_through() -> str:
    """The shell block of README's "A walk-through with curl"."""
    section = README.read_text().split("### A walk-through with curl", 1)[1]
    return re.search(r"```sh\n(.*?)```", section, re.DOTALL).group(1)


def run_recipe() -> str:
    """What `make run` runs once .venv exists: the recipe of its prerequisite `migrate`, then its own."""
    makefile = MAKEFILE.read_text()
    assert re.search(r"^run: migrate$", makefile, re.MULTILINE), "make run migrates first"
    recipes = dict(re.findall(r"^(\w+):[^\n]*\n((?:\t[^\n]*\n)+)", makefile, re.MULTILINE))
    return " && ".join(line.strip() for line in (recipes["migrate"] + recipes["run"]).splitlines())


def test_the_walk_through_works_when_pasted(tmp_path):
    port = free_port()
    script = walk_through()
    assert script.startswith("make run &"), "the walk-through starts the server in the background"
    assert "2>/dev/null" not in script and "2>&1" not in script, "the walk-through hides no error"
    server = run_recipe().replace("$(BIN)/python", sys.executable).replace("$(PORT)", str(port))
    pasted = (
        script.replace(".venv/bin/python", sys.executable)
        .replace("8011", str(port))
        .replace("make run &", f"( {server} ) >{tmp_path / 'server.log'} 2>&1 &", 1)
    )
    env = clean_env(NUCLEUS_VAR_DIR=str(tmp_path / "var"), NUCLEUS_BACKUP_DIR=str(tmp_path / "backups"))
    shell = subprocess.Popen(
        ["bash", "-c", pasted],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the shell and the server it starts: one process group to stop
    )
    try:
        out, err = shell.communicate(timeout=SUBPROCESS_TIMEOUT * 2)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the server the walk-through left running
            os.killpg(shell.pid, signal.SIGTERM)
        shell.wait()

    assert shell.returncode == 0, err
    assert "Traceback" not in err and "CommandError" not in err, err
    assert "Created service taxon" in err and "Created service flow" in err, err
    assert "HTTP/1.1 201 Created" in out, out  # the record doc-1, created with its Idempotency-Key
    assert '"code":"precondition_failed"' in out, out  # the stale update
    assert '"key":"doc-1"' in out and '"reviewed":true' in out, out
    assert '"status":500' not in out and '"status":401' not in out, out
    assert '"version":4' in out, out  # the revert made version 4
