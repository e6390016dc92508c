"""Tokens and sessions, without HTTP: lookup, expiry, bounds, no fixation."""

from __future__ import annotations

from promptadmin.auth import AdminTokens, SessionStore


def test_tokens_identify_their_admin_only() -> None:
    tokens = AdminTokens({"alice": "alice-token-0123456789", "bob": "bob-token-0123456789ab"})
    assert tokens.identify("alice-token-0123456789") == "alice"
    assert tokens.identify("alice-token-012345678") is None
    assert tokens.identify("") is None
    assert tokens.from_header("Bearer bob-token-0123456789ab") == "bob"
    assert tokens.from_header("bearer bob-token-0123456789ab") == "bob"
    assert tokens.from_header("Basic bob-token-0123456789ab") is None
    assert tokens.from_header("bob-token-0123456789ab") is None
    assert tokens.from_header(None) is None


def test_sessions_expire_and_login_replaces_the_pre_login_session() -> None:
    store = SessionStore(ttl=100.0, anonymous_ttl=10.0)
    anonymous = store.new(0.0)
    assert store.get(anonymous.sid, 9.9) is anonymous
    assert store.get(anonymous.sid, 10.0) is None  # expired at the boundary
    anonymous = store.new(20.0)
    admin = store.login(anonymous, "alice", 21.0)
    assert admin.sid != anonymous.sid and admin.csrf != anonymous.csrf
    assert store.get(anonymous.sid, 21.0) is None
    assert store.get(admin.sid, 120.9) is admin
    assert store.get(admin.sid, 121.0) is None
    assert admin.csrf_ok(admin.csrf) and not admin.csrf_ok(anonymous.csrf)
    assert not admin.csrf_ok(None) and not admin.csrf_ok("")


def test_a_flood_of_login_page_visits_does_not_evict_admins() -> None:
    store = SessionStore(max_sessions=10, max_anonymous=5)
    admin = store.new(0.0, "alice")
    first = store.new(0.0)
    for _ in range(50):
        store.new(1.0)
    assert store.get(admin.sid, 2.0) is admin
    assert store.get(first.sid, 2.0) is None  # the oldest pre-login sessions went
    admins = [store.new(3.0, f"admin{i}") for i in range(12)]
    assert store.get(admin.sid, 4.0) is None and store.get(admins[-1].sid, 4.0) is admins[-1]
    assert len(store) == 10
