"""Fans the LISTEN connection's notifications out to the open pages: each page only those of
its agent's channels.

A notification carries ids only ({"id", "channel_id", ...}); the app's LISTEN connection (as its
own role) hears every channel's, so each is passed on only to the pages whose agent can see its
channel_id: the ids of `SELECT id FROM wa_channels` read as that agent, at sign-in, on every
channel list load and every few seconds (watch_agents in app.py). A page reads the rows
themselves as its agent anyway; this keeps even the ids of other tenants' rows from it.
"""

import asyncio
import json
import logging

log = logging.getLogger("web_inbox")


class Page:
    """One open event stream: the session it belongs to and its queue of (event, data)."""

    def __init__(self, session):
        self.token, self.role = session.token, session.role
        self.queue = asyncio.Queue(maxsize=1000)


class Hub:
    def __init__(self):
        self.pages: set[Page] = set()
        self.db_state = {"up": False, "error": "connecting"}
        self.channels_of: dict[str, frozenset] = {}  # role -> ids of the channels it sees
        self.health_of: dict[str, list] = {}         # role -> wa_channel_health as it sees it
        self.warned_unrouted = set()

    def roles(self):
        return {page.role for page in self.pages}

    async def read_channels(self, cur, role):
        await cur.execute("SELECT id FROM wa_channels")
        self.channels_of[role] = frozenset(row["id"] for row in await cur.fetchall())

    def forget_role(self, role):
        self.channels_of.pop(role, None)
        self.health_of.pop(role, None)

    def _put(self, page, item):
        try:
            page.queue.put_nowait(item)
        except asyncio.QueueFull:
            # A page that does not read its events is dropped; its EventSource reconnects and
            # the page catches up by id.
            self.end_page(page)

    def end_page(self, page):
        self.pages.discard(page)
        while not page.queue.empty():
            page.queue.get_nowait()
        page.queue.put_nowait(None)  # ends its stream

    def end_pages(self, token=None, role=None):
        """Ends the streams of one session (sign-out), of one role (it may no longer be acted as),
        or all of them (shutdown)."""
        for page in list(self.pages):
            if (token is None or page.token == token) and (role is None or page.role == role):
                self.end_page(page)

    def publish_to_role(self, role, event, data):
        for page in list(self.pages):
            if page.role == role:
                self._put(page, (event, data))

    def publish_note(self, event, payload):
        """A notification, to the pages whose agent sees its channel; one without a channel_id
        (from an extension older than the ids-only notifications) goes to nobody."""
        try:
            note = json.loads(payload)
        except ValueError:
            note = None
        channel_id = note.get("channel_id") if isinstance(note, dict) else None
        if channel_id is None:
            if event not in self.warned_unrouted:
                self.warned_unrouted.add(event)
                log.warning("a %s notification without a channel_id is passed on to no page: "
                            "ALTER EXTENSION whatsapp_channel UPDATE", event)
            return
        for page in list(self.pages):
            if channel_id in self.channels_of.get(page.role, ()):
                self._put(page, (event, note))

    def set_db_state(self, up, error=None):
        state = {"up": up, "error": error}
        if state != self.db_state:
            self.db_state = state
            log.info("database %s%s", "up" if up else "down", f": {error}" if error else "")
            for page in list(self.pages):
                self._put(page, ("db", state))
