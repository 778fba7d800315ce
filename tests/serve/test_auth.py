"""API keys and scopes: every route x every scope, 401/403 shapes, open mode only on loopback,
the start-up refusal, and that keys never reach a response, a log line or a metric."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from liverec.serve.app import create_app
from liverec.serve.auth import InsecureBind, check_bind, effective_routes, is_loopback, scope_of
from liverec.settings import AuthSettings, ServerSettings, Settings, load_settings
from support.api import event, free_port

KEYS = {  # name -> (key, scopes)
    "reader": ("reader-key-0123456789", ["read"]),
    "writer": ("writer-key-0123456789", ["write"]),
    "ops": ("admin-key-0123456789ab", ["admin"]),
    "both": ("both-key-0123456789abc", ["read", "write"]),
}
GRANTS = {
    "reader": {"read"},
    "writer": {"write"},
    "ops": {"read", "write", "admin"},
    "both": {"read", "write"},
}


def keyed_settings(data_dir: Path, **server: Any) -> Settings:
    keys = [{"name": n, "key": k, "scopes": s} for n, (k, s) in KEYS.items()]
    return Settings(data_dir=data_dir, server=ServerSettings(**server), auth=AuthSettings(keys=keys))  # type: ignore[arg-type]


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name][0]}"}


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(keyed_settings(tmp_path / "data"))) as client:
        yield client


def operations(app: FastAPI) -> list[tuple[str, str, str | None]]:
    """(method, path template, scope decision) of every route the app serves."""
    out = []
    for route in effective_routes(app.routes):
        path = getattr(route, "path", None)
        if path is None:
            continue
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            if method != "HEAD":
                out.append((method, path, scope_of(route)))
    return out


APP = create_app(Settings(data_dir=Path("unused")))  # never started: only its routes are read
OPERATIONS = operations(APP)


def call(client: TestClient, method: str, template: str, headers: dict[str, str] | None = None) -> Any:
    path = re.sub(r"\{version\}", "v000001", template)
    path = re.sub(r"\{[^}]+\}", "x", path)
    body = {"items": [{"item_id": "x"}]} if path == "/v1/items" else event("u", "x")
    kwargs: dict[str, Any] = {"json": body} if method in ("POST", "PUT", "PATCH") else {}
    if path.startswith("/docs-assets"):
        path += "/swagger-ui.css"
    return client.request(method, path, headers=headers or {}, **kwargs)


def test_every_route_has_a_scope_decision() -> None:
    undecided = [(m, p) for m, p, scope in OPERATIONS if scope is None]
    assert not undecided, f"routes without a scope (add dependencies=[READ|WRITE|ADMIN]): {undecided}"
    decided = {(m, p): s for m, p, s in OPERATIONS}
    assert decided[("POST", "/v1/events")] == "write"
    assert decided[("GET", "/v1/users/{user_id}/recommendations")] == "read"
    assert decided[("DELETE", "/v1/users/{user_id}")] == "admin"
    assert decided[("GET", "/healthz")] == "public"


@pytest.mark.parametrize(
    ("method", "template", "scope"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS]
)
def test_route_x_scope(keyed: TestClient, method: str, template: str, scope: str | None) -> None:
    assert scope is not None
    anonymous = call(keyed, method, template)
    if scope == "public":
        assert anonymous.status_code not in (401, 403), anonymous.text
        return
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in anonymous.json()["detail"]
    for name, granted in GRANTS.items():
        r = call(keyed, method, template, bearer(name))
        if scope in granted:
            assert r.status_code not in (401, 403), (name, r.text)
        else:
            assert r.status_code == 403, (name, r.text)
            detail = r.json()["detail"]
            assert f"{scope!r} scope" in detail and repr(name) in detail
            assert KEYS[name][0] not in r.text


def test_bad_keys_are_401_with_a_clear_message(keyed: TestClient) -> None:
    url = "/v1/users/u/recommendations"
    for headers, msg, error in [
        ({"Authorization": "Bearer not-a-key-at-all-xx"}, "invalid API key", "invalid_token"),
        ({"Authorization": f"Basic {KEYS['reader'][0]}"}, "malformed Authorization", "invalid_request"),
        ({"Authorization": "Bearer"}, "malformed Authorization", "invalid_request"),
        ({"Authorization": KEYS["reader"][0]}, "malformed Authorization", "invalid_request"),
    ]:
        r = keyed.get(url, headers=headers)
        assert r.status_code == 401, headers
        assert msg in r.json()["detail"]
        assert r.headers["www-authenticate"] == f'Bearer error="{error}"'
    assert keyed.get(url, headers={"Authorization": f"bearer  {KEYS['reader'][0]} "}).status_code == 200


def test_key_sha256_admits_the_key_and_the_file_holds_no_secret(tmp_path: Path) -> None:
    secret = "a-long-random-secret-123"
    cfg = tmp_path / "liverec.toml"
    cfg.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[[auth.keys]]\nname = "ingest"\n'
        f'key_sha256 = "{hashlib.sha256(secret.encode()).hexdigest()}"\nscopes = ["write"]\n'
    )
    settings = load_settings(cfg)
    assert settings.auth.keys[0].name == "ingest" and secret not in cfg.read_text()
    with TestClient(create_app(settings)) as c:
        ok = c.post("/v1/events", json=event("u", "x"), headers={"Authorization": f"Bearer {secret}"})
        assert ok.status_code == 200, ok.text
        assert c.post("/v1/events", json=event("u", "x")).status_code == 401


def test_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    keys = [{"name": "ci", "key": "ci-key-0123456789abcdef", "scopes": ["read", "write"]}]
    monkeypatch.setenv("LIVEREC_AUTH__KEYS", json.dumps(keys))
    s = load_settings(data_dir=tmp_path)
    assert [(k.name, k.scopes) for k in s.auth.keys] == [("ci", ["read", "write"])]
    assert "ci-key" not in repr(s) and "ci-key" not in str(s.model_dump())  # a SecretStr


@pytest.mark.parametrize(
    ("keys", "error"),
    [
        ([{"name": "a", "scopes": ["read"]}], "exactly one of key or key_sha256"),
        ([{"name": "a", "key": "short", "scopes": ["read"]}], "at least 16"),
        ([{"name": "a", "key": "k" * 20, "scopes": []}], "at least 1 item"),
        ([{"name": "a", "key": "k" * 20, "scopes": ["root"]}], "'read', 'write' or 'admin'"),
        ([{"name": "a", "key": "k" * 20, "scopes": ["read"], "extra": 1}], "unknown key"),
        ([{"name": "a", "key": "k" * 20, "scopes": ["read"]}] * 2, "unique"),
        (
            [
                {"name": "a", "key": "k" * 20, "scopes": ["read"]},
                {"name": "b", "key": "k" * 20, "scopes": ["read"]},
            ],
            "same secret",
        ),
        ([{"name": "has space", "key": "k" * 20, "scopes": ["read"]}], "should match pattern"),
    ],
)
def test_bad_key_settings_are_errors(keys: list[dict[str, Any]], error: str) -> None:
    with pytest.raises(ValueError, match=re.escape(error)):
        AuthSettings(keys=keys)  # type: ignore[arg-type]


# -- /healthz: anonymous vs admin -------------------------------------------------------------------
def test_healthz_says_only_status_and_version_without_admin(keyed: TestClient) -> None:
    anonymous = keyed.get("/healthz")
    assert anonymous.status_code == 200
    assert set(anonymous.json()) == {"status", "version"}
    assert set(keyed.get("/healthz", headers=bearer("both")).json()) == {"status", "version"}
    admin = keyed.get("/healthz", headers=bearer("ops")).json()
    assert {"model", "log_offset", "events", "users", "items", "store"} <= set(admin)
    assert keyed.get("/healthz", headers={"Authorization": "Bearer wrong-key-0123456789"}).status_code == 401


# -- metrics and logs name keys, never show them -----------------------------------------------------
def test_requests_are_counted_per_key_name_and_no_key_leaks(keyed: TestClient) -> None:
    keyed.get("/v1/users/u/recommendations", headers=bearer("reader"))
    keyed.post("/v1/events", json=event("u", "x"), headers=bearer("reader"))  # 403
    text = keyed.get("/metrics", headers=bearer("reader")).text
    assert 'liverec_requests_by_key_total{key="reader",outcome="ok"} 2.0' in text  # recs + /metrics
    assert 'liverec_requests_by_key_total{key="reader",outcome="forbidden"} 1.0' in text
    for key, _ in KEYS.values():
        assert key not in text


def test_start_up_log_names_keys_never_the_secrets(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="liverec")
    with TestClient(create_app(keyed_settings(tmp_path / "data"))):
        pass
    assert "API keys required: 4 configured: reader (read), writer (write), ops (admin)" in caplog.text
    for key, _ in KEYS.values():
        assert key not in caplog.text


# -- open mode: loopback only -------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.0.0.5", "example.com", "localhost.evil.com"])
def test_non_loopback_addresses(host: str) -> None:
    assert not is_loopback(host)


def test_no_keys_serve_open_only_on_loopback(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    assert "serving OPEN on loopback address 127.0.0.1" in check_bind(settings)
    with caplog.at_level(logging.WARNING, logger="liverec"), TestClient(create_app(settings)) as c:
        assert c.delete("/v1/users/u").status_code == 200  # every scope, as before keys existed
        assert "store" in c.get("/healthz").json()  # and the full health detail
    assert "serving OPEN on loopback" in caplog.text
    exposed = Settings(data_dir=tmp_path / "data", server=ServerSettings(host="0.0.0.0"))
    with pytest.raises(InsecureBind, match=r"refusing to serve on 0\.0\.0\.0 without API keys"):
        create_app(exposed)
    exposed.auth.insecure = True
    assert "--insecure: serving OPEN on 0.0.0.0" in check_bind(exposed)
    keyed = keyed_settings(tmp_path / "data", host="0.0.0.0")
    assert check_bind(keyed).startswith("API keys required")


def _serve(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    exe = Path(sys.executable).with_name("liverec")
    env = {"LIVEREC_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.Popen(
        [str(exe), "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )


def test_cli_refuses_a_public_bind_without_keys_unless_insecure(tmp_path: Path) -> None:
    port = str(free_port())
    refused = _serve(tmp_path, "--host", "0.0.0.0", "--port", port)
    out, _ = refused.communicate(timeout=60)
    assert refused.returncode == 2, out
    assert "refusing to serve on 0.0.0.0 without API keys" in " ".join(out.split())

    allowed = _serve(tmp_path, "--host", "0.0.0.0", "--port", port, "--insecure")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert allowed.poll() is None, allowed.communicate()[0]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("liverec serve --insecure did not answer /healthz")
    finally:
        allowed.terminate()
        out, _ = allowed.communicate(timeout=30)
    assert "--insecure: serving OPEN on 0.0.0.0" in out


# -- model versions over HTTP (admin) ----------------------------------------------------------------
def _fake_version(registry: Path, version: str, ndcg: float) -> None:
    folder = registry / "versions" / version
    folder.mkdir(parents=True)
    meta = {"version": version, "created_at": 1.0, "parent": None, "metrics": {"val": {"ndcg@10": ndcg}}}
    (folder / "meta.json").write_text(json.dumps({**meta, "config": {"n_items": 3}}))


def test_model_routes_list_promote_and_roll_back(keyed: TestClient, tmp_path: Path) -> None:
    registry = tmp_path / "data" / "registry"
    _fake_version(registry, "v000001", 0.1)
    _fake_version(registry, "v000002", 0.2)
    admin = bearer("ops")
    listed = keyed.get("/v1/models", headers=admin).json()
    assert listed["live"] is None and [v["version"] for v in listed["versions"]] == ["v000001", "v000002"]
    assert listed["versions"][1]["metrics"]["val"]["ndcg@10"] == 0.2
    assert listed["versions"][1]["n_items"] == 3
    assert keyed.post("/v1/models/rollback", headers=admin).status_code == 409  # nothing to roll back to
    assert keyed.post("/v1/models/v000009/promote", headers=admin).status_code == 404
    assert keyed.post("/v1/models/..%2Fx/promote", headers=admin).status_code in (404, 422)
    r = keyed.post("/v1/models/v000001/promote", headers=admin)
    assert r.json() == {"live": "v000001", "previous": None}
    assert keyed.post("/v1/models/v000002/promote", headers=admin).json() == {
        "live": "v000002",
        "previous": "v000001",
    }
    listed = keyed.get("/v1/models", headers=admin).json()
    assert (listed["live"], listed["history"]) == ("v000002", ["v000001"])
    assert [v["live"] for v in listed["versions"]] == [False, True]
    assert keyed.post("/v1/models/rollback", headers=admin).json() == {
        "live": "v000001",
        "previous": "v000002",
    }


def test_liverec_config_shows_key_names_never_keys(tmp_path: Path) -> None:
    from liverec.cli.config import render

    settings = keyed_settings(tmp_path)
    text = render(settings.model_dump(), {}, {})
    assert 'keys = [{name = "reader", key = "***", scopes = ["read"]}' in text
    for key, _ in KEYS.values():
        assert key not in text
