"""The web page without a browser: login, session cookie, CSRF, review → publish, rollback."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from promptadmin.versions import PromptVersions

from .conftest import ALICE, ESTHER_V1, Admin, auth, csrf_of, open_test_admin

ESTHER_V2 = ESTHER_V1 + "Always offer to call a taxi.\n"


async def test_login_sets_a_strict_httponly_cookie_and_rotates_the_session(admin: Admin) -> None:
    c = admin.client
    page = await c.get("/api/v1/prompts/admin/login")
    pre_login = c.cookies["novavoice_admin_session"]
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert "secure" not in cookie  # plain http here; https adds it
    wrong = await c.post(
        "/api/v1/prompts/admin/login",
        data={"token": "not-a-token-0123456789", "csrf_token": csrf_of(page.text)},
    )
    assert wrong.status_code == 401
    await admin.login()
    assert c.cookies["novavoice_admin_session"] != pre_login
    assert len(admin.ctx.sessions) == 1  # the pre-login session was replaced


async def test_login_form_without_csrf_is_refused(admin: Admin) -> None:
    c = admin.client
    await c.get("/api/v1/prompts/admin/login")
    reply = await c.post("/api/v1/prompts/admin/login", data={"token": ALICE})
    assert reply.status_code == 403
    assert (await c.get("/api/v1/prompts/admin")).status_code == 303  # still logged out


async def test_form_post_without_or_with_a_wrong_csrf_token_is_403(admin: Admin) -> None:
    c = admin.client
    csrf = await admin.login()
    etag = (await c.get("/api/v1/prompts/esther", headers=auth())).headers["etag"]
    form = {"name": "esther", "text": ESTHER_V2, "base_etag": etag, "message": "taxi"}
    for token in (None, "forged-token", csrf[:-1]):
        data = form if token is None else {**form, "csrf_token": token}
        for path in ("publish", "review"):
            reply = await c.post(f"/api/v1/prompts/admin/{path}", data=data)
            assert reply.status_code == 403, (path, token)
            assert "CSRF" in reply.text
    first = (await c.get("/api/v1/prompts/esther/versions", headers=auth())).json()
    rollback = await c.post(
        "/api/v1/prompts/admin/history/esther/rollback",
        data={"version": first["versions"][0]["version"], "message": "x"},
    )
    assert rollback.status_code == 403
    # The page's scripts call the API with the cookie: they need the X-CSRF-Token header.
    no_header = await c.post("/api/v1/prompts/validate", json={"text": "Hi."})
    assert no_header.status_code == 403 and no_header.json()["error"]["code"] == "csrf"
    with_header = await c.post(
        "/api/v1/prompts/validate", json={"text": "Hi."}, headers={"x-csrf-token": csrf}
    )
    assert with_header.status_code == 200
    assert admin.versions_in_s3("esther") == 1
    assert admin.audit.read() == []


async def test_review_shows_the_diff_then_publish_records_the_session_admin(
    admin: Admin,
) -> None:
    c = admin.client
    csrf = await admin.login()
    editor = await c.get("/api/v1/prompts/admin/edit/esther")
    assert editor.status_code == 200
    assert '<label for="text">' in editor.text and 'id="text"' in editor.text
    etag = re.search(r'name="base_etag" value="([^"]*)"', editor.text)
    assert etag is not None
    form = {
        "csrf_token": csrf,
        "name": "esther",
        "text": ESTHER_V2,
        "base_etag": etag.group(1).replace("&#34;", '"'),
        "message": "",
    }
    review = await c.post("/api/v1/prompts/admin/review", data=form)
    assert review.status_code == 200
    assert "+Always offer to call a taxi." in review.text
    assert 'id="publish"' in review.text and '<label for="message">' in review.text
    published = await c.post(
        "/api/v1/prompts/admin/publish", data={**form, "message": "offer taxis"}
    )
    assert published.status_code == 200, published.text
    assert "Published" in published.text
    history = (await c.get("/api/v1/prompts/esther/versions", headers=auth())).json()
    assert history["versions"][0]["author"] == "alice"
    assert history["versions"][0]["message"] == "offer taxis"
    # A second publish from the same stale editor is a conflict: the editor comes back
    # with the diff against what is live now, and nothing is written.
    stale = await c.post(
        "/api/v1/prompts/admin/publish",
        data={**form, "text": ESTHER_V1 + "Other.\n", "message": "m"},
    )
    assert stale.status_code == 412
    assert "Someone published a new version" in stale.text
    assert admin.versions_in_s3("esther") == 2


async def test_invalid_definition_cannot_be_published_from_the_page(admin: Admin) -> None:
    c = admin.client
    csrf = await admin.login()
    etag = (await c.get("/api/v1/prompts/esther", headers=auth())).headers["etag"]
    form = {
        "csrf_token": csrf,
        "name": "esther",
        "text": "---\nvoice: nobody\n---\nHi.\n",
        "base_etag": etag,
        "message": "bad voice",
    }
    review = await c.post("/api/v1/prompts/admin/review", data=form)
    assert "1 error(s)" in review.text and 'id="publish"' not in review.text
    forced = await c.post("/api/v1/prompts/admin/publish", data=form)
    assert forced.status_code == 422
    assert admin.versions_in_s3("esther") == 1


async def test_history_diffs_two_versions_and_rollback_asks_first(admin: Admin) -> None:
    c = admin.client
    csrf = await admin.login()
    etag = (await c.get("/api/v1/prompts/esther", headers=auth())).headers["etag"]
    await c.put(
        "/api/v1/prompts/esther",
        json={"text": ESTHER_V2, "message": "taxi"},
        headers={**auth(), "if-match": etag},
    )
    versions = (await c.get("/api/v1/prompts/esther/versions", headers=auth())).json()["versions"]
    new, old = versions[0]["version"], versions[1]["version"]
    page = await c.get(f"/api/v1/prompts/admin/history/esther?a={old}&b={new}")
    assert page.status_code == 200 and "+Always offer to call a taxi." in page.text
    confirm = await c.get(f"/api/v1/prompts/admin/history/esther/rollback?version={old}")
    assert confirm.status_code == 200
    assert (
        "-Always offer to call a taxi." in confirm.text and 'id="confirm-rollback"' in confirm.text
    )
    assert admin.versions_in_s3("esther") == 2  # asking wrote nothing
    live_etag = re.search(r'name="base_etag" value="([^"]*)"', confirm.text)
    assert live_etag is not None
    done = await c.post(
        "/api/v1/prompts/admin/history/esther/rollback",
        data={
            "csrf_token": csrf,
            "version": old,
            "base_etag": live_etag.group(1).replace("&#34;", '"'),
            "message": "no taxis after all",
        },
    )
    assert done.status_code == 200, done.text
    assert "Rolled back" in done.text
    live = (await c.get("/api/v1/prompts/esther", headers=auth())).json()
    assert live["text"] == ESTHER_V1 and live["rollback_of"] == old
    assert [e["what"] for e in admin.audit.read()] == ["publish", "rollback"]


async def test_logout_ends_the_session(admin: Admin) -> None:
    c = admin.client
    csrf = await admin.login()
    out = await c.post("/api/v1/prompts/admin/logout", data={"csrf_token": csrf})
    assert out.status_code == 303
    assert len(admin.ctx.sessions) == 0
    assert (await c.get("/api/v1/prompts/admin")).status_code == 303


async def test_the_cookie_is_secure_when_served_over_tls(
    store: PromptVersions, tmp_path: Path
) -> None:
    async with open_test_admin(store, tmp_path) as admin:
        admin.client.base_url = httpx.URL("https://admin.test")
        page = await admin.client.get("/api/v1/prompts/admin/login")
    cookie = page.headers["set-cookie"].lower()
    assert "; secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
