#!/usr/bin/env python3
"""A small web inbox on whatsapp_channel's public SQL API.

One process (aiohttp + psycopg 3): a JSON API over the extension's views and functions, a page
(static/, no build step), and one LISTEN connection whose notifications are pushed to the open
pages as Server-Sent Events. Notifications only say "look at row N" (ids, nothing else: LISTEN
needs no privilege); the page reads the rows, by id, through its agent's privileges, so after a
lost connection (the database restarted, the page reloaded) it catches up from the last id it
has and misses nothing, as examples/inbox_client.py does.

Agents sign in with their own database role and password (sessions.py). The app connects as its
own login role (web_inbox: NOINHERIT, a member of each agent role), and runs every request in a
transaction that begins with SET LOCAL ROLE <agent> (pool.py): an agent sees and sends only on
the channels granted to it (wa_grant_channel), and a page is sent only its channels' notifications.

    PGPASSFILE=... python3 examples/web_inbox/app.py --dsn "host=127.0.0.1 port=5432 user=web_inbox dbname=postgres"

Then open http://127.0.0.1:8000. Requirements (pinned): examples/web_inbox/requirements.txt.
"""

import argparse
import asyncio
import datetime
import json
import logging
import re
from pathlib import Path

import psycopg
from aiohttp import web
from psycopg.types.json import Jsonb

from hub import Hub, Page
from pool import DatabaseDown, Pool, RoleRefused, first_line
from sessions import COOKIE, SignIn, Sessions, guard

STATIC = Path(__file__).resolve().parent / "static"
NOTIFY_CHANNELS = ("wa_message", "wa_status", "wa_media", "wa_contact", "wa_call", "wa_action")
# The event name each notification channel gets on the page.
EVENT_OF = {"wa_message": "message", "wa_status": "status", "wa_media": "media", "wa_contact": "contact",
            "wa_call": "call", "wa_action": "action"}
PAGE_SIZE = 50
# How long a restarting database is left alone between reconnection attempts.
RECONNECT_DELAY_S = 1.0
# wa_channel_health changes without a notification (a refused POST only counts), so it is read
# on this interval, once for each agent with a page open (with the ids of its channels, which a
# grant or revocation changes), and pushed to its pages only when it changed.
HEALTH_INTERVAL_S = 2.0
# The default for --pool-size: connections open at once (requests beyond wait for one).
POOL_SIZE = 4
# Images the browser may show inline; anything else is offered as a download, so that a file a
# customer sent (an SVG or HTML with script in it, say) is never run as part of this page.
INLINE_IMAGE_TYPES = {"image/jpeg", "image/png", "image/webp", "image/gif"}

log = logging.getLogger("web_inbox")

CHANNELS = "SELECT id, name, enabled FROM wa_channels ORDER BY name"
CHANNEL_NAME = "SELECT name FROM wa_channels WHERE id = %s"

CONVERSATION_COLUMNS = """
    conversation_id, channel_id, channel, contact_id, wa_id, user_id, profile_name, username,
    last_message_id, last_direction, last_type, last_body, last_message_at, unread_count,
    window_open, window_closes_at, group_id, group_subject, saved_name, marketing_opt_out_at
"""

# Newest first, paged by the last row's (last_message_at, conversation_id).
CONVERSATIONS = f"""
    SELECT {CONVERSATION_COLUMNS}
      FROM wa_conversations
     WHERE channel_id = %(channel_id)s
       AND (%(before_at)s::timestamptz IS NULL
            OR (last_message_at, conversation_id) < (%(before_at)s::timestamptz, %(before_id)s::bigint))
     ORDER BY last_message_at DESC NULLS LAST, conversation_id DESC
     LIMIT %(limit)s
"""

# (blocked_at: wa_block() through the action outbox sets it once Meta confirms.)
CONVERSATION = f"""
    SELECT {CONVERSATION_COLUMNS},
           (SELECT k.blocked_at FROM wa_contacts k WHERE k.id = wa_conversations.contact_id) AS blocked_at
      FROM wa_conversations WHERE conversation_id = %s"""

# The customer's calls still ringing, each with the SDP offer of its connect event (the page's
# WebRTC stack answers it: signalling only, no media here).
RINGING_CALLS = """
    SELECT c.id, c.call_id, c.rang_at,
           (SELECT e.payload -> 'session' ->> 'sdp' FROM wa_call_events e
             WHERE e.channel_id = c.channel_id AND e.call_id = c.call_id AND e.event = 'connect'
             ORDER BY e.id LIMIT 1) AS offer_sdp
      FROM wa_calls c
     WHERE c.contact_id = %s AND c.status = 'ringing' AND c.direction = 'inbound'
     ORDER BY c.id"""

