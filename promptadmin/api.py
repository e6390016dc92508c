"""The JSON API under ``/api/v1/prompts`` (see :mod:`promptadmin.openapi` for the contract).

Every answer is JSON; every error is ``{"error": {"code": ..., "message": ...}}`` with a
machine-readable ``code`` (and the validation ``report`` for ``invalid_definition``).
Authentication happens before any handler runs (:mod:`promptadmin.app`); handlers read the
admin's name from ``request.state.identity``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from actors.assistant_definition import ValidationReport
from actors.assistant_names import validate_assistant_name
from actors.errors import (
    InvalidAssistantName,
    PromptAccessDenied,
    PromptConflict,
    PromptError,
    PromptNotFound,
    PromptRejected,
    PromptThrottled,
    PromptVersionNotFound,
    VersioningDisabled,
)
from promptadmin.context import AdminContext
from promptadmin.openapi import openapi_document
from promptadmin.versions import AssistantSummary, StoredVersion, VersionInfo

Handler = Callable[[Request], Awaitable[Response]]


class ApiError(Exception):
    """An error answer: HTTP ``status``, machine-readable ``code``, a sentence."""

    def __init__(
        self, status: int, code: str, message: str, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.extra = extra or {}

    def response(self) -> JSONResponse:
        """The JSON error response."""
        body = {"error": {"code": self.code, "message": str(self)}, **self.extra}
        return JSONResponse(body, status_code=self.status)


def error_for(exc: Exception) -> ApiError:
    """The API's answer to a store or validation failure."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, InvalidAssistantName):
        return ApiError(400, "invalid_name", str(exc))
    if isinstance(exc, PromptRejected):
        if isinstance(exc.report, ValidationReport):
            return ApiError(422, "invalid_definition", str(exc), {"report": exc.report.to_json()})
        return ApiError(422, "invalid_request", str(exc))
    if isinstance(exc, PromptConflict):
        return ApiError(412, "conflict", str(exc), {"expected": exc.expected})
    if isinstance(exc, PromptVersionNotFound):
        return ApiError(404, "version_not_found", str(exc))
    if isinstance(exc, PromptNotFound):
        return ApiError(404, "not_found", str(exc))
    if isinstance(exc, VersioningDisabled):
        return ApiError(503, "versioning_disabled", str(exc))
    if isinstance(exc, PromptAccessDenied):
        return ApiError(502, "store_access_denied", str(exc))
    if isinstance(exc, PromptThrottled):
        return ApiError(503, "store_throttled", str(exc))
    if isinstance(exc, PromptError):
        return ApiError(502, "store_error", str(exc))
    raise exc


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def summary_json(s: AssistantSummary) -> dict[str, object]:
    """One assistant of the list."""
    return {
        "name": s.name,
        "version": s.version_id,
        "etag": s.etag,
        "size": s.size,
        "updated": _iso(s.updated),
        "author": s.author,
    }


def version_json(v: VersionInfo) -> dict[str, object]:
    """One history entry."""
    return {
        "version": v.version_id,
        "etag": v.etag,
        "time": _iso(v.time),
        "size": v.size,
        "author": v.author,
        "message": v.message,
        "sha256": v.sha256,
        "rollback_of": v.metadata.rollback_of,
        "is_latest": v.is_latest,
        "deleted": v.deleted,
    }


def stored_json(ctx: AdminContext, v: StoredVersion) -> dict[str, object]:
    """One version with its text, front matter and validation report."""
    definition, report = ctx.versions.store.validate(v.body)
    return {
        "name": v.name,
        "version": v.version_id,
        "etag": v.etag,
        "size": v.size,
        "time": _iso(v.time),
        "author": v.author,
        "message": v.message,
        "sha256": v.sha256,
        "rollback_of": v.metadata.rollback_of,
        "text": v.text,
        "front_matter": definition.front_matter() if definition is not None else None,
        "report": report.to_json(),
    }


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The request's JSON object body, at most ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "too_large", f"request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "too_large", f"request body is larger than {limit} bytes")
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "bad_json", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_json", "the body must be a JSON object")
    return body


