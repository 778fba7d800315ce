"""Per-user resources: recommendations (which also logs impressions), the live history, and
deletion. Both writes go through the engine's writer thread (`Engine.ingest_async`,
`Engine.delete_user_async`)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query

from liverec.core.features import event_type_of
from liverec.core.schema import Id
from liverec.serve.deps import ADMIN, READ, EngineDep, MetricsDep, SettingsDep
from liverec.serve.engine import Engine
from liverec.serve.recommender import impressions
from liverec.serve.schemas import (
    ITEM_FIELDS,
    Engagement,
    ExplanationOut,
    HistoryOut,
    RecommendationOut,
    RecommendedItemFields,
    UserDeleted,
    check_k,
    responses,
)
from liverec.store.base import StoreError

router = APIRouter(prefix="/v1/users", tags=["users"])
UserId = Annotated[Id, Path()]  # the one id rule (`core.schema.Id`), as in events


@router.get(
    "/{user_id}/recommendations",
    dependencies=[READ],
    response_model=RecommendationOut,
    responses=responses(422, 503),
    summary="Top-k items for a user from their live sequence; the list is logged as impressions",
)
async def recommendations(
    user_id: UserId,
    engine: EngineDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    k: Annotated[int, Query(ge=1, description="list length")] = 10,
    exclude_seen: bool = True,
    fields: Annotated[
        str | None,
        Query(
            max_length=256,
            description="comma-separated catalog fields to return inline with each item: "
            + ", ".join(ITEM_FIELDS),
            openapi_examples={"title and tags": {"value": "title,tags"}},
        ),
    ] = None,
    explain: Annotated[bool, Query(description=EXPLAIN_HELP, openapi_examples=EXPLAIN_EXAMPLES)] = False,
) -> RecommendationOut:
    check_k(k, settings.server.max_k)
    wanted = item_fields(fields)
    rec = engine.recommend(user_id, k, exclude_seen, log_impressions=False, explain=explain)
    # the served list (its first max_logged_impressions positions) is durable before the client sees it
    logged = impressions(user_id, rec, cap=settings.server.max_logged_impressions)
    try:
        await engine.ingest_async(logged)
    except StoreError as exc:
        raise HTTPException(503, f"store unavailable: {exc}") from None
    metrics.impressions.inc(len(logged))
    inline = await asyncio.to_thread(catalog_fields, engine, [i.item_id for i in rec.items], wanted)
    why = explanations(rec.explanations, len(rec.items))
    return RecommendationOut(
        request_id=rec.request_id,
        model=rec.model,
        policy=rec.policy,
        items=[
            RecommendedItemFields(
                item_id=i.item_id,
                score=i.score,
                propensity=i.propensity,
                filler=i.filler,
                explanation=why[j],
                **inline.get(i.item_id, {}),
            )
            for j, i in enumerate(rec.items)
        ],
    )


EXPLAIN_HELP = (
    "true: each item carries an explanation: the history items whose removal from the live sequence "
    "lowers its score most, its nearest history item in text, and the serving rules that applied"
)
EXPLAIN_EXAMPLES = {"explained": {"value": True}}


def explanations(found: Sequence[object] | None, n: int) -> list[ExplanationOut | None]:
    """The response form of an engine list's explanations; None per item when not asked for."""
    if found is None:
        return [None] * n
    return [ExplanationOut.model_validate(e) for e in found]


def item_fields(fields: str | None) -> tuple[str, ...]:
    """The ``?fields=`` names, checked: an unknown one is a 422 that lists the allowed ones."""
    wanted = tuple(dict.fromkeys(f.strip() for f in (fields or "").split(",") if f.strip()))
    unknown = [f for f in wanted if f not in ITEM_FIELDS]
    if unknown:
        raise HTTPException(
            422,
            f"unknown field(s) {', '.join(map(repr, unknown))} in fields=; allowed: {', '.join(ITEM_FIELDS)}",
        )
    return wanted


def catalog_fields(engine: Engine, item_ids: list[str], wanted: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """item id -> the ``wanted`` catalog fields (one store read per item; none when nothing is wanted).
    Blocks on the store."""
    if not wanted:
        return {}
    out = {}
    for item_id in item_ids:
        item = engine.get_item(item_id)
        if item is not None:
            out[item_id] = item.model_dump(include=set(wanted))
    return out


@router.get(
    "/{user_id}/history",
    dependencies=[READ],
    response_model=HistoryOut,
    responses=responses(422),
    summary="The user's live sequence: what the model reads when it ranks for them",
)
async def history(user_id: UserId, engine: EngineDep) -> HistoryOut:
    seq, seen = engine.history(user_id)
    items = []
    for item_id, ts, type_id in seq:
        kind, stars = event_type_of(type_id)
        items.append(Engagement(item_id=item_id, timestamp=ts, type=kind.value, stars=stars))
    return HistoryOut(user_id=user_id, items=items, seen=seen)


@router.delete(
    "/{user_id}",
    dependencies=[ADMIN],
    response_model=UserDeleted,
    responses=responses(422, 503),
    summary="Forget a user: remove their events from the log and their live state",
)
async def delete_user(user_id: UserId, engine: EngineDep) -> UserDeleted:
    try:
        counts = await engine.delete_user_async(user_id)
    except StoreError as exc:
        raise HTTPException(503, f"store unavailable, nothing was deleted: {exc}") from None
    return UserDeleted(**counts)
