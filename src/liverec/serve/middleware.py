"""Pure ASGI middleware: JSON bodies only, a body-size cap for every route, and per-route latency
metrics."""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from liverec.serve.metrics import Metrics


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Answer 413 to bodies over ``limit`` bytes, declared or streamed, before a route reads them."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await self._reject(send)
                return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        body = orjson.dumps(
            {"detail": f"request body is larger than {self.limit} bytes; send smaller batches"}
        )
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _reject(status: int, detail: str) -> tuple[Message, Message]:
    body = orjson.dumps({"detail": detail})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return (
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body},
    )


class JsonOnly:
    """Answer 415 to a request body that is not ``Content-Type: application/json`` (parameters
    such as ``charset=utf-8`` are fine). A browser sends ``text/plain`` or form bodies cross-site
    without a CORS preflight; requiring JSON means no web page can write events behind a user's
    back. Requests without a body pass: the routes that need one answer 400."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            media, has_body = b"", False
            for name, value in scope.get("headers", ()):
                if name == b"content-type":
                    media = value.split(b";", 1)[0].strip().lower()
                elif name == b"content-length":
                    has_body = has_body or value.strip() not in (b"", b"0")
                elif name == b"transfer-encoding":
                    has_body = True
            if has_body and media != b"application/json":
                shown = media.decode("latin-1")[:100] or "none"
                for message in _reject(
                    415, f"Content-Type must be application/json (got {shown}); nothing was written"
                ):
                    await send(message)
                return
        await self.app(scope, receive, send)


class RequestMetrics:
    """Observe latency per route template (``/v1/users/{user_id}/recommendations``), not per URL."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = {"code": 500}

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route: Any = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.metrics.request_latency.labels(scope["method"], path, str(status["code"])).observe(
                time.perf_counter() - t0
            )
