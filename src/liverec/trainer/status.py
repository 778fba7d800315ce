"""The online learner's status file: why a new model version was (not) published yet.

The learner (`liverec learn`) is its own process, so it writes a small JSON file into the registry
folder (`trainer/status.json`, replaced atomically) after every page and decision; the server's
`/healthz` admin detail reads it (`Engine.learner_status`) and `liverec learn` prints the same words.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

STATUS_FILE = "status.json"


def status_path(registry_root: Path) -> Path:
    return Path(registry_root) / "trainer" / STATUS_FILE


def write_status(registry_root: Path, status: dict[str, Any]) -> None:
    """Replace the status file atomically (a reader sees the old or the new one, never half)."""
    path = status_path(registry_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{STATUS_FILE}.{uuid.uuid4().hex}")
    tmp.write_text(json.dumps(status, sort_keys=True))
    os.replace(tmp, path)


def read_status(registry_root: Path, live: str | None = None) -> dict[str, Any]:
    """The learner's last status with its age (``age_s``), or ``{"running": False, "why": ...}`` when
    no learner has written one. ``live``: the registry's live version, to say what is served."""
    path = status_path(registry_root)
    try:
        status: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        why = "no online learner has run: start `liverec learn --follow`"
        if live is None:
            why = "no model version yet: train one with `liverec train`, then " + why.split(": ", 1)[1]
        return {"running": False, "live": live, "why": why}
    except (OSError, ValueError) as exc:
        return {"running": False, "live": live, "why": f"unreadable learner status {path.name}: {exc}"}
    status["age_s"] = round(time.time() - float(status.get("at", 0.0)), 1)
    return status
