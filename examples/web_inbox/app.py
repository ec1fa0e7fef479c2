#!/usr/bin/env python3
"""A small web inbox on whatsapp_channel's public SQL API.

One process (aiohttp + psycopg 3): a JSON API over the extension's views and functions, a page
(static/, no build step), and one LISTEN connection whose notifications are pushed to every open
page as Server-Sent Events. Notifications only say "look at row N" (ids, nothing else: LISTEN
needs no privilege); the page reads the rows, by id, through this role's privileges, so after a
lost connection (the database restarted, the page reloaded) it catches up from the last id it
has and misses nothing, as examples/inbox_client.py does.

It connects as an ordinary inbox role with the grants of the README's "Roles" section:

    python3 examples/web_inbox/app.py --dsn "host=/var/tmp/whatsapp_channel port=5499 user=inbox_app dbname=postgres"

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
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

STATIC = Path(__file__).resolve().parent / "static"
NOTIFY_CHANNELS = ("wa_message", "wa_status", "wa_media")
# The event name each notification channel gets on the page.
EVENT_OF = {"wa_message": "message", "wa_status": "status", "wa_media": "media"}
PAGE_SIZE = 50
# How long a restarting database is left alone between reconnection attempts.
RECONNECT_DELAY_S = 1.0
# wa_channel_health changes without a notification (a refused POST only counts), so it is read
# on this interval, once for all pages, and pushed only when it changed.
HEALTH_INTERVAL_S = 2.0
# Images the browser may show inline; anything else is offered as a download, so that a file a
# customer sent (an SVG or HTML with script in it, say) is never run as part of this page.
INLINE_IMAGE_TYPES = {"image/jpeg", "image/png", "image/webp", "image/gif"}

log = logging.getLogger("web_inbox")

CHANNELS = "SELECT id, name, enabled FROM wa_channels ORDER BY name"
CHANNEL_NAME = "SELECT name FROM wa_channels WHERE id = %s"

CONVERSATION_COLUMNS = """
    conversation_id, channel_id, channel, contact_id, wa_id, user_id, profile_name, username,
    last_message_id, last_direction, last_type, last_body, last_message_at, unread_count,
    window_open, window_closes_at, group_id, group_subject, saved_name
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

CONVERSATION = f"SELECT {CONVERSATION_COLUMNS} FROM wa_conversations WHERE conversation_id = %s"

MESSAGE_COLUMNS = """
    SELECT m.id, m.direction, m.type, m.body, m.status, m.wamid, m.source, m.created_at, m.sent_at,
           m.reply_to_wamid, m.reaction_to_wamid, m.reaction_emoji, m.original_wamid,
           m.edited_at, m.revoked_at, m.media_id IS NOT NULL AS has_media, m.media_mime_type,
           m.media_filename, m.voice, m.latitude, m.longitude, m.location_name, m.location_address,
           m.error_code, m.error_title, m.error_details, m.error_hint,
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
     WHERE {where} AND m.id = ANY(%s) ORDER BY m.id"""

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


class DatabaseDown(Exception):
    """The database could not be reached: said on the page, never silently dropped."""


def refusal(e: psycopg.Error):
    """The extension's refusal as the page shows it: its message and hint, word for word."""
    if e.sqlstate is None:  # no answer from the server at all: the connection failed
        return json_response({"error": f"database unreachable: {str(e).strip()}"}, status=503)
    return json_response(
        {"error": e.diag.message_primary, "hint": e.diag.message_hint, "sqlstate": e.sqlstate}, status=422
    )


class Hub:
    """Fans notifications out to every open page (one queue each) and knows the database's state."""

    def __init__(self):
        self.pages: set[asyncio.Queue] = set()
        self.db_state = {"up": False, "error": "connecting"}
        self.health = None

    def publish(self, event, data):
        for queue in list(self.pages):
            try:
                queue.put_nowait((event, data))
            except asyncio.QueueFull:
                # A page that does not read its events is dropped; its EventSource reconnects
                # and the page catches up by id.
                self.pages.discard(queue)
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)

    def set_db_state(self, up, error=None):
        state = {"up": up, "error": error}
        if state != self.db_state:
            self.db_state = state
            log.info("database %s%s", "up" if up else "down", f": {error}" if error else "")
            self.publish("db", state)


