"""The prompt admin's ASGI application: the JSON API, the web page, ``/metrics``.

Stack: Starlette (routing, requests, responses; runs on anyio, so on trio), Jinja2 for the
server-rendered page, python-multipart for its forms, hypercorn's trio worker as the
server, httpx for the refresh calls to the daemons. All of them live in the ``admin`` extra:
the daemon does not import them, and its own ``/healthz``, ``/readyz`` and ``/metrics`` stay
on its small h11 server (:mod:`sessions.admin`) to keep its dependencies and idle memory
minimal.

Authentication runs in :class:`AuthMiddleware`, before routing, for every path but the login
page (see :mod:`promptadmin.auth`): a route cannot be added without it.
"""

from __future__ import annotations

import json

from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.datastructures import URL
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from promptadmin.api import api_routes
from promptadmin.auth import CSRF_HEADER, SESSION_COOKIE, Identity
from promptadmin.context import AdminContext
from promptadmin.pages import LOGIN_PATH, PAGES_PREFIX, page_routes

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _json_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)


class AuthMiddleware:
    """Attaches ``request.state.identity`` (and ``.session``) or refuses the request.

    No identity: the page's GETs redirect to the login form, everything else answers 401.
    A write authenticated by the session cookie outside the page's own forms (the page's
    scripts calling the API) must carry the session's CSRF token in ``X-CSRF-Token``; the
    page's form posts check their ``csrf_token`` field in their handlers.
    """

    def __init__(self, app: ASGIApp, ctx: AdminContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        state = scope.setdefault("state", {})
        session = self.ctx.sessions.get(request.cookies.get(SESSION_COOKIE), self.ctx.clock())
        state["session"] = session
        path: str = scope["path"]
        if path == LOGIN_PATH:
            await self.app(scope, receive, send)
            return
        identity: Identity | None = None
        bearer = self.ctx.tokens.from_header(request.headers.get("authorization"))
        if bearer is not None:
            identity = Identity(bearer, "token")
        elif session is not None and session.admin is not None:
            identity = Identity(session.admin, "session")
        if identity is None:
            response: Response
            if path.startswith(PAGES_PREFIX) and request.method in _SAFE_METHODS:
                response = RedirectResponse(URL(LOGIN_PATH), status_code=303)
            else:
                response = _json_error(
                    401,
                    "unauthenticated",
                    "an admin token is required (Authorization: Bearer <token>)",
                    {"www-authenticate": 'Bearer realm="novavoice-prompt-admin"'},
                )
            await response(scope, receive, send)
            return
        if (
            identity.via == "session"
            and request.method not in _SAFE_METHODS
            and not path.startswith(PAGES_PREFIX)
            and (session is None or not session.csrf_ok(request.headers.get(CSRF_HEADER)))
        ):
            await _json_error(403, "csrf", "missing or wrong X-CSRF-Token")(scope, receive, send)
            return
        state["identity"] = identity
        await self.app(scope, receive, send)


async def metrics_endpoint(request: Request) -> Response:
    """GET /metrics: the admin's counters (Prometheus text or OpenMetrics)."""
    ctx: AdminContext = request.app.state.ctx
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(ctx.metrics.registry), headers={"content-type": content_type})


_HTTP_CODES = {404: "no_route", 405: "method_not_allowed"}


async def http_error(request: Request, exc: Exception) -> Response:
    """Routing errors (unknown path, wrong method) as JSON with a code, like every error."""
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return _json_error(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))


def build_app(ctx: AdminContext) -> ASGIApp:
    """The whole admin as one ASGI app (authentication outermost)."""
    routes = [Route("/metrics", metrics_endpoint, methods=["GET"]), *page_routes(), *api_routes()]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    app.state.ctx = ctx
    return AuthMiddleware(app, ctx)
