"""Search: ``GET /v1/search?q=...`` and ``POST /v1/search`` (the same, plus filters). The list is logged
as impressions with ``surface = "search"`` before the client sees it, as recommendations are; clicks
that carry its ``request_id`` (and ``position``) teach the ranker (see docs/search.md)."""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from liverec.core.schema import Id, Tag
from liverec.serve.deps import READ, EngineDep, MetricsDep, SettingsDep, read_json
from liverec.serve.engine import Engine
from liverec.serve.metrics import Metrics
from liverec.serve.routes.users import catalog_fields, explanations, item_fields
from liverec.serve.schemas import ITEM_FIELDS, SearchedItem, SearchOut, check_k, json_body, responses
from liverec.serve.search import SearchFilters, search_impressions
from liverec.settings import Settings
from liverec.store.base import StoreError

router = APIRouter(prefix="/v1", tags=["search"])
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
FIELDS_HELP = "comma-separated catalog fields to return inline with each item: " + ", ".join(ITEM_FIELDS)
EXPLAIN_HELP = (
    "true: each result carries an explanation: the query terms it matched, the semantic match and "
    "each ranker feature's contribution"
)


class FiltersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tags: list[Tag] = Field(default_factory=list, max_length=64, description="items must carry every tag")
    available: bool | None = Field(
        True, description="true: available items only (default); false: unavailable only; null: both"
    )


class SearchIn(BaseModel):
    """Body of ``POST /v1/search``."""

    model_config = ConfigDict(extra="forbid")

    q: str = Field(description="the query text", examples=["space adventure"])
    user_id: Id | None = Field(None, description="rank for this user; absent: anonymous search")
    k: int = Field(10, ge=1, description="how many results")
    filters: FiltersIn = Field(default_factory=FiltersIn, description="which items may be returned")
    fields: str | None = Field(None, max_length=256, description=FIELDS_HELP)
    explain: bool = Field(False, strict=True, description=EXPLAIN_HELP, examples=[True])


def check_query(q: str, max_chars: int, where: str) -> str:
    """The query stripped of surrounding whitespace, or a 422: empty, too long, control characters."""
    query = q.strip()
    msg = None
    if not query:
        msg = "the query is empty"
    elif len(query) > max_chars:
        msg = f"the query is {len(query)} characters; at most {max_chars}"
    elif CONTROL.search(query):
        msg = "the query contains control characters"
    if msg:
        raise RequestValidationError([{"loc": (where, "q"), "msg": msg, "type": "value_error"}])
    return query


@router.get(
    "/search",
    dependencies=[READ],
    response_model=SearchOut,
    responses=responses(422, 503),
    summary="Search the catalog for a query, ranked for the user; the list is logged as impressions",
)
async def search_get(
    engine: EngineDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    q: Annotated[str, Query(description="the query text")],
    user_id: Annotated[Id | None, Query(description="rank for this user; absent: anonymous")] = None,
    k: Annotated[int, Query(ge=1, description="how many results")] = 10,
    fields: Annotated[str | None, Query(max_length=256, description=FIELDS_HELP)] = None,
    explain: Annotated[
        bool, Query(description=EXPLAIN_HELP, openapi_examples={"explained": {"value": True}})
    ] = False,
) -> SearchOut:
    query = check_query(q, settings.search.max_query_chars, "query")
    return await serve(engine, settings, metrics, query, user_id, k, SearchFilters(), fields, explain)


@router.post(
    "/search",
    dependencies=[READ],
    response_model=SearchOut,
    responses=responses(400, 413, 415, 422, 503),
    openapi_extra=json_body({"$ref": "#/components/schemas/SearchIn"}),
    summary="Search with filters (tags, availability); the list is logged as impressions",
)
async def search_post(
    request: Request, engine: EngineDep, settings: SettingsDep, metrics: MetricsDep
) -> SearchOut:
    body = await read_json(request)
    try:
        req = SearchIn.model_validate(body)
    except ValidationError as exc:
        errors: Any = exc.errors(include_url=False, include_input=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None
    query = check_query(req.q, settings.search.max_query_chars, "body")
    filters = SearchFilters(tuple(req.filters.tags), req.filters.available)
    return await serve(engine, settings, metrics, query, req.user_id, req.k, filters, req.fields, req.explain)


async def serve(
    engine: Engine,
    settings: Settings,
    metrics: Metrics,
    query: str,
    user_id: str | None,
    k: int,
    filters: SearchFilters,
    fields: str | None,
    explain: bool = False,
) -> SearchOut:
    check_k(k, settings.server.max_k)
    wanted = item_fields(fields)
    if engine.search is None:
        raise HTTPException(404, "search is disabled on this server ([search] enabled = false)")
    # a new query is encoded off the event loop (~10 ms); the rest is a few ms of numpy, run here
    # as recommendations are (a thread hop per request costs more than it saves)
    vec = engine.search.cached_vector(query)
    if vec is None:
        vec = await asyncio.to_thread(engine.search.query_vector, query)
    result = engine.search_items(query, user_id, k, filters, False, query_vector=vec, explain=explain)
    logged = search_impressions(user_id, result, cap=settings.server.max_logged_impressions)
    try:
        await engine.ingest_async(logged)  # durable before the client sees the list
    except StoreError as exc:
        raise HTTPException(503, f"store unavailable: {exc}") from None
    metrics.impressions.inc(len(logged))
    ids = [i.item_id for i in result.items]
    inline = await asyncio.to_thread(catalog_fields, engine, ids, wanted) if wanted else {}
    why = explanations(result.explanations, len(result.items))
    return SearchOut(
        request_id=result.request_id,
        query=result.query,
        model=result.model,
        policy=result.policy,
        items=[
            SearchedItem(
                item_id=i.item_id,
                score=i.score,
                propensity=i.propensity,
                position=p,
                explanation=why[p],
                **inline.get(i.item_id, {}),
            )
            for p, i in enumerate(result.items)
        ],
    )