class Inbox:
    def __init__(self, dsn):
        self.dsn = dsn
        self.hub = Hub()

    async def connect(self):
        try:
            return await psycopg.AsyncConnection.connect(self.dsn, autocommit=True, application_name="web_inbox")
        except psycopg.OperationalError as e:
            raise DatabaseDown(str(e).strip()) from e

    async def query(self, sql, params=()):
        """Rows as dicts, on a connection of their own (one per request keeps the example simple)."""
        async with await self.connect() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(sql, params)
            return await cur.fetchall()

    # -- background tasks ------------------------------------------------------------------------

    async def listen_forever(self):
        """LISTEN, then tell the pages the database is up so they catch up: a message committed
        in between is seen twice, and the page drops the second by id."""
        while True:
            try:
                async with await self.connect() as conn:
                    for channel in NOTIFY_CHANNELS:  # constant identifiers, not values
                        await conn.execute(f"LISTEN {channel}")
                    self.hub.set_db_state(True)
                    while True:
                        async for note in conn.notifies(timeout=10.0):
                            self.hub.publish(EVENT_OF[note.channel], parse_payload(note.payload))
                        # Quiet for a while: make sure the server is still there.
                        await conn.execute("SELECT 1")
            except (DatabaseDown, psycopg.OperationalError) as e:
                self.hub.set_db_state(False, str(e).strip().splitlines()[0] if str(e).strip() else "connection lost")
            await asyncio.sleep(RECONNECT_DELAY_S)

    async def watch_health(self):
        while True:
            try:
                health = await self.query(HEALTH)
                if health != self.hub.health:
                    self.hub.health = health
                    self.hub.publish("health", health)
            except (DatabaseDown, psycopg.OperationalError):
                pass  # listen_forever says the database is down
            except psycopg.Error as e:
                log.warning("cannot read wa_channel_health: %s", e.diag.message_primary)
            await asyncio.sleep(HEALTH_INTERVAL_S)

    # -- HTTP handlers ---------------------------------------------------------------------------

    async def events(self, request):
        """Server-Sent Events: db (up/down), message, status, media, health."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        await response.prepare(request)
        queue = asyncio.Queue(maxsize=1000)
        self.hub.pages.add(queue)
        try:
            await send_event(response, "db", self.hub.db_state)
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), timeout=15)
                except asyncio.TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if item is None:  # dropped, or the server is shutting down
                    break
                await send_event(response, *item)
        except ConnectionResetError:
            pass  # the page went away
        finally:
            self.hub.pages.discard(queue)
        return response

    async def channels(self, request):
        return json_response(await self.query(CHANNELS))

    async def conversations(self, request):
        q = request.query
        rows = await self.query(
            CONVERSATIONS,
            {
                "channel_id": int(q.get("channel_id", "")),
                "before_at": q.get("before_at") or None,
                "before_id": int(q.get("before_id") or 0),
                "limit": min(int(q.get("limit") or PAGE_SIZE), 200),
            },
        )
        return json_response(rows)

    async def conversation_row(self, conversation_id):
        rows = await self.query(CONVERSATION, (conversation_id,))
        if not rows:
            raise web.HTTPNotFound(text=f"no conversation {conversation_id}")
        return rows[0]

    async def conversation(self, request):
        return json_response(await self.conversation_row(int(request.match_info["id"])))

    async def messages(self, request):
        """?after=ID (oldest first), ?before=ID (the page before it) or ?ids=1,2 (to refresh)."""
        conversation = await self.conversation_row(int(request.match_info["id"]))
        where, key, q = *conversation_filter(conversation), request.query
        limit = min(int(q.get("limit") or PAGE_SIZE), 200)
        async with await self.connect() as conn:
            cur = conn.cursor(row_factory=dict_row)
            if "ids" in q:
                ids = [int(i) for i in q["ids"].split(",") if i]
                await cur.execute(MESSAGES_BY_ID.format(where=where), (*key, ids))
                rows = await cur.fetchall()
            elif "before" in q:
                await cur.execute(MESSAGES_BEFORE.format(where=where), (*key, int(q["before"]), limit))
                rows = list(reversed(await cur.fetchall()))
            else:
                await cur.execute(MESSAGES_AFTER.format(where=where), (*key, int(q.get("after") or 0), limit))
                rows = await cur.fetchall()
            await add_reactions_and_edits(cur, conversation, rows)
        return json_response({"messages": rows, "page_size": limit})

    async def templates(self, request):
        return json_response(await self.query(TEMPLATES, (int(request.match_info["id"]),)))

    async def health(self, request):
        return json_response(await self.query(HEALTH))

    async def send_text(self, request):
        conversation = await self.conversation_row(int(request.match_info["id"]))
        data = await request.json()
        return await self.call(
            "SELECT wa_send_text(%s, %s, %s, %s)",
            (conversation["channel"], recipient_of(conversation), data.get("body", ""), data.get("reply_to") or None),
        )

    async def send_template(self, request):
        conversation = await self.conversation_row(int(request.match_info["id"]))
        data = await request.json()
        return await self.call(
            "SELECT wa_send_template(%s, %s, %s, %s, %s)",
            (
                conversation["channel"],
                recipient_of(conversation),
                data["name"],
                data["language"],
                template_components(data.get("parameters") or {}),
            ),
        )

    async def send_template_to_number(self, request):
        """A first message to a number that never wrote (only a template may be): the number is
        passed as typed, so a wrong one gets the extension's own refusal."""
        channels = await self.query(CHANNEL_NAME, (int(request.match_info["id"]),))
        if not channels:
            raise web.HTTPNotFound(text="no such channel")
        data = await request.json()
        return await self.call(
            "SELECT wa_send_template(%s, %s, %s, %s, %s)",
            (
                channels[0]["name"],
                data.get("recipient", ""),
                data["name"],
                data["language"],
                template_components(data.get("parameters") or {}),
            ),
        )

    async def mark_read(self, request):
        conversation = await self.conversation_row(int(request.match_info["id"]))
        if conversation["group_id"]:
            return json_response({"id": None})  # groups have no read receipts; writing clears unread
        rows = await self.query(LAST_INBOUND_WAMID, (conversation["contact_id"],))
        if not rows:
            return json_response({"id": None})
        return await self.call("SELECT wa_mark_read(%s, %s)", (conversation["channel"], rows[0]["wamid"]))

    async def call(self, sql, params):
        """Runs one wa_send_* call; a refusal goes back to the page as the extension worded it."""
        try:
            async with await self.connect() as conn:
                row = await (await conn.execute(sql, params)).fetchone()
            return json_response({"id": row[0]})
        except psycopg.Error as e:
            return refusal(e)

    async def media(self, request):
        rows = await self.query(MEDIA, (int(request.match_info["id"]),))
        if not rows:
            raise web.HTTPNotFound(text="no such media message")
        media = rows[0]
        if media["content"] is None:
            raise web.HTTPNotFound(text="not downloaded (yet)")
        headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600"}
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


