"""Model versions over HTTP, admin only: list, promote, roll back. They mirror ``liverec models
list|promote|rollback`` on the same registry; the server's watcher swaps a newly live version in
within ``[server] reload_poll_s``. Registry files are read and fsynced on a worker thread."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path

from liverec.registry.registry import ModelRegistry, RegistryError
from liverec.serve.deps import ADMIN, EngineDep
from liverec.serve.schemas import ErrorDetail, ModelLive, ModelVersion, ModelVersions

router = APIRouter(prefix="/v1/models", tags=["models"], dependencies=[ADMIN])
Version = Annotated[str, Path(pattern=r"^v[0-9]{1,12}$", description="e.g. v000003")]
Responses = dict[int | str, dict[str, Any]]
NOT_FOUND: Responses = {404: {"model": ErrorDetail, "description": "No such version"}}
CONFLICT: Responses = {409: {"model": ErrorDetail, "description": "The registry cannot do it (see detail)"}}


def _versions(reg: ModelRegistry, served: str) -> ModelVersions:
    live = reg.live()
    out = []
    for v in reg.list_versions():
        try:
            meta = reg.meta(v)
        except RegistryError:
            meta = {}  # unreadable: still listed, without detail
        out.append(
            ModelVersion(
                version=v,
                live=v == live,
                created_at=meta.get("created_at"),
                parent=meta.get("parent"),
                metrics=meta.get("metrics") or {},
                n_items=(meta.get("config") or {}).get("n_items"),
            )
        )
    return ModelVersions(live=live, served=served, history=reg.history(), versions=out)


@router.get("", response_model=ModelVersions, summary="Every registered model version; the live one marked")
async def list_versions(engine: EngineDep) -> ModelVersions:
    return await asyncio.to_thread(_versions, engine.registry, engine.model_version)


def _promote(reg: ModelRegistry, version: str) -> ModelLive:
    if version not in reg.list_versions():
        raise HTTPException(404, f"no model version {version!r}; GET /v1/models lists them")
    previous = reg.live()
    try:
        reg.promote(version)
    except RegistryError as exc:
        raise HTTPException(409, f"cannot promote {version}: {exc}") from None
    return ModelLive(live=version, previous=previous)


@router.post(
    "/{version}/promote",
    response_model=ModelLive,
    responses={**NOT_FOUND, **CONFLICT},
    summary="Make a version live (the server hot-reloads it)",
)
async def promote(version: Version, engine: EngineDep) -> ModelLive:
    return await asyncio.to_thread(_promote, engine.registry, version)


def _rollback(reg: ModelRegistry) -> ModelLive:
    previous = reg.live()
    try:
        version = reg.rollback()
    except RegistryError as exc:
        raise HTTPException(409, f"cannot roll back: {exc}") from None
    return ModelLive(live=version, previous=previous)


@router.post(
    "/rollback",
    response_model=ModelLive,
    responses=CONFLICT,
    summary="Make the previously live version live again",
)
async def rollback(engine: EngineDep) -> ModelLive:
    return await asyncio.to_thread(_rollback, engine.registry)
