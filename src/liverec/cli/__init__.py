"""The `liverec` command line. Each module registers its commands on `app`.

Heavy modules (torch, numpy, fastapi, the engine, the store ...) are imported inside the command
functions, never at module level: `liverec --help` and `--version` import only this package, typer
and rich, and answer fast. tests/cli/test_app.py checks that.
"""

from __future__ import annotations

from liverec.cli import (  # noqa: F401  (registers commands)
    config,
    data,
    demo,
    evaluate,
    learn,
    models,
    serve,
    simulate,
    train,
)
from liverec.cli.common import app

__all__ = ["app"]