def parse_payload(payload):
    try:
        return json.loads(payload)
    except ValueError:
        return {"payload": payload}  # not the extension's JSON: passed on as text, the page re-reads anyway


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
        response = await handler(request)
    except DatabaseDown as e:
        return json_response({"error": f"database unreachable: {e}"}, status=503)
    except psycopg.OperationalError as e:
        return json_response({"error": f"database unreachable: {str(e).strip()}"}, status=503)
    except psycopg.Error as e:
        return refusal(e)
    except ValueError as e:
        return json_response({"error": f"bad request: {e}"}, status=400)
    # The page renders everything with textContent and loads nothing from elsewhere.
    response.headers.setdefault(
        "Content-Security-Policy", "default-src 'self'; img-src 'self'; object-src 'none'; frame-ancestors 'none'"
    )
    return response


def make_app(dsn):
    inbox = Inbox(dsn)
    app = web.Application(middlewares=[errors_as_json])
    app.add_routes(
        [
            web.get("/", inbox.index),
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
            web.get("/api/health", inbox.health),
            web.get("/media/{id}", inbox.media),
            web.static("/static", STATIC),
        ]
    )

    async def start_background(app):
        app["tasks"] = [asyncio.create_task(inbox.listen_forever()), asyncio.create_task(inbox.watch_health())]

    async def stop_background(app):
        for queue in list(inbox.hub.pages):  # ends every event stream, so shutdown does not wait on them
            queue.put_nowait(None)
        for task in app["tasks"]:
            task.cancel()

    app.on_startup.append(start_background)
    app.on_shutdown.append(stop_background)
    return app


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="libpq connection string, as the inbox role (not a superuser)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s web_inbox: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    print(f"web inbox on http://{args.host}:{args.port}", flush=True)
    web.run_app(make_app(args.dsn), host=args.host, port=args.port, print=None, shutdown_timeout=2)


if __name__ == "__main__":
    main()
