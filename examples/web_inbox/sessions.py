"""Who is signed in to the web inbox, and the checks every request passes.

An agent signs in with its own database role's name and password: the app tries a connection
as that role with that password and closes it at once. The app keeps no password and no hash;
PostgreSQL's own authentication (scram-sha-256 in pg_hba.conf) checks it. A session is a random
cookie naming {role, CSRF token, expiry}, in memory only (a restart signs everyone out).

Every request that changes something (every POST, sign-in included) must carry an Origin header
equal to the app's own origin, and, once signed in, an X-CSRF-Token header equal to the
session's: a page on another origin can make a browser post a form with the cookie attached,
but can set neither.
"""

import hmac
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass

import psycopg
from aiohttp import web

from pool import RoleRefused

COOKIE = "web_inbox_session"
# Failed sign-ins allowed per role name in a sliding window; beyond them the role is refused
# without trying the password, so a guesser gets 5 tries a minute per agent.
FAILURES_ALLOWED = 5
FAILURE_WINDOW_S = 60.0
# Names longer than this are not PostgreSQL role names (NAMEDATALEN - 1 bytes).
MAX_ROLE_BYTES = 63
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

log = logging.getLogger("web_inbox")


def refused(status, error, **headers):
    return web.json_response({"error": error}, status=status, headers=headers or None)


@dataclass
class Session:
    token: str
    role: str
    csrf: str
    expires: float  # time.monotonic()


class Sessions:
    def __init__(self, lifetime_s):
        self.lifetime_s = lifetime_s
        self.by_token: dict[str, Session] = {}

    def create(self, role):
        session = Session(secrets.token_urlsafe(32), role, secrets.token_urlsafe(32), time.monotonic() + self.lifetime_s)
        self.by_token[session.token] = session
        return session

    def get(self, token):
        session = self.by_token.get(token) if token else None
        if session and session.expires <= time.monotonic():
            del self.by_token[token]
            return None
        return session

    def end(self, token):
        self.by_token.pop(token, None)

    def end_role(self, role):
        for token in [t for t, s in self.by_token.items() if s.role == role]:
            del self.by_token[token]

    def sweep(self):
        now = time.monotonic()
        for token in [t for t, s in self.by_token.items() if s.expires <= now]:
            del self.by_token[token]


class FailedSignIns:
    def __init__(self, allowed=FAILURES_ALLOWED, window_s=FAILURE_WINDOW_S):
        self.allowed, self.window_s = allowed, window_s
        self.times: dict[str, deque] = {}

    def _recent(self, role):
        times = self.times.get(role)
        if times is None:
            return ()
        while times and times[0] <= time.monotonic() - self.window_s:
            times.popleft()
        if not times:
            del self.times[role]  # (so names tried once do not pile up)
        return times

    def wait_s(self, role):
        """Seconds until `role` may be tried again, or 0."""
        times = self._recent(role)
        return times[0] + self.window_s - time.monotonic() if len(times) >= self.allowed else 0

    def record(self, role):
        self._recent(role)
        self.times.setdefault(role, deque()).append(time.monotonic())


def guard(origin, sessions):
    """The middleware: Origin on every POST, a session on /api/* and /media/*, the CSRF token on
    every POST but the sign-in. Refused with 403 (not from this page) or 401 (not signed in)."""

    @web.middleware
    async def check(request, handler):
        if request.method not in SAFE_METHODS:
            # A browser always sends Origin with a POST; no Origin (or "null") is refused too.
            given = request.headers.get("Origin")
            if given != origin:
                return refused(403, f"refused: a change must come from the web inbox's own page ({origin}); "
                                    f"this request came from {given or 'no Origin'}")
        session = sessions.get(request.cookies.get(COOKIE))
        request["session"] = session
        path = request.path
        changes = request.method not in SAFE_METHODS and path != "/login"
        if session is None and (changes or path.startswith(("/api/", "/media/"))):
            return refused(401, "not signed in: sign in with your agent role")
        if changes:
            given = request.headers.get("X-CSRF-Token", "")
            if not hmac.compare_digest(given.encode(), session.csrf.encode()):
                return refused(403, "refused: missing or wrong X-CSRF-Token (reload the page)")
        return await handler(request)

    return check


