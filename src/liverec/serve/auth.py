"""API keys and scopes: who may call which route (`[auth]` settings).

Every route declares its scope with ``dependencies=[Depends(require("read"))]`` (or ``"write"``,
``"admin"``); the few public ones (`/healthz`, the OpenAPI docs) are listed in `PUBLIC_PATHS`.
``tests/serve/test_auth.py`` walks ``app.routes``, so a new route without a decision fails it.

- ``read``: recommendations, similar items, item reads, /metrics. ``write``: events and items.
  ``admin``: user deletion, model versions, the full /healthz; admin implies read and write (it is
  the operator's key), write does not imply read (an ingest key cannot read what others are shown).
- A presented key is hashed (sha256) and compared with every configured key's digest with
  `hmac.compare_digest`, all of them, so the time taken says nothing about which one nearly matched.
- With no keys configured the server is open (every request has every scope). `check_bind` allows
  that only on a loopback address, or with ``[auth] insecure = true`` / ``liverec serve --insecure``.
- Logs and metrics name a key by its ``name``; the key itself is never stored, logged or echoed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import fastapi.routing
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.routing import BaseRoute

from liverec.serve.schemas import ErrorDetail
from liverec.settings import SCOPES, AuthSettings, Scope, Settings

# routes anyone may call: liveness (its detail still needs admin), the API's own documentation, and
# the dashboard's page and assets (static files with no data: every number it shows comes from
# /v1/dashboard and the other routes, with the admin key the page asks for)
PUBLIC_PATHS = frozenset(
    {
        "/healthz",
        "/openapi.json",
        "/docs",
        "/docs/oauth2-redirect",
        "/docs-assets",
        "/redoc",
        "/dashboard",
        "/dashboard-assets",
        "/dashboard-assets/plotly.min.js",
    }
)
OPEN = "open"  # the principal's name when no keys are configured
# declares the scheme in OpenAPI (Swagger's "Authorize" button); the header is read by `identify`
BEARER = HTTPBearer(auto_error=False, description="an API key from [[auth.keys]]")
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]
IMPLIED: dict[str, frozenset[str]] = {"read": frozenset(), "write": frozenset(), "admin": frozenset(SCOPES)}


class InsecureBind(RuntimeError):
    """No API keys, and bound to an address other hosts can reach."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: a configured key's name and scopes (implied ones included)."""

    name: str
    scopes: frozenset[str]


@dataclass(frozen=True)
class _Key:
    name: str
    digest: bytes
    scopes: frozenset[str]


class Authenticator:
    """Resolves an ``Authorization: Bearer <key>`` header to a `Principal`."""

    def __init__(self, auth: AuthSettings) -> None:
        self._keys = [
            _Key(k.name, k.digest(), frozenset(k.scopes).union(*(IMPLIED[s] for s in k.scopes)))
            for k in auth.keys
        ]

    @property
    def open(self) -> bool:
        """No keys configured: every request has every scope."""
        return not self._keys

    def identify(self, authorization: str | None) -> Principal:
        """The caller of a request with this Authorization header; 401 if it has no valid key."""
        if self.open:
            return Principal(OPEN, frozenset(SCOPES))
        if not authorization:
            raise _unauthorized("missing API key: send the header 'Authorization: Bearer <key>'")
        kind, _, presented = authorization.strip().partition(" ")
        presented = presented.strip()
        if kind.lower() != "bearer" or not presented:
            raise _unauthorized("malformed Authorization header: expected 'Bearer <key>'", "invalid_request")
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        found: _Key | None = None
        for key in self._keys:  # every key, no early exit: constant time in which one matched
            if hmac.compare_digest(digest, key.digest):
                found = key
        if found is None:
            raise _unauthorized("invalid API key", "invalid_token")
        return Principal(found.name, found.scopes)


def _unauthorized(detail: str, error: str | None = None) -> HTTPException:
    challenge = "Bearer" + (f' error="{error}"' if error else "")
    return HTTPException(401, detail, headers={"WWW-Authenticate": challenge})


def _authenticator(request: Request) -> Authenticator:
    auth: Authenticator = request.app.state.auth
    return auth


