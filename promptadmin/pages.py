"""The web page at ``/api/v1/prompts/admin``: list, editor, review + publish, history, rollback.

Server-rendered with Jinja2 (autoescaped), working without JavaScript; one small script
(``static/admin.js``, served from this package, nothing from a CDN) adds live validation
through the API's ``/validate`` while typing. Flow:

- the **list** links each assistant to its editor and history;
- the **editor** posts to *review*, which shows the validation report and the diff against
  the live version, with the change message and the *publish* button (a publish is always
  preceded by a look at its diff); a conflict or an invalid definition brings the editor
  back with the reason and, for a conflict, the diff against what is live now;
- **history** lists the versions and diffs any two of them; *roll back* asks for a
  confirmation (showing the diff from the live version) and a message.

Every form post carries the session's CSRF token (:mod:`promptadmin.auth`); a post without
it, or with a wrong one, answers 403 and changes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from actors.assistant_definition import ValidationReport
from actors.assistant_names import validate_assistant_name
from actors.errors import (
    InvalidAssistantName,
    PromptConflict,
    PromptError,
    PromptNotFound,
    PromptRejected,
    VersioningDisabled,
)
from promptadmin.auth import CSRF_FIELD, SESSION_COOKIE, Session
from promptadmin.context import AdminContext
from promptadmin.service import unified_diff

PAGES_PREFIX = "/api/v1/prompts/admin"
LOGIN_PATH = PAGES_PREFIX + "/login"
_HERE = Path(__file__).parent
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
_SCRIPT = (_HERE / "static" / "admin.js").read_bytes()


def _short(version: str | None) -> str:
    """A version id shortened for tables, as git shortens hashes (the full id is a tooltip)."""
    if not version:
        return "-"
    return version if len(version) <= 14 else version[:10] + "…"


_ENV.filters["short"] = _short


class PageError(Exception):
    """An error page: HTTP ``status`` and a sentence for the admin."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _ctx(request: Request) -> AdminContext:
    ctx: AdminContext = request.app.state.ctx
    return ctx


def _session(request: Request) -> Session | None:
    session: Session | None = request.state.session
    return session


