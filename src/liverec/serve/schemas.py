"""Response bodies of the HTTP API (request bodies are the `Event` and `Item` models)."""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from liverec.core.schema import Event, Item, JsonLimits
from liverec.settings import Settings


class ErrorDetail(BaseModel):
    detail: str


class FieldError(BaseModel):
    field: str
    msg: str


class EventErrors(BaseModel):
    index: int = Field(description="position of the event in the request (0 for a single event)")
    errors: list[FieldError]


class BatchRejected(BaseModel):
    """Every 422: a body, a path or a query parameter that fails validation."""

    detail: str
    errors: list[EventErrors] = Field(
        default_factory=list, description="per event or item (index), or index 0 for parameters"
    )


class EventBatch(BaseModel):
    events: list[Event] = Field(min_length=1, description="an empty batch is rejected (422)")


class EventsAccepted(BaseModel):
    accepted: int = Field(description="events appended to the log (durable) and applied", examples=[2])
    duplicates: int = Field(description="events whose event_id was already logged: not stored again")


class RecommendedItem(BaseModel):
    item_id: str = Field(description="catalog item id", examples=["242"])
    score: float = Field(description="the model's score; higher ranks first", examples=[3.71])
    propensity: float = Field(
        1.0, description="probability the policy shows this item here (for off-policy evaluation)"
    )
    filler: bool = Field(
        False,
        description="true when the model had no evidence for this item (score 0): it only pads the "
        "list to k (e.g. a catalog nobody has interacted with yet)",
    )


class CitedOut(BaseModel):
    """A history item that raised the recommended item's score."""

    model_config = ConfigDict(from_attributes=True)

    item_id: str = Field(description="the history item", examples=["1"])
    influence: float = Field(
        description="the recommended item's score minus its score with this history item left out of "
        "the live sequence, on the served model (leave-one-out: positive = it raised the score)",
        examples=[0.42],
    )
    position: int = Field(
        description="its position in the live sequence, 0 = oldest (as GET /v1/users/{id}/history lists it)",
        examples=[37],
    )


class ContentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    item_id: str = Field(description="the user's history item nearest to the recommended one in text")
    similarity: float = Field(description="cosine of the two items' MiniLM text vectors", examples=[0.71])


class ReasonOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    kind: str = Field(
        description="popular, trending, new_item_slot, exploration, fallback, filler, rules or business_rule",
        examples=["new_item_slot"],
    )
    detail: str = Field(description="what applied, for a person to read")


class SearchMatchOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    matched_terms: list[str] = Field(
        description="the query's index tokens found in the item's text", examples=[["space", "adventure"]]
    )
    semantic: float = Field(description="query-item cosine of the MiniLM vectors, as the ranker used it")
    features: dict[str, float] = Field(
        description="per ranker feature: its weight times its value (the score is their sum)"
    )


class ExplanationOut(BaseModel):
    """Why an item is in the list (with ``explain=true``); see docs/api.md."""

    model_config = ConfigDict(from_attributes=True)

    sentence: str = Field(
        description="one line for a person", examples=["Because you rated Toy Story (1995)."]
    )
    history: list[CitedOut] = Field(
        description="the user's history items (of the newest [explain] history) that raised the score "
        "most, largest influence first; at most [explain] max_cited, only positive ones"
    )
    content: ContentOut | None = Field(
        description="the history item most similar in text, when at least [explain] content_min_similarity"
    )
    reasons: list[ReasonOut] = Field(description="the serving rules that applied to this item")
    search: SearchMatchOut | None = Field(None, description="search only: how the item matched the query")


# the catalog fields `?fields=` can put inline in a recommendation (one call instead of 1 + k)
ITEM_FIELDS = ("title", "text", "tags", "attributes", "created_at", "available")


