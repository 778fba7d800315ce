"""One reward-join window: the server's policy feedback and `liverec evaluate ope` attribute the same
rewards to the same impressions, whichever way the window is set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from liverec.cli import app
from liverec.core.schema import Event, EventContext, EventType
from liverec.serve.engine import Engine
from liverec.settings import load_settings
from liverec.store import open_store

T0 = 1_700_000_000.0
DELAYS = (100.0, 400.0, 2_000.0)  # seconds from the impression to its click


def log() -> list[Event]:
    """One served list of three items, each clicked after one of `DELAYS`."""
    items = [f"i{k}" for k in range(len(DELAYS))]
    out = [
        Event(
            event_id=f"imp:r1:{pos}",
            user_id="u",
            item_id=item,
            type=EventType.impression,
            timestamp=T0,
            context=EventContext(request_id="r1", position=pos, propensity=1.0, policy="thompson"),
        )
        for pos, item in enumerate(items)
    ]
    for pos, (item, delay) in enumerate(zip(items, DELAYS, strict=True)):
        ctx = EventContext(request_id="r1", position=pos)
        out.append(Event(user_id="u", item_id=item, type=EventType.click, timestamp=T0 + delay, context=ctx))
    out.append(Event(user_id="v", item_id="i9", type=EventType.click, timestamp=T0 + 10_000))  # closes all
    return out


@pytest.mark.filterwarnings("ignore:.*feedback_window_s is deprecated:FutureWarning")
@pytest.mark.parametrize(
    ("toml", "window", "attributed"),
    [
        ('[policy]\nname = "thompson"\n', 300.0, 1),  # the default: the 100 s click only
        ('[policy]\nname = "thompson"\n[join]\nwindow_s = 600\n', 600.0, 2),
        ('[policy]\nname = "thompson"\nfeedback_window_s = 3000\n', 3_000.0, 3),  # the deprecated key
    ],
)
def test_the_server_and_evaluate_ope_join_in_one_window(
    tmp_path: Path, toml: str, window: float, attributed: int
) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    with open_store(url) as store:
        store.append(log())
    cfg = tmp_path / "liverec.toml"
    cfg.write_text(toml)
    result = CliRunner().invoke(app, ["evaluate", "ope", "--config", str(cfg), "--store", url])
    assert result.exit_code == 0, result.output
    ope = json.loads(result.stdout)["join"]

    settings = load_settings(cfg, store_url=url, data_dir=tmp_path)
    engine = Engine(settings).start(models=False, background=False)  # rebuilds from the log
    try:
        assert engine.feedback is not None  # thompson learns from the join
        served = engine.feedback.joiner
        served.flush()
    finally:
        engine.close()
    assert served.config.window_s == ope["window_s"] == window
    assert served.stats.attributed == ope["attributed"] == attributed
    assert served.stats.unattributed == ope["unattributed"] == 1 + len(DELAYS) - attributed
