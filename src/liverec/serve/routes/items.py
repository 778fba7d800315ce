"""The item catalog: upsert one or many, read one, list them paged, and similar items. Upserts run on
the engine's writer thread (`Engine.upsert_items_async`), reads of the store on a worker thread: the
store may be busy with another write's fsync."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError

from liverec.core.schema import Id, Item, ItemIn, error_message
from liverec.serve.deps import READ, WRITE, EngineDep, SettingsDep, read_json
from liverec.serve.engine import Engine
from liverec.serve.schemas import (
    ItemPage,
    ItemsUpserted,
    ItemUpserted,
    RecommendedItem,
    SimilarOut,
    check_k,
    json_body,
    json_limits,
    responses,
)
from liverec.store.base import StoreError

router = APIRouter(prefix="/v1/items", tags=["items"])
ItemId = Annotated[Id, Path()]  # the one id rule (`core.schema.Id`), as in bodies
ITEM_LIST = TypeAdapter(list[Item])
ITEM_IN_SCHEMA = {"$ref": "#/components/schemas/ItemIn"}
BATCH_SCHEMA = {
    "type": "object",
    "required": ["items"],
    "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}}},
}


def _errors(exc: ValidationError, indexed: bool) -> list[dict[str, Any]]:
    by_index: dict[int, list[dict[str, str]]] = {}
    for err in exc.errors(include_url=False, include_input=False):
        loc = err["loc"]
        index, rest = (int(loc[0]), loc[1:]) if indexed else (0, loc)
        field = ".".join(str(p) for p in rest) or "(item)"
        by_index.setdefault(index, []).append({"field": field, "msg": error_message(err)})
    return [{"index": i, "errors": e} for i, e in sorted(by_index.items())]


async def _upsert(engine: Engine, items: list[Item]) -> int:
    try:
        return await engine.upsert_items_async(items)
    except StoreError as exc:
        raise HTTPException(503, f"store unavailable, nothing was written: {exc}") from None


@router.put(
    "/{item_id}",
    dependencies=[WRITE],
    response_model=ItemUpserted,
    responses=responses(400, 413, 415, 422, 503),
    openapi_extra=json_body(ITEM_IN_SCHEMA),
    summary="Create or replace one item",
)
async def put_item(
    item_id: ItemId, request: Request, engine: EngineDep, settings: SettingsDep
) -> ItemUpserted | JSONResponse:
    # parsed by hand like every other body: strict JSON (NaN is a 400, not a silent null) and
    # errors in the same {"detail", "errors"} shape
    body = await read_json(request)
    try:
        context = json_limits(settings)
        full = ItemIn.model_validate(body, context=context).with_id(item_id, context["limits"])
    except ValidationError as exc:
        detail = "the item is invalid; nothing was written"
        return JSONResponse({"detail": detail, "errors": _errors(exc, indexed=False)}, status_code=422)
    created = await _upsert(engine, [full])
    return ItemUpserted(item_id=full.item_id, created=bool(created))


@router.post(
    "",
    dependencies=[WRITE],
    response_model=ItemsUpserted,
    responses=responses(400, 413, 415, 422, 503),
    openapi_extra=json_body(BATCH_SCHEMA),
    summary="Create or replace a batch of items {'items': [...]}; all-or-nothing",
)
async def post_items(
    request: Request, engine: EngineDep, settings: SettingsDep
) -> ItemsUpserted | JSONResponse:
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("items"), list) or len(body) != 1:
        return JSONResponse({"detail": "expected {'items': [...]}", "errors": []}, status_code=422)
    if len(body["items"]) > settings.server.max_batch_events:
        raise HTTPException(413, f"at most {settings.server.max_batch_events} items per batch")
    try:
        items = ITEM_LIST.validate_python(body["items"], context=json_limits(settings))
    except ValidationError as exc:
        errors = _errors(exc, indexed=True)
        detail = f"{len(errors)} of {len(body['items'])} items are invalid; nothing was written"
        return JSONResponse({"detail": detail, "errors": errors}, status_code=422)
    created = await _upsert(engine, items)
    return ItemsUpserted(upserted=len(items), created=created)


MAX_PAGE = 500  # items per page of GET /v1/items: one store read each


def catalog_page(engine: Engine, after: str | None, limit: int) -> ItemPage | None:
    """Up to ``limit`` items after the item ``after``, in creation order (rows never move, so a cursor
    stays valid while items are added); None for an unknown cursor. Blocks on the store."""
    start = 0
    if after is not None:
        row = engine.catalog.row(after)
        if row is None:
            return None
        start = row + 1
    ids = engine.catalog.ids[start : start + limit + 1]  # one more: is there a next page?
    page = ids[:limit]
    items = [item for i in page if (item := engine.get_item(i)) is not None]
    return ItemPage(items=items, next=page[-1] if len(ids) > limit else None)


@router.get(
    "",
    dependencies=[READ],
    response_model=ItemPage,
    responses=responses(422),
    summary="The catalog, paged in creation order: pass the response's `next` as `after`",
)
async def list_items(
    engine: EngineDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="items per page")] = 100,
    after: Annotated[
        str | None,
        Query(min_length=1, max_length=256, description="cursor: the `next` of the previous page"),
    ] = None,
) -> ItemPage:
    page = await asyncio.to_thread(catalog_page, engine, after, limit)
    if page is None:
        raise HTTPException(422, f"unknown cursor after={after!r}: pass the `next` of a previous page")
    return page


@router.get(
    "/{item_id}",
    dependencies=[READ],
    response_model=Item,
    responses=responses(404),
    summary="One catalog item",
)
async def get_item(item_id: ItemId, engine: EngineDep) -> Item:
    item = await asyncio.to_thread(engine.get_item, item_id)
    if item is None:
        raise HTTPException(404, f"no item {item_id!r}")
    return item


@router.get(
    "/{item_id}/similar",
    dependencies=[READ],
    response_model=SimilarOut,
    responses=responses(404, 422),
    summary="Items most similar to this one",
)
async def similar(
    item_id: ItemId, engine: EngineDep, settings: SettingsDep, k: Annotated[int, Query(ge=1)] = 10
) -> SimilarOut:
    check_k(k, settings.server.max_k)
    found = engine.similar(item_id, k)
    if found is None:
        raise HTTPException(404, f"no item {item_id!r}")
    return SimilarOut(
        item_id=item_id,
        model=engine.model_version,
        items=[RecommendedItem(item_id=i.item_id, score=i.score, filler=i.filler) for i in found],
    )