# What the page does to a ringing call: accept is pre_accept then accept (the outbox performs
# them in that order), with the same SDP answer; reject ends it.
CALL_ACTIONS = {"accept": ("pre_accept", "accept"), "reject": ("reject",)}

MESSAGE_COLUMNS = """
    SELECT m.id, m.direction, m.type, m.body, m.status, m.wamid, m.source, m.created_at, m.sent_at,
           m.reply_to_wamid, m.reaction_to_wamid, m.reaction_emoji, m.original_wamid,
           m.edited_at, m.revoked_at, m.media_id IS NOT NULL AS has_media, m.media_mime_type,
           m.media_filename, m.voice, m.latitude, m.longitude, m.location_name, m.location_address,
           m.error_code, m.error_title, m.error_details, m.error_hint, m.flow_response, m.flow_token,
           m.updated_at, CASE WHEN m.status = 'scheduled' THEN m.next_attempt_at END AS send_at,
           q.id AS quoted_id, q.type AS quoted_type, q.body AS quoted_body, q.direction AS quoted_direction
      FROM wa_messages m
      LEFT JOIN LATERAL (SELECT q.id, q.type, q.body, q.direction FROM wa_messages q
                          WHERE q.channel_id = m.channel_id AND q.wamid = m.reply_to_wamid) q ON true
"""
# Read receipts the business sent (wa_mark_read) are rows too, but not part of the conversation.
# `{where}` is a conversation's own messages (conversation_filter), its parameters first.
MESSAGES_AFTER = MESSAGE_COLUMNS + """
     WHERE {where} AND m.type <> 'mark_read' AND m.id > %s ORDER BY m.id LIMIT %s"""
MESSAGES_BEFORE = MESSAGE_COLUMNS + """
     WHERE {where} AND m.type <> 'mark_read' AND m.id < %s ORDER BY m.id DESC LIMIT %s"""
MESSAGES_BY_ID = MESSAGE_COLUMNS + """
     WHERE {where} AND m.type <> 'mark_read' AND m.id = ANY(%s) ORDER BY m.id"""

# What later messages say about these: reactions (the latest per side wins; a NULL emoji removed
# it) and the text of the latest edit.
REACTIONS = """
    SELECT reaction_to_wamid, direction, reaction_emoji FROM wa_messages
     WHERE contact_id = %s AND type = 'reaction' AND reaction_to_wamid = ANY(%s) ORDER BY id"""
EDITS = """
    SELECT original_wamid, body FROM wa_messages
     WHERE channel_id = %s AND type = 'edit' AND original_wamid = ANY(%s)
     ORDER BY COALESCE(sent_at, created_at), id"""

LAST_INBOUND_WAMID = """
    SELECT wamid FROM wa_messages
     WHERE contact_id = %s AND direction = 'inbound' AND wamid IS NOT NULL ORDER BY id DESC LIMIT 1"""

TEMPLATES = """
    SELECT name, language, status, category, components FROM wa_templates
     WHERE channel_id = %s ORDER BY name, language"""

HEALTH = "SELECT * FROM wa_channel_health ORDER BY channel"

MEDIA = """
    SELECT m.media_mime_type, m.media_filename, m.type, wa_media_content(m.id) AS content
      FROM wa_messages m WHERE m.id = %s AND m.media_id IS NOT NULL"""


def json_default(value):
    # Timestamps as ISO 8601 (with the T), which every browser's Date parses.
    return value.isoformat() if isinstance(value, (datetime.datetime, datetime.date)) else str(value)


def to_json(value):
    return json.dumps(value, default=json_default, ensure_ascii=False)


def json_response(value, status=200):
    return web.json_response(value, status=status, dumps=to_json)


def refusal(e: psycopg.Error):
    """The extension's refusal as the page shows it: its message and hint, word for word."""
    if e.sqlstate is None:  # no answer from the server at all: the connection failed
        return json_response({"error": f"database unreachable: {str(e).strip()}"}, status=503)
    return json_response(
        {"error": e.diag.message_primary, "hint": e.diag.message_hint, "sqlstate": e.sqlstate}, status=422
    )


async def fetch(cur, sql, params=()):
    await cur.execute(sql, params)
    return await cur.fetchall()