def _count(request: Request, principal: Principal, outcome: str) -> None:
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.requests_by_key.labels(principal.name, outcome).inc()


AuthDep = Callable[..., Awaitable[Principal]]
_REQUIRE: dict[str, AuthDep] = {}


def require(scope: Scope) -> AuthDep:
    """The dependency that admits a request only with a key holding ``scope`` (401 / 403 otherwise).
    One function per scope, so `scope_of` can tell a route's decision from its dependencies."""
    if scope in _REQUIRE:
        return _REQUIRE[scope]

    async def dependency(request: Request, _: BearerDep) -> Principal:  # async: no thread hop
        principal = _authenticator(request).identify(request.headers.get("authorization"))
        if scope not in principal.scopes:
            _count(request, principal, "forbidden")
            has = ", ".join(sorted(principal.scopes)) or "none"
            raise HTTPException(
                403,
                f"API key {principal.name!r} lacks the {scope!r} scope this route needs (it has: {has})",
                headers={"WWW-Authenticate": f'Bearer error="insufficient_scope" scope="{scope}"'},
            )
        _count(request, principal, "ok")
        return principal

    dependency.__name__ = f"require_{scope}"
    dependency.scope = scope  # type: ignore[attr-defined]
    _REQUIRE[scope] = dependency
    return dependency


async def caller(request: Request) -> Principal | None:
    """For public routes: the caller if a key was sent (401 if it is invalid), None if none was.
    In open mode every caller has every scope."""
    auth = _authenticator(request)
    header = request.headers.get("authorization")
    if not auth.open and not header:
        return None
    return auth.identify(header)


def effective_routes(routes: Sequence[BaseRoute]) -> list[Any]:
    """Every route as served (path with the router's prefix, dependencies included): FastAPI >= 0.16x
    keeps included routers as branches in ``app.routes``, older ones flat."""
    contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    return list(contexts(routes)) if contexts is not None else list(routes)


def declare_responses(routes: Sequence[BaseRoute]) -> None:
    """Declare 401 and 403 in the OpenAPI of every route that needs a scope."""
    for route in effective_routes(routes):
        scope = scope_of(route)
        if scope in (None, "public"):
            continue
        declared = {
            401: {"model": ErrorDetail, "description": "No valid API key"},
            403: {"model": ErrorDetail, "description": f"The API key lacks the {scope!r} scope"},
        }
        original = getattr(route, "original_route", route)
        for responses in {id(r): r for r in (route.responses, original.responses)}.values():
            for code, spec in declared.items():
                responses.setdefault(code, spec)


def scope_of(route: Any) -> str | None:
    """The route's access decision: its `require` scope, ``"public"``, or None if it has none."""
    dependant = getattr(route, "dependant", None)
    for dep in dependant.dependencies if dependant is not None else ():
        scope: Any = getattr(dep.call, "scope", None)
        if scope is not None and _REQUIRE.get(scope) is dep.call:
            return str(scope)
    return "public" if getattr(route, "path", None) in PUBLIC_PATHS else None


# -- start-up -------------------------------------------------------------------------------------
def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: only this machine can connect."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def check_bind(settings: Settings) -> str:
    """How the server will admit requests, as one line for the start-up log; raises `InsecureBind`
    when it has no keys and is bound to a non-loopback address without ``[auth] insecure``."""
    host, auth = settings.server.host, settings.auth
    if auth.keys:
        names = ", ".join(f"{k.name} ({'+'.join(k.scopes)})" for k in auth.keys)
        return f"API keys required: {len(auth.keys)} configured: {names}"
    if is_loopback(host):
        return (
            f"no API keys configured: serving OPEN on loopback address {host} "
            "(every local client has every scope); add [[auth.keys]] before binding elsewhere"
        )
    if auth.insecure:
        return (
            f"no API keys configured and --insecure: serving OPEN on {host}; anyone who can connect "
            "can write events, delete users and promote models"
        )
    raise InsecureBind(
        f"refusing to serve on {host} without API keys: anyone who could connect could write events, "
        "delete users and promote models. Add [[auth.keys]] to the config (see README, Security), "
        "bind to 127.0.0.1, or pass --insecure ([auth] insecure = true) to accept that"
    )