def _string(body: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ApiError(400, "bad_request", f"{key!r} must be a string")
    return value


def _ctx(request: Request) -> AdminContext:
    ctx: AdminContext = request.app.state.ctx
    return ctx


def _author(request: Request) -> str:
    return str(request.state.identity.name)


def _name(request: Request) -> str:
    return validate_assistant_name(str(request.path_params["name"]))


def _json_endpoint(fn: Handler) -> Handler:
    async def endpoint(request: Request) -> Response:
        try:
            return await fn(request)
        except (ApiError, PromptError, VersioningDisabled) as exc:
            return error_for(exc).response()

    endpoint.__name__ = fn.__name__
    endpoint.__doc__ = fn.__doc__
    return endpoint


@_json_endpoint
async def list_prompts(request: Request) -> Response:
    """GET /api/v1/prompts: every assistant with its current version."""
    assistants = await _ctx(request).versions.list_assistants()
    return JSONResponse({"assistants": [summary_json(s) for s in assistants]})


@_json_endpoint
async def get_prompt(request: Request) -> Response:
    """GET /api/v1/prompts/{name}: the current version; ``ETag`` header for If-Match."""
    ctx = _ctx(request)
    stored = await ctx.versions.get(_name(request))
    return JSONResponse(stored_json(ctx, stored), headers={"etag": stored.etag})


@_json_endpoint
async def put_prompt(request: Request) -> Response:
    """PUT /api/v1/prompts/{name}: publish ``{"text", "message"}`` conditionally."""
    ctx = _ctx(request)
    name = _name(request)
    if_match = request.headers.get("if-match")
    if_none_match = request.headers.get("if-none-match")
    if if_match is None and if_none_match != "*":
        raise ApiError(
            428,
            "precondition_required",
            "send If-Match with the ETag you edited (or If-None-Match: * for a new assistant)",
        )
    body = await read_json(request, ctx.body_limit)
    text = _string(body, "text") or ""
    message = _string(body, "message") or ""
    result = await ctx.service.publish(
        name, text.encode("utf-8"), author=_author(request), message=message, if_match=if_match
    )
    status = 201 if result.action == "create" else 200
    return JSONResponse(result.to_json(), status_code=status, headers={"etag": result.version.etag})


@_json_endpoint
async def validate_prompt(request: Request) -> Response:
    """POST /api/v1/prompts/validate: the validation report of ``{"text"}``; nothing written."""
    ctx = _ctx(request)
    body = await read_json(request, ctx.body_limit)
    text = _string(body, "text") or ""
    # Not counted in validation_failures: the editor validates on every keystroke, and
    # the metric counts refused writes.
    definition, report = ctx.versions.store.validate(text.encode("utf-8"))
    answer = report.to_json()
    answer["front_matter"] = definition.front_matter() if definition is not None else None
    return JSONResponse(answer)


@_json_endpoint
async def list_versions(request: Request) -> Response:
    """GET /api/v1/prompts/{name}/versions: the history, newest first."""
    name = _name(request)
    history = await _ctx(request).versions.history(name)
    return JSONResponse({"name": name, "versions": [version_json(v) for v in history]})


@_json_endpoint
async def get_version(request: Request) -> Response:
    """GET /api/v1/prompts/{name}/versions/{version}: one version with its text."""
    ctx = _ctx(request)
    stored = await ctx.versions.get(_name(request), str(request.path_params["version"]))
    return JSONResponse(stored_json(ctx, stored), headers={"etag": stored.etag})


@_json_endpoint
async def rollback_prompt(request: Request) -> Response:
    """POST /api/v1/prompts/{name}/rollback: ``{"version", "message"}`` becomes current again."""
    ctx = _ctx(request)
    name = _name(request)
    body = await read_json(request, ctx.body_limit)
    version = _string(body, "version") or ""
    message = _string(body, "message") or ""
    if_match = request.headers.get("if-match")
    if if_match is None:
        # Roll back over whatever is current now, and nothing else: still a conditional
        # write, so a publish landing between this read and the write is not overwritten.
        if_match = (await ctx.versions.get(name)).etag
    result = await ctx.service.rollback(
        name, version, author=_author(request), message=message, if_match=if_match
    )
    return JSONResponse(result.to_json(), headers={"etag": result.version.etag})


async def openapi(request: Request) -> Response:
    """GET /api/v1/openapi.json: the API's OpenAPI 3.1 document."""
    return JSONResponse(openapi_document())


def api_routes() -> list[Route]:
    """The API's routes, in matching order (fixed paths before ``{name}``)."""
    return [
        Route("/api/v1/openapi.json", openapi, methods=["GET"]),
        Route("/api/v1/prompts", list_prompts, methods=["GET"]),
        Route("/api/v1/prompts/validate", validate_prompt, methods=["POST"]),
        Route("/api/v1/prompts/{name}", get_prompt, methods=["GET"]),
        Route("/api/v1/prompts/{name}", put_prompt, methods=["PUT"]),
        Route("/api/v1/prompts/{name}/versions", list_versions, methods=["GET"]),
        Route("/api/v1/prompts/{name}/versions/{version}", get_version, methods=["GET"]),
        Route("/api/v1/prompts/{name}/rollback", rollback_prompt, methods=["POST"]),
    ]