async def conversation_row(cur, conversation_id):
    """The conversation as the agent sees it: another tenant's is not found (404), not refused."""
    rows = await fetch(cur, CONVERSATION, (conversation_id,))
    if not rows:
        raise web.HTTPNotFound(text=f"no conversation {conversation_id}")
    return rows[0]


async def call(cur, sql, params):
    """Runs one wa_send_* call; a refusal reaches the page as the extension worded it (errors_as_json)."""
    await cur.execute(sql, params)
    return json_response({"id": next(iter((await cur.fetchone()).values()))})


class Inbox:
    def __init__(self, dsn, pool_size):
        self.pool = Pool(dsn, pool_size)
        self.hub = Hub()

    def db(self, request):
        """The request's transaction, as its signed-in agent."""
        return self.pool.transaction(request["session"].role)

    # -- background tasks ------------------------------------------------------------------------

    async def listen_forever(self):
        """LISTEN, then tell the pages the database is up so they catch up: a message committed
        in between is seen twice, and the page drops the second by id."""
        while True:
            try:
                async with await self.pool.connect(autocommit=True, application_name="web_inbox listen") as conn:
                    for channel in NOTIFY_CHANNELS:  # constant identifiers, not values
                        await conn.execute(f"LISTEN {channel}")
                    self.hub.set_db_state(True)
                    while True:
                        async for note in conn.notifies(timeout=10.0):
                            self.hub.publish_note(EVENT_OF[note.channel], note.payload)
                        # Quiet for a while: make sure the server is still there.
                        await conn.execute("SELECT 1")
            except (DatabaseDown, psycopg.OperationalError) as e:
                self.hub.set_db_state(False, first_line(e))
            await asyncio.sleep(RECONNECT_DELAY_S)

    async def watch_agents(self, sessions):
        """For each agent with a page open: its channels (for the fan-out) and its channel health."""
        while True:
            sessions.sweep()
            for role in self.hub.roles():
                try:
                    async with self.pool.transaction(role) as cur:
                        await self.hub.read_channels(cur, role)
                        health = await fetch(cur, HEALTH)
                    if health != self.hub.health_of.get(role):
                        self.hub.health_of[role] = health
                        self.hub.publish_to_role(role, "health", health)
                except RoleRefused as e:
                    log.warning("the app may no longer act as %s (%s): its sessions are ended", role, e)
                    sessions.end_role(role)
                    self.hub.end_pages(role=role)
                    self.hub.forget_role(role)
                except DatabaseDown:
                    break  # listen_forever says the database is down
                except psycopg.Error as e:
                    if e.sqlstate is None:  # the connection failed
                        break
                    log.warning("cannot read wa_channel_health as %s: %s", role, e.diag.message_primary)
            await asyncio.sleep(HEALTH_INTERVAL_S)

    # -- HTTP handlers ---------------------------------------------------------------------------

    async def events(self, request):
        """Server-Sent Events: db (up/down), and the agent's message, status, media and health."""
        session, sessions = request["session"], request.app["sessions"]
        try:
            async with self.db(request) as cur:
                await self.hub.read_channels(cur, session.role)
        except (DatabaseDown, psycopg.OperationalError):
            pass  # the "db" event says so; the page catches up when the database is back
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        await response.prepare(request)
        page = Page(session)
        self.hub.pages.add(page)
        try:
            await send_event(response, "db", self.hub.db_state)
            while sessions.get(session.token) is session:  # signed out or expired: the stream ends
                try:
                    item = await asyncio.wait_for(page.queue.get(), timeout=15)
                except asyncio.TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if item is None:  # dropped, signed out, or the server is shutting down
                    break
                await send_event(response, *item)
        except ConnectionResetError:
            pass  # the page went away
        finally:
            self.hub.pages.discard(page)
        return response

    async def channels(self, request):
        async with self.db(request) as cur:
            rows = await fetch(cur, CHANNELS)
        self.hub.channels_of[request["session"].role] = frozenset(r["id"] for r in rows)
        return json_response(rows)

    async def conversations(self, request):
        q = request.query
        params = {
            "channel_id": int(q.get("channel_id", "")),
            "before_at": q.get("before_at") or None,
            "before_id": int(q.get("before_id") or 0),
            "limit": min(int(q.get("limit") or PAGE_SIZE), 200),
        }
        async with self.db(request) as cur:
            return json_response(await fetch(cur, CONVERSATIONS, params))

    async def conversation(self, request):
        async with self.db(request) as cur:
            return json_response(await conversation_row(cur, int(request.match_info["id"])))

    async def messages(self, request):
        """?after=ID (oldest first), ?before=ID (the page before it) or ?ids=1,2 (to refresh)."""
        q = request.query
        limit = min(int(q.get("limit") or PAGE_SIZE), 200)
        async with self.db(request) as cur:
            conversation = await conversation_row(cur, int(request.match_info["id"]))
            where, key = conversation_filter(conversation)
            if "ids" in q:
                ids = [int(i) for i in q["ids"].split(",") if i]
                rows = await fetch(cur, MESSAGES_BY_ID.format(where=where), (*key, ids))
            elif "before" in q:
                rows = list(reversed(await fetch(cur, MESSAGES_BEFORE.format(where=where), (*key, int(q["before"]), limit))))
            else:
                rows = await fetch(cur, MESSAGES_AFTER.format(where=where), (*key, int(q.get("after") or 0), limit))
            await add_reactions_and_edits(cur, conversation, rows)
        return json_response({"messages": rows, "page_size": limit})

    async def templates(self, request):
        async with self.db(request) as cur:
            return json_response(await fetch(cur, TEMPLATES, (int(request.match_info["id"]),)))

    async def health(self, request):
        async with self.db(request) as cur:
            return json_response(await fetch(cur, HEALTH))

    async def send_text(self, request):
        data = await request.json()
        async with self.db(request) as cur:
            conversation = await conversation_row(cur, int(request.match_info["id"]))
            return await call(cur, "SELECT wa_send_text(%s, %s, %s, %s, send_at => %s)", (
                conversation["channel"], recipient_of(conversation), data.get("body", ""), data.get("reply_to") or None,
                data.get("send_at") or None))

    async def cancel_message(self, request):
        """A queued or scheduled message, not sent after all; wa_cancel_message says why not otherwise."""
        return await self.message_action(request, "SELECT wa_cancel_message(%s)")

    async def retry_message(self, request):
        """A failed message, sent again at its place in the customer's order."""
        return await self.message_action(request, "SELECT wa_retry_message(%s)")

    async def message_action(self, request, sql):
        # (The extension checks the agent's channel: another tenant's id is refused like an unknown one.)
        message_id = int(request.match_info["id"])
        async with self.db(request) as cur:
            await cur.execute(sql, (message_id,))
        return json_response({"id": message_id})

    async def send_template(self, request):
        data = await request.json()
        async with self.db(request) as cur:
            conversation = await conversation_row(cur, int(request.match_info["id"]))
            return await call(cur, "SELECT wa_send_template(%s, %s, %s, %s, %s)", (
                conversation["channel"], recipient_of(conversation), data["name"], data["language"],
                template_components(data.get("parameters") or {})))

    async def send_template_to_number(self, request):
        """A first message to a number that never wrote (only a template may be): the number is
        passed as typed, so a wrong one gets the extension's own refusal."""
        data = await request.json()
        async with self.db(request) as cur:
            channels = await fetch(cur, CHANNEL_NAME, (int(request.match_info["id"]),))
            if not channels:
                raise web.HTTPNotFound(text="no such channel")
            return await call(cur, "SELECT wa_send_template(%s, %s, %s, %s, %s)", (
                channels[0]["name"], data.get("recipient", ""), data["name"], data["language"],
                template_components(data.get("parameters") or {})))

    async def block(self, request):
        """{"blocked": true|false}: wa_block / wa_unblock of the conversation's customer (an action,
        done after COMMIT; the page hears wa_action and reads the row again)."""
        data = await request.json()
        async with self.db(request) as cur:
            conversation = await conversation_row(cur, int(request.match_info["id"]))
            if conversation["group_id"]:
                raise web.HTTPBadRequest(text="a group cannot be blocked")
            function = "wa_block" if data.get("blocked") else "wa_unblock"
            return await call(cur, f"SELECT {function}(%s, ARRAY[%s])", (conversation["channel"], recipient_of(conversation)))

    async def calls(self, request):
        async with self.db(request) as cur:
            conversation = await conversation_row(cur, int(request.match_info["id"]))
            if not conversation["contact_id"]:
                return json_response([])
            return json_response(await fetch(cur, RINGING_CALLS, (conversation["contact_id"],)))

    async def answer_call(self, request):
        """{"action": "accept", "sdp": answer} or {"action": "reject"} for a ringing call of the conversation."""
        data = await request.json()
        actions = CALL_ACTIONS.get(data.get("action"))
        if actions is None:
            raise web.HTTPBadRequest(text="action is accept or reject")
        async with self.db(request) as cur:
            conversation = await conversation_row(cur, int(request.match_info["id"]))
            calls = await fetch(cur, RINGING_CALLS, (conversation["contact_id"],)) if conversation["contact_id"] else []
            call_id = request.match_info["call_id"]
            if call_id not in {c["call_id"] for c in calls}:
                raise web.HTTPNotFound(text=f"no ringing call {call_id} in this conversation")
            sdp = data.get("sdp") if data.get("action") == "accept" else None
            for action in actions:
                result = await call(cur, "SELECT wa_call_action(%s, %s, %s, %s)", (conversation["channel"], call_id, action, sdp))
            return result

    async def mark_read(self, request):
        async with self.db(request) as cur:
            conversation = await conversation_row(cur, int(request.match_info["id"]))
            if conversation["group_id"]:
                return json_response({"id": None})  # groups have no read receipts; writing clears unread
            rows = await fetch(cur, LAST_INBOUND_WAMID, (conversation["contact_id"],))
            if not rows:
                return json_response({"id": None})
            return await call(cur, "SELECT wa_mark_read(%s, %s)", (conversation["channel"], rows[0]["wamid"]))

    async def media(self, request):
        async with self.db(request) as cur:
            rows = await fetch(cur, MEDIA, (int(request.match_info["id"]),))
        if not rows:
            raise web.HTTPNotFound(text="no such media message")
        media = rows[0]
        if media["content"] is None:
            raise web.HTTPNotFound(text="not downloaded (yet)")
        headers = {"Cache-Control": "private, max-age=3600"}
        mime = (media["media_mime_type"] or "").split(";")[0].strip().lower()
        if mime in INLINE_IMAGE_TYPES and "download" not in request.query:
            return web.Response(body=bytes(media["content"]), content_type=mime, headers=headers)
        filename = safe_filename(media["media_filename"] or f"{media['type']}-{request.match_info['id']}")
        headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        return web.Response(body=bytes(media["content"]), content_type="application/octet-stream", headers=headers)

    async def index(self, request):
        return web.FileResponse(STATIC / "index.html")


