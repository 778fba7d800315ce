"""The `liverec` command line. Each module registers its commands on `app`."""

from __future__ import annotations

from liverec.cli import (  # noqa: F401  (registers commands)
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