class RecommendedItemFields(RecommendedItem):
    """A recommended item with the catalog fields asked for in ``?fields=``; the others are absent."""

    title: str | None = Field(
        None, description="with fields=title: the item's title", examples=["Kolya (1996)"]
    )
    text: str | None = Field(None, description="with fields=text: the item's text")
    tags: list[str] | None = Field(
        None, description="with fields=tags: the item's tags", examples=[["Comedy"]]
    )
    attributes: dict[str, Any] | None = Field(
        None, description="with fields=attributes: free-form attributes"
    )
    created_at: float | None = Field(None, description="with fields=created_at: creation time, Unix seconds")
    available: bool | None = Field(None, description="with fields=available: whether it may be recommended")
    explanation: ExplanationOut | None = Field(
        None, description="with explain=true: why the item is in the list (absent otherwise)"
    )

    @model_serializer(mode="wrap")
    def _asked_only(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        """Fields not asked for are left out, not sent as null. (No return annotation: with none,
        pydantic keeps the model's own schema, descriptions included, for the response.)"""
        out = handler(self)
        for name in (*ITEM_FIELDS, "explanation"):
            if out.get(name) is None:
                out.pop(name, None)
        return out


class RecommendationOut(BaseModel):
    request_id: str = Field(description="id of this list; its impressions in the log carry it")
    model: str = Field(description="the model version that scored the list", examples=["v000003"])
    policy: str = Field(description="the exploration policy that picked the slate", examples=["greedy"])
    items: list[RecommendedItemFields] = Field(description="the list, best first")


class SearchedItem(RecommendedItemFields):
    """A search result: its position in the list is the position its impression logs."""

    position: int = Field(description="0-based position in the list (what a click may name)")


class SearchOut(BaseModel):
    request_id: str = Field(description="id of this list; send it with clicks on its results")
    query: str = Field(description="the query, as searched (surrounding whitespace removed)")
    model: str = Field(description="the model version behind the personal signal", examples=["v000003"])
    policy: str = Field(
        description="'shuffle' (ranked) or 'shuffle:random' (the top positions shown in random order)"
    )
    items: list[SearchedItem] = Field(description="the results, in display order")


class SimilarOut(BaseModel):
    item_id: str = Field(description="the item asked about")
    model: str = Field(description="the model version that scored the list")
    items: list[RecommendedItem] = Field(description="the most similar items, best first")


class ItemPage(BaseModel):
    """One page of the catalog, in creation order."""

    items: list[Item] = Field(description="up to `limit` items")
    next: str | None = Field(
        description="the cursor of the next page (pass it as `after`); null on the last page",
        examples=["243"],
    )


class ItemUpserted(BaseModel):
    item_id: str = Field(description="the item's id", examples=["new-1"])
    created: bool = Field(description="true if the item is new, false if it replaced one")


class ItemsUpserted(BaseModel):
    upserted: int = Field(description="items written (created or replaced)", examples=[2])
    created: int = Field(description="how many of them were new")


class Engagement(BaseModel):
    item_id: str = Field(description="catalog item id")
    timestamp: float = Field(description="when the engagement began, Unix seconds")
    type: str = Field(description="the event type that counts for it (the strongest so far)")
    stars: int | None = Field(None, description="for a rating: its stars, as the model reads them")


class HistoryOut(BaseModel):
    user_id: str = Field(description="the user asked about")
    items: list[Engagement] = Field(description="the live sequence the model reads, oldest first")
    seen: int = Field(description="items the user touched in any way (these are not recommended)")


class UserDeleted(BaseModel):
    events: int = Field(description="events removed from the log")
    user_state: int = Field(description="1 if live state was held for the user")


class Health(BaseModel):
    """Anyone gets status and version. An admin key (or open mode) also gets the detail below, and
    more keys added by parts of the server (``routes.health.admin_detail``); all admin-only fields
    are absent from an anonymous answer."""

    model_config = ConfigDict(extra="allow")

    status: str
    version: str = Field(description="liverec's version")
    model: str | None = Field(None, description="admin: the served model version")
    model_offset: int | None = Field(None, description="admin: log offset the served weights learned up to")
    log_offset: int | None = Field(None, description="admin: last log offset applied to live state")
    events: int | None = Field(None, description="admin: events applied to live state")
    users: int | None = Field(None, description="admin: users with live state")
    items: int | None = Field(None, description="admin: items in the catalog")
    store: str | None = Field(None, description="admin: the store URL, secrets masked")
    extra: dict[str, Any] | None = Field(None, description="admin: more detail")


class ModelVersion(BaseModel):
    version: str = Field(description="registry version name, e.g. v000003")
    live: bool = Field(description="whether this version is the live one")
    created_at: float | None = Field(None, description="when it was saved, Unix seconds")
    parent: str | None = Field(None, description="the version it was trained from")
    metrics: dict[str, Any] = Field(default_factory=dict, description="validation/test metrics as saved")
    n_items: int | None = Field(None, description="catalog size the model was trained with")


class ModelVersions(BaseModel):
    live: str | None = Field(description="the live version (None: none yet, popularity is served)")
    served: str = Field(description="the model this server serves now (it follows live within a poll)")
    history: list[str] = Field(description="earlier live versions, oldest first; rollback pops the last")
    versions: list[ModelVersion]


class ModelLive(BaseModel):
    live: str = Field(description="the version now live")
    previous: str | None = Field(None, description="the version that was live before")


# Descriptions and examples for the OpenAPI document where a model does not carry its own (request
# models live in core/, FastAPI's built-in error models are not ours). `document` fills only what
# is missing, so a description written on a model always wins.
FIELD_DOCS: dict[str, dict[str, str]] = {
    "Event": {
        "event_id": "the client's idempotency key: an event id already logged is a duplicate",
        "user_id": "who acted",
        "item_id": "on which catalog item (an unknown id creates a stub item)",
        "type": "what happened: click, view, purchase, rating (needs value), dwell (value = seconds), ...",
        "value": "rating stars or dwell seconds; other types need none",
        "timestamp": "when, as Unix seconds or ISO-8601; default: when the server receives it",
        "context": "where the item was shown (request_id, position, propensity, ...), for rewards and OPE",
    },
    "EventContext": {
        "request_id": "the recommendation request that showed the item",
        "position": "0-based position in the shown list",
        "surface": "where it was shown (home, search, ...)",
        "query": "the search query, if any",
        "propensity": "probability the policy showed this item at this position",
        "policy": "the policy that picked the slate",
        "model": "the model version that scored it",
    },
    "Item": {
        "item_id": "the catalog id",
        "title": "title, read by the text encoder",
        "text": "free text (description), read by the text encoder",
        "tags": "tags or genres, read by the text encoder",
        "attributes": "free-form attributes, stored and returned as given",
        "created_at": "creation time, Unix seconds or ISO-8601; default: now",
        "available": "false hides the item from every list (it stays in the catalog)",
    },
    "ErrorDetail": {"detail": "what went wrong, for a person to read"},
    "FieldError": {"field": "the field, dotted path", "msg": "what is wrong with it"},
    "EventErrors": {"errors": "the problems of this event (or item)"},
    "BatchRejected": {"detail": "what went wrong; nothing was written", "errors": "per-event problems"},
    "HTTPValidationError": {"detail": "the problems found in the request"},
    "ValidationError": {
        "loc": "where: path, query or body, then the field",
        "msg": "what is wrong",
        "type": "the error type",
        "input": "the value given",
        "ctx": "details of the rule broken",
    },
    "Health": {"status": '"ok" when the server is serving'},
    "ModelVersions": {"versions": "every registered version, oldest first"},
}
FIELD_DOCS["ItemIn"] = {k: v for k, v in FIELD_DOCS["Item"].items() if k != "item_id"}
EXAMPLE_EVENT = {"user_id": "42", "item_id": "50", "type": "click", "timestamp": 1_700_000_000}
EXAMPLE_ITEM = {"title": "Galaxy Rangers (1998)", "text": "A space adventure", "tags": ["Sci-Fi", "Action"]}
SCHEMA_EXAMPLES: dict[str, Any] = {
    "Event": EXAMPLE_EVENT,
    "EventBatch": {"events": [EXAMPLE_EVENT, {**EXAMPLE_EVENT, "item_id": "181", "type": "purchase"}]},
    "ItemIn": EXAMPLE_ITEM,
    "Item": {"item_id": "new-1", **EXAMPLE_ITEM},
    "EventsAccepted": {"accepted": 2, "duplicates": 0},
    "ItemUpserted": {"item_id": "new-1", "created": True},
    "ItemsUpserted": {"upserted": 2, "created": 1},
    "UserDeleted": {"events": 31, "user_state": 1},
    "HistoryOut": {
        "user_id": "196",
        "items": [
            {"item_id": "242", "timestamp": 881250949.0, "type": "rating", "stars": 3},
            {"item_id": "50", "timestamp": 881251000.0, "type": "click", "stars": None},
        ],
        "seen": 2,
    },
    "SearchIn": {"q": "space adventure", "user_id": "196", "k": 10, "filters": {"tags": ["Sci-Fi"]}},
    "SearchOut": {
        "request_id": "9a1d0c2b1e7d4c3e8b6a1f2d3c4b5a70",
        "query": "space adventure",
        "model": "transformer@v000001",
        "policy": "shuffle",
        "items": [
            {"item_id": "50", "score": 4.12, "propensity": 0.95, "filler": False, "position": 0},
            {"item_id": "181", "score": 3.87, "propensity": 0.95, "filler": False, "position": 1},
        ],
    },
    "RecommendationOut": {
        "request_id": "5f0c2b1e9a7d4c3e8b6a1f2d3c4b5a69",
        "model": "transformer@v000001",
        "policy": "greedy",
        "items": [{"item_id": "50", "score": 7.25, "propensity": 1.0, "title": "Star Wars (1977)"}],
    },
    "ExplanationOut": {
        "sentence": "Because you rated Toy Story (1995) and Aladdin (1992); similar in text to Toy Story "
        "(1995).",
        "history": [
            {"item_id": "1", "influence": 0.42, "position": 37},
            {"item_id": "95", "influence": 0.17, "position": 35},
        ],
        "content": {"item_id": "1", "similarity": 0.71},
        "reasons": [{"kind": "popular", "detail": "#4 of the 20 most engaged-with items now"}],
        "search": None,
    },
    "SimilarOut": {
        "item_id": "50",
        "model": "transformer@v000001",
        "items": [{"item_id": "181", "score": 0.91, "propensity": 1.0}],
    },
    "ItemPage": {"items": [{"item_id": "1", "title": "Toy Story (1995)"}], "next": "1"},
    "ErrorDetail": {"detail": "no item 'x'"},
    "Health": {"status": "ok", "version": "0.1.0"},
    "ModelLive": {"live": "v000002", "previous": "v000001"},
    "ModelVersions": {
        "live": "v000002",
        "served": "transformer@v000002",
        "history": ["v000001"],
        "versions": [{"version": "v000002", "live": True, "parent": "v000001", "metrics": {"ndcg@10": 0.12}}],
    },
}


def document(components: dict[str, Any]) -> None:
    """Fill missing field descriptions (`FIELD_DOCS`) and schema examples (`SCHEMA_EXAMPLES`) of the
    OpenAPI ``components.schemas``, in place; what a model declares itself is left as it is."""
    for name, schema in components.items():
        props = schema.get("properties") or {}
        for field, text in FIELD_DOCS.get(name, {}).items():
            if field in props and not props[field].get("description"):
                props[field]["description"] = text
        if name in SCHEMA_EXAMPLES and "examples" not in schema and "example" not in schema:
            schema["examples"] = [SCHEMA_EXAMPLES[name]]


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI declarations for the error codes a route can return."""
    table: dict[int, tuple[type[BaseModel], str]] = {
        400: (ErrorDetail, "Malformed JSON or an empty body"),
        404: (ErrorDetail, "Not found"),
        413: (ErrorDetail, "Body or batch too large"),
        415: (ErrorDetail, "The body is not Content-Type: application/json"),
        422: (BatchRejected, "Invalid input; nothing was written"),
        503: (ErrorDetail, "The store is unavailable; nothing was written"),
    }
    return {c: {"model": table[c][0], "description": table[c][1]} for c in codes}


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    """`openapi_extra` declaring a required JSON body of ``schema``: the routes read their bodies by
    hand (strict JSON, one error shape), so FastAPI cannot infer it."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def check_k(k: int, max_k: int) -> None:
    """``k`` above ``[server] max_k`` (a setting, so not in the route's `Query`): a 422 in the one
    error shape, through the same handler as FastAPI's own parameter errors."""
    if k > max_k:
        msg = f"k={k} is above the limit of {max_k}"
        raise RequestValidationError([{"loc": ("query", "k"), "msg": msg, "type": "less_than_equal"}])


def json_limits(settings: Settings) -> dict[str, Any]:
    """Validation context bounding free-form JSON by the ``[server]`` limits (`core.schema`)."""
    return {"limits": JsonLimits(settings.server.max_json_depth, settings.server.max_json_bytes)}
