"""The `liverec` app itself: `--version`, and `--help` everywhere without the heavy imports (torch,
numpy, the web stack, the engine): those load only inside the commands that need them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import typer
from typer.testing import CliRunner

from liverec.cli import app

HEAVY = {
    "torch",
    "numpy",
    "scipy",
    "pandas",
    "sentence_transformers",
    "transformers",
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "pydantic_settings",  # (not pydantic: typer itself builds its option parsers with it)
    "psycopg",
    "redis",
}
LIGHT_LIVEREC = {"liverec", "liverec.cli"}  # liverec itself and the cli package; nothing below it

# Prints, last, the heavy modules loaded by `import liverec.cli` plus the given calls of the app.
PROBE = """
import json, sys
from liverec.cli import app
for args in json.loads(sys.argv[1]):
    try:
        app(args, prog_name="liverec")
    except SystemExit:
        pass
heavy = {heavy!r}
loaded = [m for m in sys.modules if m.split(".")[0] in heavy]
loaded += [m for m in sys.modules if m.startswith("liverec.") and not m.startswith("liverec.cli.")]
print(json.dumps(sorted(set(loaded) - {light!r})))
"""


def probe(*calls: list[str]) -> tuple[list[str], str]:
    """(heavy modules loaded, all stdout) of a fresh interpreter making these calls."""
    code = PROBE.format(heavy=HEAVY, light=LIGHT_LIVEREC)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "100"}
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(list(calls))],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    *out, last = done.stdout.rstrip("\n").split("\n")
    return json.loads(last), "\n".join(out)


def command_paths(group: Any, prefix: tuple[str, ...] = ()) -> list[list[str]]:
    """Every command and sub-group as the arguments that name it: [["serve"], ["evaluate", "ope"], ...]."""
    paths = []
    for name, cmd in group.commands.items():
        paths.append([*prefix, name])
        if hasattr(cmd, "commands"):  # a group
            paths.extend(command_paths(cmd, (*prefix, name)))
    return paths


def test_importing_the_cli_loads_no_heavy_module() -> None:
    loaded, _ = probe()
    assert loaded == []


def test_help_of_every_command_loads_no_heavy_module() -> None:
    paths = command_paths(typer.main.get_group(app))
    assert ["serve"] in paths and ["evaluate", "prequential"] in paths and ["models", "list"] in paths
    loaded, out = probe(["--help"], ["--version"], *([*p, "--help"] for p in paths))
    assert loaded == []
    assert out.count("Usage: liverec") == 1 + len(paths)  # every help page was printed
    assert "Usage: liverec evaluate prequential [OPTIONS]" in out


def test_version_prints_the_installed_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"liverec {version('liverec')}\n"


def test_version_from_python_dash_m() -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "liverec", "--version"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"liverec {version('liverec')}\n"


def test_package_version_is_the_installed_one() -> None:
    import liverec

    assert liverec.__version__ == version("liverec")


def test_top_level_help_lists_the_commands_and_version() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0
    for name in ("import", "demo", "learn", "serve", "simulate", "train", "evaluate", "models", "--version"):
        assert name in result.output


def test_no_arguments_shows_help() -> None:
    result = CliRunner().invoke(app, [])
    assert "Usage:" in result.output


def test_demo_default_data_dir_is_the_simulators() -> None:
    from liverec.sim.demo import DEFAULT_DATA_DIR

    demo = typer.main.get_group(app).commands["demo"]
    (data_dir,) = (p for p in demo.params if p.name == "data_dir")
    assert data_dir.default == DEFAULT_DATA_DIR


def test_read_dataset_defaults_are_the_loaders(tmp_path: Path) -> None:
    from liverec.cli.data import Format, read_dataset
    from liverec.events.datasets import load_csv

    log = tmp_path / "log.csv"
    log.write_text("user_id,item_id\nu1,a\nu1,b\nu2,a\n")

    def rows(events: list[Any]) -> list[tuple[str, str, str, str]]:  # no time column: stamped "now"
        return [(e.event_id, e.user_id, e.item_id, e.type) for e in events]

    got, want = read_dataset(log, Format.csv), load_csv(log)
    assert rows(got.events) == rows(want.events) and len(got.events) == 3
    assert got.items == want.items