class SignIn:
    """POST /login, POST /logout and GET /api/session."""

    def __init__(self, dsn, pool, hub, sessions, secure_cookie):
        self.dsn, self.pool, self.hub, self.sessions = dsn, pool, hub, sessions
        self.secure_cookie = secure_cookie
        self.failures = FailedSignIns()

    async def login(self, request):
        try:
            data = await request.json()
        except ValueError:
            data = None
        role, password = (data.get("role"), data.get("password")) if isinstance(data, dict) else (None, None)
        if not isinstance(role, str) or not isinstance(password, str) or not role or not password:
            # (An empty password would also let libpq fall back to PGPASSWORD or a password file.)
            return refused(400, "sign in with your agent role's name and its password")
        wait = self.failures.wait_s(role)
        if wait:
            return refused(429, f"too many failed sign-ins as {role}: try again in {int(wait) + 1} s",
                           **{"Retry-After": str(int(wait) + 1)})
        if len(role.encode()) > MAX_ROLE_BYTES:
            self.failures.record(role)
            return refused(401, "wrong role name or password")
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.dsn, user=role, password=password, autocommit=True, application_name="web_inbox sign-in"
            )
        except psycopg.OperationalError:
            # libpq says why only in words: a database that does not answer the app's own role
            # either is down (503, not the agent's fault); otherwise the password or name was wrong.
            async with self.pool.transaction(None):
                pass
            self.failures.record(role)
            log.info("sign-in as %s refused: wrong role name or password", role)
            return refused(401, "wrong role name or password")
        try:
            checked = conn.pgconn.used_password
            cur = await conn.execute(
                """SELECT r.rolsuper, r.rolbypassrls,
                          COALESCE(pg_catalog.pg_has_role(r.oid, e.extowner, 'USAGE'), false) AS owns
                     FROM pg_catalog.pg_roles r
                     LEFT JOIN pg_catalog.pg_extension e ON e.extname = 'whatsapp_channel'
                    WHERE r.rolname = current_user"""
            )
            superuser, bypassrls, owner = await cur.fetchone()
        finally:
            await conn.close()
        if not checked:
            return refused(403, "the database let this role in without asking for its password (pg_hba.conf "
                                "trusts this connection): the web inbox signs no one in until pg_hba.conf asks "
                                "for scram-sha-256 on its connection")
        why = ("is a superuser" if superuser else "may bypass row-level security (BYPASSRLS)" if bypassrls
               else "has the privileges of the extension's owner" if owner else None)
        if why:
            return refused(403, f"sign in as an agent role, not an administrator: {role} {why}")
        try:
            async with self.pool.transaction(role) as cur:
                await cur.execute("SELECT session_user AS app_role")
                if (await cur.fetchone())["app_role"] == role:
                    return refused(403, f"sign in as an agent role, not as the web inbox's own ({role})")
                await self.hub.read_channels(cur, role)
        except RoleRefused as e:
            return refused(403, f"the web inbox's own role may not act as {role} ({e}): "
                                f"GRANT {role} TO the web inbox's role (see the README's web inbox section)")
        session = self.sessions.create(role)
        log.info("%s signed in", role)
        response = web.json_response({"role": role, "csrf_token": session.csrf})
        response.set_cookie(COOKIE, session.token, httponly=True, samesite="Strict", path="/",
                            secure=self.secure_cookie, max_age=int(self.sessions.lifetime_s))
        return response

    async def logout(self, request):
        session = request["session"]
        self.sessions.end(session.token)
        self.hub.end_pages(session.token)
        log.info("%s signed out", session.role)
        response = web.json_response({"signed_out": session.role})
        response.del_cookie(COOKIE, path="/")
        return response

    async def session(self, request):
        """Who is signed in, and the CSRF token the page sends back (a page reloaded keeps its
        cookie but not its script's memory). Another origin cannot read this answer."""
        session = request["session"]
        return web.json_response({"role": session.role, "csrf_token": session.csrf})