async def add_reactions_and_edits(cur, conversation, rows):
    wamids = [r["wamid"] for r in rows if r["wamid"]]
    for r in rows:
        r["reactions"], r["edited_body"] = {}, None
    if not wamids:
        return
    by_wamid = {r["wamid"]: r for r in rows if r["wamid"]}
    if not conversation["group_id"]:  # (groups have no reactions)
        await cur.execute(REACTIONS, (conversation["contact_id"], wamids))
        for reaction in await cur.fetchall():
            by_wamid[reaction["reaction_to_wamid"]]["reactions"][reaction["direction"]] = reaction["reaction_emoji"]
    await cur.execute(EDITS, (conversation["channel_id"], wamids))
    for edit in await cur.fetchall():
        by_wamid[edit["original_wamid"]]["edited_body"] = edit["body"]


def conversation_filter(conversation):
    """A conversation's own messages, as SQL and its parameters: a group's, or a customer's 1:1
    ones (not what they wrote in groups). Each is an index scan (wa_messages_group,
    wa_messages_contact)."""
    if conversation["group_id"]:
        return "m.channel_id = %s AND m.group_id = %s", (conversation["channel_id"], conversation["group_id"])
    return "m.contact_id = %s AND m.group_id IS NULL", (conversation["contact_id"],)


