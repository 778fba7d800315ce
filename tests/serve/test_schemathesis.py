"""The OpenAPI document tells the truth (issue 25, item 3): a seeded schemathesis run over every
operation, against the ASGI app on a real SQLite store, finds no server error and no response
that breaks the declared schema, status codes, content types or headers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from liverec.serve.app import create_app
from liverec.serve.engine import Engine
from support.api import make_settings

CHECKS = (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
)
PER_OPERATION = 110  # x 10 operations: >= 1,000 cases, about a minute on 2 busy cores
SEED = 25


@pytest.fixture
def app(tmp_path: Path) -> Iterator[FastAPI]:
    settings = make_settings(tmp_path / "data", max_body_bytes=256 * 1024)
    engine = Engine(settings).start(models=False)
    app = create_app(settings, engine=engine)
    app.state.engine = engine  # what the lifespan does; the ASGI calls below run none
    try:
        yield app
    finally:
        engine.close()


def runner(op: Any, label: str, cases: Counter[str], failures: list[str], statuses: Counter[int]) -> Any:
    """A seeded hypothesis test of one operation that counts its cases and collects failures."""

    @hypothesis.seed(SEED)
    @hypothesis.settings(
        max_examples=PER_OPERATION,
        phases=[Phase.explicit, Phase.generate],
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=op.as_strategy())
    def run(case: Any) -> None:
        cases[label] += 1
        try:
            response = case.call()
            statuses[response.status_code] += 1
            case.validate_response(response, checks=CHECKS)
        except Exception as exc:  # collect every failure, then report them all
            failures.append(f"{label}: {type(exc).__name__}: {str(exc)[:600]}")

    return run


def test_schemathesis_finds_no_server_error_and_no_schema_violation(app: FastAPI) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    cases: Counter[str] = Counter()
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    for op in operations:
        runner(op, f"{op.method.upper()} {op.path}", cases, failures, statuses)()
    total = sum(cases.values())
    print(f"\nschemathesis: {total} cases over {len(operations)} operations, {len(failures)} failures")
    print(f"  statuses: {dict(sorted(statuses.items()))}")
    for label, n in sorted(cases.items()):
        print(f"  {n:5d}  {label}")
    assert len(operations) >= 10 and set(cases) == {f"{o.method.upper()} {o.path}" for o in operations}
    assert total >= 1000
    assert not failures, "\n".join(failures[:20])
    assert statuses[500] == 0 and sum(n for code, n in statuses.items() if code < 300) > 0
