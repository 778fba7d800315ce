"""/dashboard in a real browser: Debian's headless Chromium, driven by Playwright, against a real
uvicorn server (a thread of this process) serving a trained Transformer from a test registry with two
versions, while a thread sends traffic (lists asked for, clicks, a random control cohort, invalid and
duplicate events). With API keys configured, the page asks for one and the data calls answer 401/403
without it; with the admin key every view loads and its charts have data, the user inspector shows
the explanation sentences, and Rollback (confirmed) changes the live version shown. Every request the
page makes goes to 127.0.0.1 (and Chromium cannot resolve any other host).

Screenshots go to ``$TEST_ARTIFACTS_DIR/dashboard`` (default ``tests/artifacts/dashboard``, git-ignored).

The online learner does not run here (a model trains in seconds, the gate needs minutes of traffic):
v000002 is registered the way it publishes (``online``, prequential scores) and its status file holds
one rejected decision, written by `trainer.status.write_status` as the learner would.
"""

from __future__ import annotations

import os
import random
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn

from liverec.model.text import TextEncoder
from liverec.registry.registry import ModelRegistry
from liverec.serve.app import create_app
from liverec.settings import AuthSettings, ServerSettings, Settings
from liverec.store import open_store
from liverec.trainer.status import write_status
from support.api import free_port
from support.world import (
    ITEM_IDS,
    POLL_S,
    Trained,
    crowd_events,
    fill_store,
    genre,
    start_engine,
    walks,
    world_items,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY, APP_KEY, READER_KEY = "admin-key-0123456789ab", "app-key-0123456789abcd", "reader-key-0123456789"
KEYS = [
    {"name": "ops", "key": ADMIN_KEY, "scopes": ["admin"]},
    {"name": "app", "key": APP_KEY, "scopes": ["read", "write"]},
    {"name": "reader", "key": READER_KEY, "scopes": ["read"]},
]
WAIT_MS = 30_000
USERS = 12  # the first half in the liverec cohort, the rest in the random control cohort


def artifacts() -> Path:
    out = Path(os.environ.get("TEST_ARTIFACTS_DIR") or ROOT / "tests" / "artifacts") / "dashboard"
    out.mkdir(parents=True, exist_ok=True)
    return out


def cohort(u: int) -> dict[str, str]:
    return {"cohort": "liverec" if u < USERS // 2 else "control"}


def ctx_at(ctx: dict[str, Any], position: int, propensity: float) -> dict[str, Any]:
    return {**ctx, "position": position, "propensity": propensity}


def traffic(url: str, stop: threading.Event, failures: list[str]) -> None:
    """Simulated users until ``stop``: each walks one genre; the liverec cohort asks the server for
    lists and clicks same-genre items in them, the control cohort is shown random lists (logged by
    the client, as `liverec demo` does); some batches are invalid (422) or repeat an event id."""
    rng = random.Random(0)
    seqs = walks(USERS, seed=3)
    headers = {"Authorization": f"Bearer {APP_KEY}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30.0) as c:
        now = time.time()
        history = [
            {
                "user_id": f"w{u}",
                "item_id": item,
                "type": "click",
                "timestamp": now - 60 + k,
                "context": cohort(u),
            }
            for u, seq in enumerate(seqs)
            for k, item in enumerate(seq[:-1])
        ]
        c.post("/v1/events", json={"events": history}).raise_for_status()
        n = 0
        while not stop.is_set():
            n += 1
            u = rng.randrange(USERS)
            user, taste = f"w{u}", genre(seqs[u][0])
            try:
                if u < USERS // 2:
                    r = c.get(f"/v1/users/{user}/recommendations", params={"k": 5})
                    body = r.raise_for_status().json()
                    ctx = {"request_id": body["request_id"], "cohort": "liverec"}
                    slate = [it["item_id"] for it in body["items"]]
                    events = []
                else:
                    rid = uuid.uuid4().hex
                    ctx = {"request_id": rid, "policy": "random", "surface": "demo-control"}
                    ctx["cohort"] = "control"
                    slate = rng.sample(ITEM_IDS, 5)
                    p_shown = 1 / len(ITEM_IDS)
                    events = [
                        {
                            "user_id": user,
                            "item_id": it,
                            "type": "impression",
                            "context": ctx_at(ctx, p, p_shown),
                        }
                        for p, it in enumerate(slate)
                    ]
                events += [
                    {"user_id": user, "item_id": item, "type": "click", "context": {**ctx, "position": p}}
                    for p, item in enumerate(slate)
                    if genre(item) == taste and rng.random() < 0.6
                ]
                if events:
                    c.post("/v1/events", json={"events": events}).raise_for_status()
                if n % 6 == 0:  # invalid: a rating needs a value
                    r = c.post("/v1/events", json={"user_id": user, "item_id": slate[0], "type": "rating"})
                    assert r.status_code == 422, r.text
                if n % 5 == 0:  # a retry of an event already logged
                    again = {"event_id": f"dup-{n}", "user_id": user, "item_id": slate[0], "type": "like"}
                    c.post("/v1/events", json=again).raise_for_status()
                    c.post("/v1/events", json=again).raise_for_status()
            except (httpx.HTTPError, AssertionError) as exc:
                failures.append(repr(exc))
            time.sleep(0.04)


@pytest.fixture
def server(tmp_path: Path, trained: Trained, encoder: TextEncoder) -> Iterator[str]:
    """A keyed server with v000001 (offline) and v000002 (online, live) of the trained model."""
    settings = Settings(
        data_dir=tmp_path / "data",
        server=ServerSettings(reload_poll_s=POLL_S),
        auth=AuthSettings(keys=KEYS),  # type: ignore[arg-type]
    )
    fill_store(settings, world_items(), crowd_events(), encoder)
    with open_store(settings.store_url) as st:
        offset = st.last_offset()
    registry = ModelRegistry(settings.registry_path)
    ndcg = trained.result.best_val.get("ndcg@10", 0.0)
    metrics = {"val": trained.result.best_val}
    v1 = registry.save(trained.fresh(), trained.vocab, metrics, extra={"trainer_offset": offset})
    registry.promote(v1)
    scores = {"candidate": {"ndcg@10": ndcg + 0.01}, "live": {"ndcg@10": ndcg}}
    v2 = registry.save(
        trained.fresh(),
        trained.vocab,
        {"prequential": scores},
        parent=v1,
        extra={"online": True, "trainer_offset": offset, "published_at": time.time()},
    )
    registry.promote(v2)
    decided = time.time()
    reason = f"rejected: candidate {ndcg - 0.05:.4f} < live {ndcg + 0.01:.4f} - 0.0"
    write_status(
        registry.root,
        {
            "running": True,
            "at": decided,
            "live": v2,
            "why": "caught up: no new events since the last decision",
            "last_decision": {"published": None, "reason": reason, "offset": offset, "at": decided},
        },
    )
    engine = start_engine(settings, encoder)
    port = free_port()
    config = uvicorn.Config(create_app(settings, engine), host="127.0.0.1", port=port, log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not uv.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    stop, failures = threading.Event(), []
    sender = threading.Thread(target=traffic, args=(url, stop, failures), daemon=True)
    sender.start()
    try:
        yield url
    finally:
        stop.set()
        sender.join(timeout=30)
        uv.should_exit = True
        thread.join(timeout=30)
        engine.close()
    assert not failures, failures[:5]


# the non-null points of a Plotly chart's traces (what the page drew)
POINTS = """id => (document.getElementById(id).data || []).reduce(
    (n, t) => n + (t.y || []).filter(v => v !== null && v !== undefined).length, 0)"""


def points(page: Any, chart: str) -> int:
    return int(page.evaluate(POINTS, chart))


def wait_points(page: Any, chart: str, at_least: int = 2) -> None:
    page.wait_for_function(f"([id, n]) => ({POINTS})(id) >= n", arg=[chart, at_least], timeout=WAIT_MS)


def show(page: Any, tab: str) -> None:
    page.click(f"#tabs button[data-tab={tab}]")
    page.wait_for_selector(f"#view-{tab}.active")


@pytest.mark.slow
def test_dashboard_in_chromium(server: str) -> None:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM is not None, "chromium is missing: make setup installs it (apt-get install chromium)"
    shots = artifacts()
    requested: list[str] = []
    statuses: dict[str, list[int]] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-dev-shm-usage",
                "--disable-gpu",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--proxy-server=http://127.0.0.1:9",  # anything not bypassed goes nowhere
                "--proxy-bypass-list=127.0.0.1",
            ],
        )
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        context.on("request", lambda r: requested.append(r.url))
        context.on("response", lambda r: statuses.setdefault(urlsplit(r.url).path, []).append(r.status))
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))

        # keys are configured: no key, no data, and the page asks for one
        page.goto(f"{server}/dashboard")
        page.wait_for_selector("#key-modal:not(.hidden)", timeout=WAIT_MS)
        assert 401 in statuses["/v1/dashboard"]
        anonymous = page.evaluate("fetch('/v1/dashboard').then(r => r.status)")
        with_key = "k => fetch('/v1/dashboard', {headers: {Authorization: 'Bearer ' + k}})"
        with_key += ".then(r => r.status)"
        reader = page.evaluate(with_key, READER_KEY)
        assert (anonymous, reader) == (401, 403)
        page.screenshot(path=str(shots / "0-key-prompt.png"))

        page.fill("#key-input", ADMIN_KEY)
        page.click("#key-submit")
        live = "document.getElementById('status-text').textContent === 'live'"
        page.wait_for_function(live, timeout=WAIT_MS)

        views = {
            "traffic": ["chart-events", "chart-requests", "chart-latency"],
            "quality": ["chart-ctr-cohort", "chart-ctr-policy", "chart-ctr-model", "chart-explore"],
            "models": ["chart-decisions"],
            "freshness": ["chart-visible", "chart-lag"],
            "data": ["chart-rejected", "chart-held"],
            "catalog": ["chart-newest", "chart-catalog"],
        }
        for n, (tab, charts) in enumerate(views.items(), start=1):
            show(page, tab)
            for chart in charts:
                wait_points(page, chart, 3 if chart == "chart-decisions" else 2)
            page.screenshot(path=str(shots / f"{n}-{tab}.png"), full_page=True)
        show(page, "quality")
        page.wait_for_function(
            """() => { const data = document.getElementById('chart-ctr-cohort').data || [];
                 const names = data.map(t => t.name);
                 return names.includes('control') && names.includes('liverec'); }""",
            timeout=WAIT_MS,
        )
        table = page.inner_text("#table-quality")
        assert "liverec" in table and "random" in table and "control" in table
        page.screenshot(path=str(shots / "2-quality.png"), full_page=True)

        # the user inspector: history, the live list with its explanations, recent feedback
        show(page, "user")
        page.fill("#user-input", "w0")
        page.click("#user-go")
        page.wait_for_selector("#user-recs li", timeout=WAIT_MS)
        texts = "els => els.map(e => e.textContent)"
        sentences = page.eval_on_selector_all("#user-recs .sentence:not(.muted)", texts)
        assert sentences and all(s.strip() for s in sentences), page.inner_text("#user-recs")
        assert page.locator("#user-history tbody tr").count() > 0
        feedback = "document.querySelectorAll('#user-feedback tbody tr').length > 0"
        page.wait_for_function(feedback, timeout=WAIT_MS)
        page.screenshot(path=str(shots / "7-user.png"), full_page=True)

        # rollback, confirmed: the live version shown changes, and the server follows
        show(page, "models")
        assert page.inner_text("#live-version") == "v000002"
        assert points(page, "chart-decisions") >= 3
        assert "rejected" in page.inner_text("#table-decisions")
        dialogs: list[str] = []

        def accept(dialog: Any) -> None:
            dialogs.append(dialog.message)
            dialog.accept()

        page.once("dialog", accept)
        page.click("#rollback")
        page.wait_for_function(
            "document.getElementById('live-version').textContent === 'v000001'", timeout=WAIT_MS
        )
        assert dialogs and "v000001" in dialogs[0]
        page.wait_for_function(
            "document.getElementById('served-model').textContent.endsWith('v000001')", timeout=WAIT_MS
        )
        page.screenshot(path=str(shots / "8-rolled-back.png"), full_page=True)
        browser.close()

    assert not errors, errors
    hosts = {urlsplit(u).hostname for u in requested}
    assert hosts == {"127.0.0.1"}, sorted(u for u in requested if urlsplit(u).hostname != "127.0.0.1")
    assert not any(ADMIN_KEY in u for u in requested)  # the key travels in a header only
    assert any(u.endswith("/dashboard-assets/plotly.min.js") for u in requested)
