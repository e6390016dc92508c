"""Who is asking: bearer tokens for the API, server-side sessions and CSRF for the page.

Every route but the login page needs an admin identity (:class:`Identity`, whose name is
recorded as the author of each write).

- **API**: ``Authorization: Bearer <token>``, one of ``ADMIN_TOKENS``. Each presented token
  is compared with *every* configured token through :func:`hmac.compare_digest` over SHA-256
  digests (equal lengths, so not even a token's length leaks), and neither the comparison
  nor the number of comparisons depends on where a guess goes wrong.
- **Page**: the login form takes a token and starts a session. The session lives on the
  server (:class:`SessionStore`); the cookie holds only a random 256-bit id, is
  ``HttpOnly``, ``SameSite=Strict``, and ``Secure`` whenever the page is served over TLS.
  Logging in replaces the session id (no fixation); logging out forgets it. Pre-login
  sessions (the login form's CSRF token) are kept apart, fewer and shorter-lived, so a
  flood of login-page visits cannot push admins' sessions out.
- **CSRF**: each session carries a synchronizer token, embedded in every form as
  ``csrf_token`` and checked (constant time) on every form post, the login form's included
  (a pre-login session holds its token). The page's scripts send it as ``X-CSRF-Token`` when
  they call the API with the session cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Mapping

import attrs

SESSION_COOKIE = "novavoice_admin_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


@attrs.frozen
class Identity:
    """An authenticated admin."""

    name: str
    via: str
    """``token`` (API bearer) or ``session`` (the page's cookie)."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", errors="surrogateescape")).digest()


@attrs.define(eq=False)
class AdminTokens:
    """The configured ``name -> token`` pairs, looked up in constant time."""

    _tokens: Mapping[str, str] = attrs.field(repr=False)

    def identify(self, presented: str) -> str | None:
        """The admin whose token is ``presented``, else ``None``."""
        candidate = _digest(presented)
        found: str | None = None
        for name, token in self._tokens.items():
            # No early exit: every token is compared, whatever matched.
            if hmac.compare_digest(candidate, _digest(token)):
                found = name
        return found

    def from_header(self, authorization: str | None) -> str | None:
        """The admin named by an ``Authorization: Bearer`` header, else ``None``."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        return self.identify(token.strip())


@attrs.define(eq=False)
class Session:
    """One browser session: anonymous (before login) or an admin's."""

    sid: str = attrs.field(repr=False)
    csrf: str = attrs.field(repr=False)
    expires: float
    admin: str | None = None

    def csrf_ok(self, presented: str | None) -> bool:
        """Whether ``presented`` is this session's CSRF token (constant time)."""
        if not presented:
            return False
        return hmac.compare_digest(_digest(presented), _digest(self.csrf))


@attrs.define(eq=False)
class SessionStore:
    """Sessions in memory, bounded and expiring (restarting the admin logs everyone out).

    Admins' sessions and pre-login sessions live in separate tables with their own bounds
    (oldest dropped first) and lifetimes. ``now`` is passed in by callers
    (``time.monotonic()``), so tests control the clock.
    """

    ttl: float = 8 * 3600.0
    max_sessions: int = 1_000
    anonymous_ttl: float = 900.0
    max_anonymous: int = 1_000
    _sessions: OrderedDict[str, Session] = attrs.Factory(OrderedDict)
    _anonymous: OrderedDict[str, Session] = attrs.Factory(OrderedDict)

    def __len__(self) -> int:
        """Admins' sessions held."""
        return len(self._sessions)

    def new(self, now: float, admin: str | None = None) -> Session:
        """Start a session for ``admin``, or a pre-login one (``None``)."""
        table = self._anonymous if admin is None else self._sessions
        limit = self.max_anonymous if admin is None else self.max_sessions
        ttl = self.anonymous_ttl if admin is None else self.ttl
        self._prune(table, now)
        session = Session(
            sid=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(32),
            expires=now + ttl,
            admin=admin,
        )
        table[session.sid] = session
        while len(table) > limit:
            table.popitem(last=False)
        return session

    def get(self, sid: str | None, now: float) -> Session | None:
        """The live session with id ``sid``, else ``None``."""
        if not sid:
            return None
        for table in (self._sessions, self._anonymous):
            session = table.get(sid)
            if session is not None:
                if now >= session.expires:
                    del table[sid]
                    return None
                return session
        return None

    def login(self, old: Session | None, admin: str, now: float) -> Session:
        """Replace ``old`` (the pre-login session) by a fresh session for ``admin``."""
        if old is not None:
            self.end(old.sid)
        return self.new(now, admin)

    def end(self, sid: str) -> None:
        """Forget a session (logout)."""
        self._sessions.pop(sid, None)
        self._anonymous.pop(sid, None)

    @staticmethod
    def _prune(table: OrderedDict[str, Session], now: float) -> None:
        # Oldest first, and all share one lifetime: stop at the first live one.
        while table:
            sid, session = next(iter(table.items()))
            if now < session.expires:
                break
            del table[sid]