def recipient_of(conversation):
    if conversation["group_id"]:
        return conversation["group_id"]
    return "+" + conversation["wa_id"] if conversation["wa_id"] else conversation["user_id"]


def template_components(parameters):
    """Body parameters as Meta takes them: a list is positional ({{1}}, {{2}}), a dict named."""
    if isinstance(parameters, list):
        given = [{"type": "text", "text": str(v)} for v in parameters]
    else:
        given = [{"type": "text", "parameter_name": k, "text": str(v)} for k, v in parameters.items()]
    return Jsonb([{"type": "body", "parameters": given}]) if given else None


def safe_filename(name):
    return re.sub(r'[^A-Za-z0-9._ -]', "_", name)[:100] or "file"


async def send_event(response, event, data):
    await response.write(f"event: {event}\ndata: {to_json(data)}\n\n".encode())


@web.middleware
async def errors_as_json(request, handler):
    """A database that is down, or a query that fails, is said on the page, not swallowed."""
    try:
        return await handler(request)
    except DatabaseDown as e:
        return json_response({"error": f"database unreachable: {e}"}, status=503)
    except RoleRefused as e:
        # The app may no longer act as this agent (its membership was revoked, the role dropped).
        session = request["session"]
        request.app["sessions"].end(session.token)
        response = json_response({"error": f"signed out: the web inbox may no longer act as {session.role} ({e})"}, status=401)
        response.del_cookie(COOKIE, path="/")
        return response
    except psycopg.Error as e:
        # (Not by class: psycopg makes some refusals OperationalError, the closed 24-hour window's 55000.)
        return refusal(e)
    except ValueError as e:
        return json_response({"error": f"bad request: {e}"}, status=400)


