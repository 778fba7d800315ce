"""`liverec config`: the settings in effect, as TOML, each value followed by where it came from.

The output is itself a valid settings file (store passwords masked), so "what is this server
running with?" and "why is this value not what I wrote?" have one answer. Policy parameters left
unset show their policy's default, commented out, so the file still reads back the same.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any

import typer

from liverec.cli.common import ConfigOpt, StoreOpt, app, settings_from

HEADER = [
    "# liverec settings in effect; after each value, where it came from",
    "# (precedence: argument > env LIVEREC_* > file > default)",
]


@app.command("config")
def show_config(config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """Print the effective settings as TOML, each value with its source (default, file, env or
    argument). A password in store_url is masked."""
    from liverec.policy.registry import policy_defaults
    from liverec.settings import value_sources

    overrides = {"store_url": store} if store else {}
    settings = settings_from(config, **overrides)
    sources = value_sources(config, **overrides)
    typer.echo(render(settings.model_dump(), sources, policy_defaults(settings.policy.name)))


def render(values: Mapping[str, Any], sources: Mapping[str, str], policy_defaults: Mapping[str, Any]) -> str:
    """``values`` (`Settings.model_dump()`) as annotated TOML; ``sources``: `value_sources`;
    ``policy_defaults``: the named policy's constructor defaults (shown for unset parameters)."""
    from liverec.settings import MMR_KEYS, POLICY_PARAMS, redact_url

    values = {**values, "store_url": redact_url(str(values["store_url"]))}
    if isinstance(values.get("auth"), Mapping):  # API keys as inline tables; a key itself never shown
        keys = [{k: v for k, v in key.items() if v is not None} for key in values["auth"].get("keys", [])]
        values["auth"] = {**values["auth"], "keys": keys}
    policy = dict(values.get("policy") or {})
    if policy:  # only the named policy's parameters; the unset ones as its defaults, commented
        every = {p for params in POLICY_PARAMS.values() for p in params} | set(MMR_KEYS)
        rows: dict[str, Any] = {k: v for k, v in policy.items() if k not in every}
        for key in POLICY_PARAMS[policy["name"]]:
            value = policy[key]
            rows[key] = value if value is not None else _Unset(policy_defaults.get(key), "policy default")
        for key in MMR_KEYS:
            rows[key] = policy[key] if policy[key] is not None else _Unset(None, "default: no MMR re-ranking")
        values["policy"] = rows
    return "\n".join([*HEADER, *_table("", values, sources)])


class _Unset:
    """A parameter left unset: shown commented out, with the default that applies."""

    def __init__(self, default: Any, note: str) -> None:
        self.default, self.note = default, note


def _table(prefix: str, values: Mapping[str, Any], sources: Mapping[str, str]) -> list[str]:
    scalars = {k: v for k, v in values.items() if not isinstance(v, Mapping)}
    lines: list[tuple[str, str]] = []  # (assignment, comment)
    for key, value in scalars.items():
        if isinstance(value, _Unset):
            shown = f"{key} = {_toml(value.default)}" if value.default is not None else f"{key}: not set"
            lines.append((f"# {shown}", value.note))
        elif value is None:
            lines.append((f"# {key}: not set", "default"))
        else:
            lines.append((f"{key} = {_toml(value)}", sources.get(prefix + key, "default")))
    width = max((len(a) for a, _ in lines), default=0)
    out = ([f"[{prefix[:-1]}]"] if prefix else []) + [f"{a.ljust(width)}  # {c}" for a, c in lines]
    for key, value in values.items():
        if isinstance(value, Mapping):
            out += ["", *_table(f"{prefix}{key}.", value, sources)]
    return out


def _toml(value: Any) -> str:
    """A scalar or list as a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        return '"' + "".join(_ESCAPES.get(c) or _control(c) for c in value) + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):  # an inline table
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    if hasattr(value, "get_secret_value"):  # a pydantic SecretStr: an API key is never printed
        return '"***"'
    raise TypeError(f"no TOML form for a {type(value).__name__}: {value!r}")


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b", "\f": "\\f"}


def _control(c: str) -> str:
    return f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else c
