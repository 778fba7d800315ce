"""/docs works offline: Swagger UI's assets come from the package, and a real headless Chromium, with
every host but 127.0.0.1 unreachable, renders the operations. Also: every field of the OpenAPI
schema has a description and every operation an example."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from liverec.serve.app import DOCS_ASSETS, create_app
from liverec.settings import Settings
from support.api import Api, free_port, make_settings

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_docs_pages_use_packaged_assets_only(api: Api) -> None:
    """No CDN: every script and stylesheet of /docs and /redoc is a local path that serves."""
    for page in ("/docs", "/redoc"):
        r = api.client.get(page)
        assert r.status_code == 200, r.text
        html = r.text
        assert "cdn" not in html.lower() and "https://" not in html, html
        assert f"{DOCS_ASSETS}/" in html
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
        r = api.client.get(f"{DOCS_ASSETS}/{asset}")
        assert r.status_code == 200 and len(r.content) > 10_000, asset


def walk_properties(schema: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every (path, property schema) under the OpenAPI components."""
    if isinstance(schema, dict):
        for name, prop in (schema.get("properties") or {}).items():
            yield f"{where}.{name}", prop
        for key, value in schema.items():
            yield from walk_properties(value, f"{where}.{key}" if key != "properties" else where)
    elif isinstance(schema, list):
        for i, value in enumerate(schema):
            yield from walk_properties(value, f"{where}[{i}]")


OWN_SCHEMAS = ("ItemPage", "RecommendationOut", "RecommendedItem", "RecommendedItemFields", "SimilarOut")


def test_response_fields_of_the_new_routes_are_described(api: Api) -> None:
    schemas = api.client.get("/openapi.json").json()["components"]["schemas"]
    missing = [
        f"{name}{path}"
        for name in OWN_SCHEMAS
        for path, prop in walk_properties(schemas[name])
        if "description" not in prop and "$ref" not in prop
    ]
    assert not missing, missing


def test_every_schema_field_is_described(api: Api) -> None:
    """Request and response bodies alike: every property of every component has a description."""
    schemas = api.client.get("/openapi.json").json()["components"]["schemas"]
    missing = [
        f"{name}.{field}"
        for name, schema in schemas.items()
        for field, prop in (schema.get("properties") or {}).items()
        if not prop.get("description")
    ]
    assert not missing, missing


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref", "")
    out: dict[str, Any] = spec["components"]["schemas"][ref.rsplit("/", 1)[-1]] if ref else schema
    return out


def test_every_operation_has_an_example(api: Api) -> None:
    """Each route shows an example: of its request body, or else of its 200 response."""
    spec = api.client.get("/openapi.json").json()
    bare = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            bodies = [op.get("requestBody", {}).get("content", {}).get("application/json", {})]
            bodies.append(op["responses"].get("200", {}).get("content", {}).get("application/json", {}))
            if path == "/metrics":  # Prometheus text, not JSON
                continue
            if not any(
                "example" in b or "examples" in b or "examples" in resolve(spec, b.get("schema", {}))
                for b in bodies
            ):
                bare.append(f"{method.upper()} {path}")
    assert not bare, bare


def test_new_query_parameters_are_described_with_examples(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    listing = {p["name"]: p for p in paths["/v1/items"]["get"]["parameters"]}
    assert set(listing) >= {"limit", "after"}
    assert all(p.get("description") for p in listing.values())
    recs = {p["name"]: p for p in paths["/v1/users/{user_id}/recommendations"]["get"]["parameters"]}
    assert recs["fields"]["description"] and recs["fields"]["examples"]["title and tags"]["value"]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """A real uvicorn server of `create_app` on 127.0.0.1 (a thread of this process)."""
    settings: Settings = make_settings(tmp_path / "data")
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/openapi.json", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    else:
        raise RuntimeError("the server did not start")
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.mark.slow
def test_swagger_ui_renders_operations_offline_in_chromium(served: str, tmp_path: Path) -> None:
    """Headless Chromium loads /docs with every host except 127.0.0.1 unresolvable and no proxy
    fallback: the rendered DOM lists the operations, so nothing came from the internet."""
    assert CHROMIUM is not None, "chromium is missing: make setup installs it (apt-get install chromium)"
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--proxy-server=http://127.0.0.1:9",  # anything not bypassed goes nowhere
            "--proxy-bypass-list=127.0.0.1",
            "--virtual-time-budget=20000",
            "--dump-dom",
            f"{served}/docs",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    dom = done.stdout
    assert "swagger-ui" in dom, done.stderr[-2000:]
    for operation in (
        "/v1/users/{user_id}/recommendations",
        "/v1/items/{item_id}/similar",
        "/v1/events",
        "The catalog, paged in creation order",
    ):
        assert operation in dom, f"{operation!r} not rendered:\n{dom[:3000]}"
    assert "Failed to load API definition" not in dom


def test_docs_do_not_need_the_engine(tmp_path: Path) -> None:
    """/docs is a static page: it answers before any model or store work (TestClient, no lifespan)."""
    client = TestClient(create_app(make_settings(tmp_path / "data")))
    assert client.get("/docs").status_code == 200