async def security_headers(request, response):
    # The page renders everything with textContent and loads nothing from elsewhere; no other
    # origin may frame it, embed its media, or have a file sniffed into something runnable.
    response.headers.setdefault(
        "Content-Security-Policy", "default-src 'self'; img-src 'self'; object-src 'none'; frame-ancestors 'none'"
    )
    response.headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")


def make_app(dsn, origin, pool_size=POOL_SIZE, session_hours=12.0):
    inbox = Inbox(dsn, pool_size)
    sessions = Sessions(session_hours * 3600)
    sign_in = SignIn(dsn, inbox.pool, inbox.hub, sessions, secure_cookie=origin.startswith("https://"))
    app = web.Application(middlewares=[guard(origin, sessions), errors_as_json])
    app["sessions"] = sessions
    app.on_response_prepare.append(security_headers)
    app.add_routes(
        [
            web.get("/", inbox.index),
            web.post("/login", sign_in.login),
            web.post("/logout", sign_in.logout),
            web.get("/api/session", sign_in.session),
            web.get("/api/events", inbox.events),
            web.get("/api/channels", inbox.channels),
            web.get("/api/channels/{id}/templates", inbox.templates),
            web.post("/api/channels/{id}/template", inbox.send_template_to_number),
            web.get("/api/conversations", inbox.conversations),
            web.get("/api/conversations/{id}", inbox.conversation),
            web.get("/api/conversations/{id}/messages", inbox.messages),
            web.post("/api/conversations/{id}/text", inbox.send_text),
            web.post("/api/conversations/{id}/template", inbox.send_template),
            web.post("/api/conversations/{id}/read", inbox.mark_read),
            web.post("/api/messages/{id}/cancel", inbox.cancel_message),
            web.post("/api/messages/{id}/retry", inbox.retry_message),
            web.post("/api/conversations/{id}/block", inbox.block),
            web.get("/api/conversations/{id}/calls", inbox.calls),
            web.post("/api/conversations/{id}/calls/{call_id}", inbox.answer_call),
            web.get("/api/health", inbox.health),
            web.get("/media/{id}", inbox.media),
            web.static("/static", STATIC),
        ]
    )

    async def start_background(app):
        app["tasks"] = [asyncio.create_task(inbox.listen_forever()), asyncio.create_task(inbox.watch_agents(sessions))]

    async def stop_background(app):
        inbox.hub.end_pages()  # ends every event stream, so shutdown does not wait on them
        for task in app["tasks"]:
            task.cancel()
        await inbox.pool.close()

    app.on_startup.append(start_background)
    app.on_shutdown.append(stop_background)
    return app


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="libpq connection string, as the app's own role (web_inbox: "
                        "NOINHERIT, a member of each agent role); agents sign in over the same route, so pg_hba.conf "
                        "must ask for scram-sha-256 on it. Its own password: in PGPASSFILE, not here")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--origin", help="the origin the page is served from, as the browser sees it (default "
                        "http://HOST:PORT; behind an https proxy: https://inbox.example.com). Every POST must carry "
                        "it as its Origin header; with https the session cookie is Secure")
    parser.add_argument("--pool-size", type=int, default=POOL_SIZE, help="connections to the database at once")
    parser.add_argument("--session-hours", type=float, default=12.0, help="how long a sign-in lasts")
    args = parser.parse_args()
    origin = (args.origin or f"http://{args.host}:{args.port}").rstrip("/")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s web_inbox: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    print(f"web inbox on http://{args.host}:{args.port} (origin {origin})", flush=True)
    app = make_app(args.dsn, origin, args.pool_size, args.session_hours)
    web.run_app(app, host=args.host, port=args.port, print=None, shutdown_timeout=2)


if __name__ == "__main__":
    main()
