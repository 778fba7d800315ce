"""`liverec models list|promote|rollback`: inspect and steer the model registry."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from liverec.cli.common import ConfigOpt, app, console, fail, settings_from

if TYPE_CHECKING:
    from liverec.registry.registry import ModelRegistry

models_app = typer.Typer(help="Registered model versions.", no_args_is_help=True)
app.add_typer(models_app, name="models")


def _registry(config: ConfigOpt) -> ModelRegistry:
    from liverec.registry.registry import ModelRegistry

    settings = settings_from(config)
    return ModelRegistry(settings.registry_path)


@models_app.command("list")
def list_(config: ConfigOpt = None) -> None:
    """Every version with its validation/test metrics; the live one is marked."""
    reg = _registry(config)
    live = reg.live()
    table = Table("version", "live", "created", "parent", "val ndcg@10", "test ndcg@10", "items")
    for v in reg.list_versions():
        meta = reg.meta(v)
        m = meta.get("metrics", {})
        table.add_row(
            v,
            "*" if v == live else "",
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(meta.get("created_at", 0))),
            str(meta.get("parent") or ""),
            f"{m.get('val', {}).get('ndcg@10', float('nan')):.4f}",
            f"{m.get('test', {}).get('ndcg@10', float('nan')):.4f}",
            str(meta.get("config", {}).get("n_items", "")),
        )
    console.print(table)
    if live is None:
        console.print("no live version: train one with `liverec train`")


@models_app.command()
def promote(version: Annotated[str, typer.Argument(help="e.g. v000003")], config: ConfigOpt = None) -> None:
    """Make a version live (the server hot-reloads it)."""
    from liverec.registry.registry import RegistryError

    reg = _registry(config)
    try:
        reg.promote(version)
    except RegistryError as exc:
        fail(str(exc))
    console.print(f"{version} is live")


@models_app.command()
def rollback(config: ConfigOpt = None) -> None:
    """Make the previously live version live again."""
    from liverec.registry.registry import RegistryError

    reg = _registry(config)
    try:
        version = reg.rollback()
    except RegistryError as exc:
        fail(str(exc))
        return
    console.print(f"rolled back: {version} is live")
