"""Response bodies of the HTTP API (request bodies are the `Event` and `Item` models)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from liverec.core.schema import Event


class ErrorDetail(BaseModel):
    detail: str


class FieldError(BaseModel):
    field: str
    msg: str


class EventErrors(BaseModel):
    index: int = Field(description="position of the event in the request (0 for a single event)")
    errors: list[FieldError]


class BatchRejected(BaseModel):
    detail: str
    errors: list[EventErrors]


class EventBatch(BaseModel):
    events: list[Event]


class EventsAccepted(BaseModel):
    accepted: int
    duplicates: int


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    propensity: float = 1.0


class RecommendationOut(BaseModel):
    request_id: str
    model: str
    policy: str
    items: list[RecommendedItem]


class SimilarOut(BaseModel):
    item_id: str
    model: str
    items: list[RecommendedItem]


class ItemUpserted(BaseModel):
    item_id: str
    created: bool


class ItemsUpserted(BaseModel):
    upserted: int
    created: int


class UserDeleted(BaseModel):
    events: int = Field(description="events removed from the log")
    user_state: int = Field(description="1 if live state was held for the user")


class Health(BaseModel):
    status: str
    model: str
    model_offset: int = Field(0, description="log offset the served weights have learned up to")
    log_offset: int = Field(0, description="last log offset applied to live state")
    events: int
    users: int
    items: int
    store: str
    extra: dict[str, Any] = Field(default_factory=dict)


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI declarations for the error codes a route can return."""
    table: dict[int, tuple[type[BaseModel], str]] = {
        400: (ErrorDetail, "Malformed JSON or an empty body"),
        404: (ErrorDetail, "Not found"),
        413: (ErrorDetail, "Body or batch too large"),
        422: (BatchRejected, "Invalid input; nothing was written"),
        503: (ErrorDetail, "The store is unavailable; nothing was written"),
    }
    return {c: {"model": table[c][0], "description": table[c][1]} for c in codes}


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    """`openapi_extra` declaring a required JSON body of ``schema``: the routes read their bodies by
    hand (strict JSON, one error shape), so FastAPI cannot infer it."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
