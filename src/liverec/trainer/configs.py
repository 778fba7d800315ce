"""Dataclass configs from the free-form ``[online]``, ``[gate]``, ``[filters]`` settings tables,
with a clear error for unknown keys (a typo must not be silently ignored)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def from_table(cls: type[T], table: dict[str, Any], section: str, **overrides: Any) -> T:
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    values = {**table, **{k: v for k, v in overrides.items() if v is not None}}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"unknown [{section}] setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return cls(**values)
