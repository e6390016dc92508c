"""The admin API's OpenAPI 3.1 document, served at ``/api/v1/openapi.json``.

Written by hand next to :mod:`promptadmin.api` (the routes are few, and a test checks that
every route is described and every described path is routed).
"""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Bad request (invalid_name, bad_json, bad_request)",
        401: "No or unknown bearer token (unauthenticated)",
        403: "CSRF token missing or wrong (csrf) for cookie-authenticated writes",
        404: "Assistant or version not found (not_found, version_not_found)",
        412: "The assistant changed since it was read (conflict); nothing written",
        413: "Request body too large (too_large)",
        422: "Invalid definition (invalid_definition, with report) or message (invalid_request)",
        428: "If-Match (or If-None-Match: *) missing (precondition_required)",
        502: "S3 refused or failed (store_error, store_access_denied)",
        503: "Bucket versioning off or S3 throttling (versioning_disabled, store_throttled)",
    }
    return {str(c): _json(_ERROR, text[c]) for c in codes}


_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_VERSION = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document (a fresh dict each time)."""
    ref = "#/components/schemas/"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "NovaVoice prompt admin",
            "version": "1",
            "description": "Validate, publish, inspect and roll back assistant definitions "
            "in the versioned prompts bucket. Authenticate with Authorization: Bearer "
            "<token> (ADMIN_TOKENS). Errors are {error: {code, message}}.",
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/prompts": {
                "get": {
                    "summary": "Every assistant with its current version",
                    "responses": {
                        "200": _json({"$ref": ref + "AssistantList"}, "The assistants"),
                        **_errors(401, 502, 503),
                    },
                }
            },
            "/api/v1/prompts/validate": {
                "post": {
                    "summary": "Validate a definition; nothing is written",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": ref + "Text"}}},
                    },
                    "responses": {
                        "200": _json({"$ref": ref + "Report"}, "The validation report"),
                        **_errors(400, 401, 403, 413),
                    },
                }
            },
            "/api/v1/prompts/{name}": {
                "parameters": [_NAME],
                "get": {
                    "summary": "The current version, its text and front matter (ETag header)",
                    "responses": {
                        "200": _json({"$ref": ref + "Version"}, "The current version"),
                        **_errors(400, 401, 404, 502),
                    },
                },
                "put": {
                    "summary": "Publish a new version (If-Match, or If-None-Match: * to create)",
                    "parameters": [
                        {"name": "If-Match", "in": "header", "schema": {"type": "string"}},
                        {"name": "If-None-Match", "in": "header", "schema": {"const": "*"}},
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": ref + "Publish"}}},
                    },
                    "responses": {
                        "200": _json({"$ref": ref + "WriteResult"}, "Published"),
                        "201": _json({"$ref": ref + "WriteResult"}, "Created"),
                        **_errors(400, 401, 403, 412, 413, 422, 428, 502, 503),
                    },
                },
            },
            "/api/v1/prompts/{name}/versions": {
                "parameters": [_NAME],
                "get": {
                    "summary": "History, newest first",
                    "responses": {
                        "200": _json({"$ref": ref + "History"}, "The versions"),
                        **_errors(400, 401, 404, 502),
                    },
                },
            },
            "/api/v1/prompts/{name}/versions/{version}": {
                "parameters": [_NAME, _VERSION],
                "get": {
                    "summary": "One version with its text",
                    "responses": {
                        "200": _json({"$ref": ref + "Version"}, "The version"),
                        **_errors(400, 401, 404, 502),
                    },
                },
            },
            "/api/v1/prompts/{name}/rollback": {
                "parameters": [_NAME],
                "post": {
                    "summary": "Publish an old version again as a new version",
                    "parameters": [
                        {"name": "If-Match", "in": "header", "schema": {"type": "string"}}
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": ref + "Rollback"}}},
                    },
                    "responses": {
                        "200": _json({"$ref": ref + "WriteResult"}, "Rolled back"),
                        **_errors(400, 401, 403, 404, 412, 422, 502, 503),
                    },
                },
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _schemas(),
        },
    }


def _schemas() -> dict[str, Any]:
    s: dict[str, Any] = {"type": "string"}
    ns: dict[str, Any] = {"type": ["string", "null"]}
    integer: dict[str, Any] = {"type": "integer"}
    issue = {
        "type": "object",
        "properties": {
            "severity": {"enum": ["error", "warning"]},
            "code": s,
            "message": s,
            "line": integer,
            "column": integer,
        },
    }
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {"code": s, "message": s},
                },
                "report": {"$ref": "#/components/schemas/Report"},
            },
        },
        "Text": {"type": "object", "required": ["text"], "properties": {"text": s}},
        "Publish": {
            "type": "object",
            "required": ["text", "message"],
            "properties": {"text": s, "message": s},
        },
        "Rollback": {
            "type": "object",
            "required": ["version", "message"],
            "properties": {"version": s, "message": s},
        },
        "Report": {
            "type": "object",
            "properties": {
                "ok": {"type": "boolean"},
                "errors": integer,
                "warnings": integer,
                "issues": {"type": "array", "items": issue},
                "front_matter": {"type": ["object", "null"]},
            },
        },
        "AssistantList": {
            "type": "object",
            "properties": {
                "assistants": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": s,
                            "version": ns,
                            "etag": s,
                            "size": integer,
                            "updated": ns,
                            "author": ns,
                        },
                    },
                }
            },
        },
        "Version": {
            "type": "object",
            "properties": {
                "name": s,
                "version": s,
                "etag": s,
                "size": integer,
                "time": ns,
                "author": ns,
                "message": ns,
                "sha256": s,
                "rollback_of": ns,
                "text": s,
                "front_matter": {"type": ["object", "null"]},
                "report": {"$ref": "#/components/schemas/Report"},
            },
        },
        "History": {
            "type": "object",
            "properties": {
                "name": s,
                "versions": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "version": s,
                            "etag": ns,
                            "time": ns,
                            "size": integer,
                            "author": ns,
                            "message": ns,
                            "sha256": ns,
                            "rollback_of": ns,
                            "is_latest": {"type": "boolean"},
                            "deleted": {"type": "boolean"},
                        },
                    },
                },
            },
        },
        "WriteResult": {
            "type": "object",
            "properties": {
                "name": s,
                "action": {"enum": ["publish", "create", "rollback"]},
                "version": s,
                "etag": s,
                "previous": ns,
                "author": ns,
                "message": ns,
                "rollback_of": ns,
                "confirmed": integer,
                "daemons": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "daemon": s,
                            "confirmed": {"type": "boolean"},
                            "detail": s,
                        },
                    },
                },
            },
        },
    }
