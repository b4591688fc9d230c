"""The admin's sign-in lockout and the Content-Security-Policy against the image's own server.

gunicorn as the Dockerfile's CMD starts it, DEBUG off, static files collected and served by whitenoise,
behind a TLS-terminating proxy (X-Forwarded-Proto). The unlock is the real management command.
"""

import re
from urllib.parse import urlencode

import pytest

from tests.processes import Gunicorn, free_port, gunicorn_command, manage
from tests.test_deployment import production_env
from tests.test_production_profile import HTTPS, Client, cookies_of, create_service

OPERATOR = ("carol", "a long and correct passphrase")
LIMIT = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The image's CMD on a migrated SQLite file, with an operator and a service, lockout after 3 failures."""
    tmp_path = tmp_path_factory.mktemp("admin-hardening")
    env = production_env(tmp_path, NUCLEUS_ADMIN_LOGIN_FAILURE_LIMIT=str(LIMIT))
    for step in (("migrate", "--noinput"), ("collectstatic", "--noinput", "--verbosity", "0")):
        done = manage(*step, env=env)
        assert done.returncode == 0, done.stderr
    username, password = OPERATOR
    created = manage(
        "createsuperuser",
        "--noinput",
        "--username",
        username,
        "--email",
        "carol@example.test",
        env={**env, "DJANGO_SUPERUSER_PASSWORD": password},
    )
    assert created.returncode == 0, created.stderr
    token = create_service("docs-reader", env)
    port = free_port()
    with Gunicorn(gunicorn_command(port), port=port, env=env, log_path=tmp_path / "gunicorn.log") as running:
        running.env = env
        running.token = token
        yield running


def sign_in(server: Gunicorn, username: str, password: str):
    """The admin's sign-in form as a browser submits it: GET for the CSRF token, then POST."""
    client = Client(server)
    response, page = client.request("GET", "/admin/login/", headers=HTTPS)
    assert response.status == 200, page[:300]
    csrf = cookies_of(response)["csrftoken"].value
    form_token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1).decode()
    origin = f"https://127.0.0.1:{server.port}"
    return client.request(
        "POST",
        "/admin/login/?next=/admin/",
        body=urlencode({"username": username, "password": password, "csrfmiddlewaretoken": form_token}),
        headers={
            **HTTPS,
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={csrf}",
            "Origin": origin,
            "Referer": f"{origin}/admin/login/",
        },
    )


def policy(response) -> dict[str, list[str]]:
    directives = (part.split() for part in response.getheader("Content-Security-Policy", "").split(";"))
    return {name: sources for name, *sources in directives if name}


def test_failed_sign_ins_lock_the_account_until_axes_reset_username(server):
    username, password = OPERATOR
    for attempt in range(1, LIMIT):
        response, page = sign_in(server, username, "guess")
        assert response.status == 200, attempt
        assert b"Please enter the correct username and password" in page
    response, page = sign_in(server, username, "guess")
    assert response.status == 429
    assert b"Too many failed sign-ins for carol" in page

    response, page = sign_in(server, username, password)
    assert response.status == 429  # the right password changes nothing now
    assert "sessionid" not in cookies_of(response)
    # Service tokens never go through the sign-in: the API answers as before.
    response, body = Client(server, server.token).request("GET", "/api/v1/collections/", headers=HTTPS)
    assert response.status == 200, body

    reset = manage("axes_reset_username", username, env=server.env)
    assert reset.returncode == 0, reset.stderr

    response, page = sign_in(server, username, password)
    assert response.status == 302, page[:300]
    assert cookies_of(response)["sessionid"].value


def test_html_pages_carry_the_policy(server):
    for path in ("/admin/login/", "/api/docs/"):
        response, _ = Client(server).request("GET", path, headers=HTTPS)
        assert response.status == 200, path
        directives = policy(response)
        assert directives["default-src"] == ["'self'"], path
        assert directives["script-src"] == ["'self'"], path
        assert directives["style-src"] == ["'self'"], path
        assert directives["frame-ancestors"] == ["'none'"], path
    response, _ = Client(server).request("GET", "/api/redoc/", headers=HTTPS)
    assert policy(response)["style-src"] == ["'self'", "'unsafe-inline'"]
    assert policy(response)["script-src"] == ["'self'"]


def test_the_api_viewers_load_only_collected_files_of_this_origin(server):
    for path in ("/api/docs/", "/api/redoc/"):
        response, page = Client(server).request("GET", path, headers=HTTPS)
        assert response.status == 200, path
        html = page.decode()
        assert "<script>" not in html and "style=" not in html, path  # no inline code
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert assets, path
        for asset in assets:
            if asset.startswith("data:"):
                continue
            assert asset.startswith("/"), f"{path} loads {asset} from elsewhere"
            response, body = Client(server).request("GET", asset, headers=HTTPS)
            assert response.status == 200, asset
            assert body, asset
    # Swagger UI's set-up script is a file of its own, served by the view.
    response, body = Client(server).request("GET", "/api/docs/?script=", headers=HTTPS)
    assert response.status == 200
    assert response.getheader("Content-Type").startswith("application/javascript")
    assert b"SwaggerUIBundle(" in body and b'"validatorUrl": null' in body
