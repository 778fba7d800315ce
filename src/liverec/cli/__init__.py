"""The `liverec` command line. Each module registers its commands on `app`."""

from __future__ import annotations

from liverec.cli import data, demo, evaluate, learn, models, serve, train  # noqa: F401  (registers commands)
from liverec.cli.common import app

__all__ = ["app"]