def render(request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    """Render ``template`` with the common values (admin name, CSRF token, paths)."""
    session = _session(request)
    identity = getattr(request.state, "identity", None)
    html = _ENV.get_template(template).render(
        prefix=PAGES_PREFIX,
        admin=identity.name if identity is not None else None,
        csrf=session.csrf if session is not None else "",
        csrf_field=CSRF_FIELD,
        **values,
    )
    headers = {
        "cache-control": "no-store",
        # Nothing but our own script and inline styles; no framing.
        "content-security-policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
        "frame-ancestors 'none'; form-action 'self'",
        "x-content-type-options": "nosniff",
    }
    return HTMLResponse(html, status_code=status, headers=headers)


async def _form(request: Request, *, csrf: bool = True) -> FormData:
    """The posted form, size-bounded, with its CSRF token checked (403 when wrong)."""
    declared = request.headers.get("content-length")
    if declared is None or not declared.isdigit():
        raise PageError(411, "a form post needs a Content-Length")
    if int(declared) > _ctx(request).body_limit:
        raise PageError(413, "the form is too large")
    form = await request.form()
    identity = getattr(request.state, "identity", None)
    if csrf and (identity is None or identity.via == "session"):
        session = _session(request)
        token = form.get(CSRF_FIELD)
        if session is None or not session.csrf_ok(token if isinstance(token, str) else None):
            raise PageError(403, "the form's CSRF token is missing or wrong: reload the page")
    return form


def _field(form: FormData, key: str) -> str:
    value = form.get(key)
    return value if isinstance(value, str) else ""


def _author(request: Request) -> str:
    return str(request.state.identity.name)


def _page_errors(fn: Any) -> Any:
    async def endpoint(request: Request) -> Response:
        try:
            response: Response = await fn(request)
            return response
        except PageError as exc:
            return render(request, "error.html", exc.status, message=str(exc))
        except InvalidAssistantName as exc:
            return render(request, "error.html", 404, message=str(exc))
        except (PromptError, VersioningDisabled) as exc:
            status = 404 if isinstance(exc, PromptNotFound) else 502
            return render(request, "error.html", status, message=str(exc))

    endpoint.__name__ = fn.__name__
    endpoint.__doc__ = fn.__doc__
    return endpoint


# --- login ------------------------------------------------------------------------------


def _set_cookie(request: Request, response: Response, session: Session) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        session.sid,
        max_age=int(_ctx(request).sessions.ttl),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


@_page_errors
async def login(request: Request) -> Response:
    """GET: the login form (starts a pre-login session for its CSRF token). POST: log in."""
    ctx = _ctx(request)
    now = ctx.clock()
    session = _session(request)
    if request.method == "GET":
        if session is None:
            session = ctx.sessions.new(now)
            request.state.session = session
        page = render(request, "login.html", error=None)
        _set_cookie(request, page, session)
        return page
    form = await _form(request)  # the pre-login session's CSRF token
    name = ctx.tokens.identify(_field(form, "token"))
    if name is None:
        return render(request, "login.html", 401, error="That token is not an admin token.")
    fresh = ctx.sessions.login(session, name, now)
    response = RedirectResponse(PAGES_PREFIX, status_code=303)
    _set_cookie(request, response, fresh)
    return response


@_page_errors
async def logout(request: Request) -> Response:
    """POST: end the session."""
    await _form(request)
    session = _session(request)
    if session is not None:
        _ctx(request).sessions.end(session.sid)
    response = RedirectResponse(LOGIN_PATH, status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def script(request: Request) -> Response:
    """The page's one script (live validation)."""
    return Response(
        _SCRIPT,
        media_type="text/javascript",
        headers={"cache-control": "no-cache", "x-content-type-options": "nosniff"},
    )


# --- list and editor -------------------------------------------------------------------


@_page_errors
async def assistants(request: Request) -> Response:
    """The list of assistants."""
    items = await _ctx(request).versions.list_assistants()
    return render(request, "list.html", assistants=items)


def _report_of(ctx: AdminContext, text: str) -> ValidationReport:
    return ctx.versions.store.validate(text.encode("utf-8"))[1]


@_page_errors
async def new_assistant(request: Request) -> Response:
    """The editor for an assistant that does not exist yet."""
    return render(request, "editor.html", **_editor_values(name="", text="", base_etag=""))


@_page_errors
async def edit(request: Request) -> Response:
    """The editor, holding the live version."""
    name = validate_assistant_name(str(request.path_params["name"]))
    live = await _ctx(request).versions.get(name)
    values = _editor_values(name=name, text=live.text, base_etag=live.etag, live=live.version_id)
    return render(request, "editor.html", **values)


def _editor_values(
    *,
    name: str,
    text: str,
    base_etag: str,
    live: str | None = None,
    report: ValidationReport | None = None,
    diff: list[str] | None = None,
    message: str = "",
    notice: str | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "text": text,
        "base_etag": base_etag,
        "live": live,
        "report": report,
        "diff": diff,
        "message": message,
        "notice": notice,
        "is_new": not base_etag,
    }


async def _live_text(ctx: AdminContext, name: str) -> tuple[str, str | None, str]:
    """The live text, version and ETag of ``name`` ('' / None / '' if it does not exist)."""
    try:
        live = await ctx.versions.get(name)
    except PromptNotFound:
        return "", None, ""
    return live.text, live.version_id, live.etag


@_page_errors
async def review(request: Request) -> Response:
    """POST from the editor: validation report and diff against the live version."""
    ctx = _ctx(request)
    form = await _form(request)
    name = validate_assistant_name(_field(form, "name").strip())
    text = _field(form, "text")
    base_etag = _field(form, "base_etag")
    live_text, live_version, _ = await _live_text(ctx, name)
    diff = unified_diff(live_text, text, f"live {live_version or '(none)'}", "your edit")
    values = _editor_values(
        name=name,
        text=text,
        base_etag=base_etag,
        live=live_version,
        report=_report_of(ctx, text),
        diff=diff,
        message=_field(form, "message"),
    )
    return render(request, "editor.html", **values)


@_page_errors
async def publish(request: Request) -> Response:
    """POST from the reviewed editor: publish, then show which daemons confirmed."""
    ctx = _ctx(request)
    form = await _form(request)
    name = validate_assistant_name(_field(form, "name").strip())
    text = _field(form, "text")
    base_etag = _field(form, "base_etag") or None
    message = _field(form, "message")
    try:
        result = await ctx.service.publish(
            name, text.encode("utf-8"), author=_author(request), message=message, if_match=base_etag
        )
    except (PromptRejected, PromptConflict) as exc:
        live_text, live_version, live_etag = await _live_text(ctx, name)
        conflict = isinstance(exc, PromptConflict)
        notice = (
            "Someone published a new version while you edited. Nothing was written: the "
            "diff below is against what is live now; review it and publish again."
            if conflict
            else f"Not published: {exc}"
        )
        values = _editor_values(
            name=name,
            text=text,
            # After a conflict the admin has now seen the new live version's diff.
            base_etag=live_etag if conflict else (base_etag or ""),
            live=live_version,
            report=_report_of(ctx, text),
            diff=unified_diff(live_text, text, f"live {live_version or '(none)'}", "your edit"),
            message=message,
            notice=notice,
        )
        return render(request, "editor.html", 412 if conflict else 422, **values)
    return render(request, "result.html", result=result)


# --- history and rollback ---------------------------------------------------------------


@_page_errors
async def history(request: Request) -> Response:
    """Versions newest first, and the diff between two of them (``?a=&b=``)."""
    ctx = _ctx(request)
    name = validate_assistant_name(str(request.path_params["name"]))
    versions = await ctx.versions.history(name)
    readable = [v for v in versions if not v.deleted]
    a = request.query_params.get("a") or (readable[1].version_id if len(readable) > 1 else "")
    b = request.query_params.get("b") or (readable[0].version_id if readable else "")
    diff: list[str] | None = None
    if a and b:
        old = await ctx.versions.get(name, a)
        new = await ctx.versions.get(name, b)
        diff = unified_diff(old.text, new.text, f"version {a}", f"version {b}")
    return render(request, "history.html", name=name, versions=versions, a=a, b=b, diff=diff)


@_page_errors
async def rollback(request: Request) -> Response:
    """GET: confirm a rollback (diff from the live version). POST: roll back."""
    ctx = _ctx(request)
    name = validate_assistant_name(str(request.path_params["name"]))
    if request.method == "GET":
        version = request.query_params.get("version", "")
        target = await ctx.versions.get(name, version)
        live = await ctx.versions.get(name)
        diff = unified_diff(live.text, target.text, f"live {live.version_id}", f"version {version}")
        return render(request, "rollback.html", name=name, target=target, live=live, diff=diff)
    form = await _form(request)
    version = _field(form, "version")
    try:
        result = await ctx.service.rollback(
            name,
            version,
            author=_author(request),
            message=_field(form, "message"),
            if_match=_field(form, "base_etag") or None,
        )
    except PromptConflict:
        raise PageError(
            412, "Someone published meanwhile; nothing was rolled back. Review the history again."
        ) from None
    except PromptRejected as exc:
        raise PageError(422, f"Not rolled back: {exc}") from None
    return render(request, "result.html", result=result)


def page_routes() -> list[Route]:
    """The page's routes (all under :data:`PAGES_PREFIX`)."""
    p = PAGES_PREFIX
    return [
        Route(p, assistants, methods=["GET"]),
        Route(LOGIN_PATH, login, methods=["GET", "POST"]),
        Route(p + "/logout", logout, methods=["POST"]),
        Route(p + "/static/admin.js", script, methods=["GET"]),
        Route(p + "/new", new_assistant, methods=["GET"]),
        Route(p + "/edit/{name}", edit, methods=["GET"]),
        Route(p + "/review", review, methods=["POST"]),
        Route(p + "/publish", publish, methods=["POST"]),
        Route(p + "/history/{name}", history, methods=["GET"]),
        Route(p + "/history/{name}/rollback", rollback, methods=["GET", "POST"]),
    ]
