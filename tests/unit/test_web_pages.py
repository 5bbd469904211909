"""The pages of streams.web without servers: /moderation and the static files are served with a
strict Content-Security-Policy, nothing outside streams/web/static is reachable, every asset a
page names exists, and no page loads anything from another origin."""
from __future__ import annotations

import re

from fastapi.testclient import TestClient

from streams.api.app import create_app
from streams.settings import Settings
from streams.web.pages import PAGES, STATIC_DIR


def client(tmp_path):
    return TestClient(create_app(Settings.from_env({"PULSE_HOME": str(tmp_path)})), raise_server_exceptions=False)


def test_pages_and_their_assets_are_served_with_a_strict_policy(tmp_path):
    c = client(tmp_path)
    for path, file in PAGES.items():
        r = c.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', r.text)
        assert assets, path
        for asset in assets:
            a = c.get(asset)
            assert a.status_code == 200, asset
            assert a.headers["content-security-policy"] == csp
        assert not re.search(r'(?:src|href)="(?:https?:)?//', r.text), f"{file} loads from another origin"


def test_the_login_form_never_puts_the_password_in_a_url(tmp_path):
    html = client(tmp_path).get("/moderation").text
    form = re.search(r'<form id="login-form"[^>]*>', html).group(0)
    assert 'method="post"' in form and 'action="/v1/session"' in form  # without script: a POST, not ?password=


def test_nothing_outside_the_static_folder_is_served(tmp_path):
    c = client(tmp_path)
    for path in ("/static/../pages.py", "/static/%2e%2e/pages.py", "/static/moderation/../../pages.py",
                 "/static/nope.js", "/static//etc/passwd"):
        r = c.get(path)
        assert r.status_code == 404, path
        assert set(r.json()["error"]) == {"status", "code", "message", "request_id"}
        assert "import" not in r.text


def test_the_static_files_are_package_data():
    import tomllib

    from streams.settings import REPO_ROOT

    data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "static/**/*" in data["streams.web"]
    assert (STATIC_DIR / "moderation" / "index.html").is_file() and (STATIC_DIR / "common" / "session.js").is_file()
