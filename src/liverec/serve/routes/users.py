"""Per-user resources: recommendations (which also logs impressions) and deletion. Both writes go
through the engine's writer thread (`Engine.ingest_async`, `Engine.delete_user_async`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query

from liverec.serve.deps import EngineDep, MetricsDep, SettingsDep
from liverec.serve.engine import impressions
from liverec.serve.schemas import RecommendationOut, RecommendedItem, UserDeleted, responses
from liverec.store.base import StoreError

router = APIRouter(prefix="/v1/users", tags=["users"])
UserId = Annotated[str, Path(min_length=1, max_length=256, pattern=r"^[^\x00]*$")]  # no NUL, as in Event


@router.get(
    "/{user_id}/recommendations",
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
) -> RecommendationOut:
    if k > settings.server.max_k:
        raise HTTPException(422, f"k={k} is above the limit of {settings.server.max_k}")
    rec = engine.recommend(user_id, k, exclude_seen, log_impressions=False)
    try:  # the served list is durable in the log before the client sees it
        await engine.ingest_async(impressions(user_id, rec))
    except StoreError as exc:
        raise HTTPException(503, f"store unavailable: {exc}") from None
    metrics.impressions.inc(len(rec.items))
    return RecommendationOut(
        request_id=rec.request_id,
        model=rec.model,
        policy=rec.policy,
        items=[RecommendedItem(item_id=i.item_id, score=i.score, propensity=i.propensity) for i in rec.items],
    )


@router.delete(
    "/{user_id}",
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
