"""`liverec config`: the effective settings as TOML, each value with where it came from."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from liverec.cli import app
from liverec.settings import load_settings


def run(*args: str) -> str:
    result = CliRunner().invoke(app, ["config", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def source(out: str, table: str, key: str) -> tuple[str, str]:
    """(value as printed, source comment) of ``key`` in ``[table]`` ("" = the top level)."""
    section = out.split(f"\n[{table}]\n")[1].split("\n\n")[0] if table else out.split("\n\n")[0]
    found = re.search(rf"^{key} = (.*?)\s+# (.*)$", section, re.MULTILINE)
    assert found, (table, key, section)
    return found.group(1), found.group(2)


def test_defaults_print_as_toml_that_reads_back_the_same(tmp_path: Path) -> None:
    out = run()
    assert out.startswith("# liverec settings in effect")
    parsed = tomllib.loads(out)
    assert parsed["server"]["port"] == 8000 and parsed["join"]["window_s"] == 300.0
    assert parsed["policy"] == {
        "name": "greedy",
        "candidates": 100,
        "new_item_slots": 0,
        "new_item_positives": 5.0,
    }
    assert source(out, "train", "epochs") == ("200", "default")
    assert source(out, "", "store_url")[1] == "default (from data_dir)"
    copy = tmp_path / "copy.toml"
    copy.write_text(out)
    assert (
        load_settings(copy).model_dump() == load_settings().model_dump()
    )  # the output is a settings file for the same settings


def test_each_value_says_where_it_came_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "live.toml"
    cfg.write_text(
        '[server]\nport = 9001\nhost = "0.0.0.0"\n[train]\nepochs = 5\n'
        '[policy]\nname = "thompson"\nsigma = 0.3\n[join]\nwindow_s = 120\n'
    )
    monkeypatch.setenv("LIVEREC_SERVER__PORT", "9002")  # env beats the file
    monkeypatch.setenv("LIVEREC_ONLINE__LR", "0.01")
    out = run("--config", str(cfg), "--store", "memory://")
    assert source(out, "server", "port") == ("9002", "env LIVEREC_SERVER__PORT")
    assert source(out, "server", "host") == ('"0.0.0.0"', f"file {cfg}")
    assert source(out, "server", "max_k") == ("1000", "default")
    assert source(out, "train", "epochs") == ("5", f"file {cfg}")
    assert source(out, "online", "lr") == ("0.01", "env LIVEREC_ONLINE__LR")
    assert source(out, "join", "window_s") == ("120.0", f"file {cfg}")
    assert source(out, "", "store_url") == ('"memory://"', "argument")
    assert source(out, "", "registry_dir")[1] == "default (from data_dir)"
    # the named policy's parameters: set ones with their source, the rest as its defaults, commented
    assert source(out, "policy", "sigma") == ("0.3", f"file {cfg}")
    assert re.search(r"^# lam = 1\.0\s+# policy default$", out, re.MULTILINE)
    assert re.search(r"^# mmr: not set\s+# default: no MMR re-ranking$", out, re.MULTILINE)
    policy = out[out.index("[policy]") :].split("\n[", 1)[0]
    assert "epsilon" not in policy and "alpha" not in policy  # other policies' parameters: not shown
    copy = tmp_path / "copy.toml"
    copy.write_text(out)
    assert load_settings(copy).model_dump() == load_settings(cfg, store_url="memory://").model_dump()


def test_the_deprecated_window_shows_as_the_join_window(tmp_path: Path) -> None:
    cfg = tmp_path / "old.toml"
    cfg.write_text('[policy]\nname = "linucb"\nfeedback_window_s = 90\n')
    with pytest.warns(FutureWarning, match="feedback_window_s is deprecated"):
        out = run("--config", str(cfg))
    assert source(out, "join", "window_s") == (
        "90.0",
        f"file {cfg} as [policy] feedback_window_s (deprecated)",
    )
    assert "feedback_window_s =" not in out  # printed once, where it now lives


def test_a_store_password_is_masked() -> None:
    out = run("--store", "postgresql://rec:s3cret@db.example:5432/events")
    assert "s3cret" not in out
    assert source(out, "", "store_url") == ('"postgresql://rec:***@db.example:5432/events"', "argument")


def test_a_bad_configuration_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "typo.toml"
    cfg.write_text("[gate]\npublish_event = 10\n")
    result = CliRunner().invoke(app, ["config", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "unknown key 'publish_event' (did you mean 'publish_events'?)" in result.output
