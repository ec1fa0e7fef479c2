#!/usr/bin/env python3
"""A minimal inbox client for whatsapp_channel.

It LISTENs on wa_message and wa_status, prints new conversations and messages as they arrive,
and, with --reply, answers each inbound message with wa_send_text(). After a lost connection it
reconnects and catches up by id, so no message is missed: notifications only say "look at row
N" (ids, nothing else: LISTEN needs no privilege, so any role may hear them); the rows, read
with this role's own privileges, are the truth.

    python3 examples/inbox_client.py --dsn "host=/var/tmp/whatsapp_channel port=5499 user=postgres"
    python3 examples/inbox_client.py --dsn ... --reply "Thanks, an agent will be with you shortly."

Needs psycopg 3 (Debian: python3-psycopg; pip: psycopg[binary]).
"""

import argparse
import json
import sys
import time

import psycopg

NEW_MESSAGES = """
    SELECT m.id, c.name, m.type, m.body, k.id, coalesce(k.profile_name, ''), coalesce(k.wa_id, k.user_id)
      FROM wa_messages m
      JOIN wa_channels c ON c.id = m.channel_id
      LEFT JOIN wa_contacts k ON k.id = m.contact_id
     WHERE m.direction = 'inbound' AND m.id > %s
     ORDER BY m.id
"""

STATUS = "SELECT status, error_title FROM wa_messages WHERE id = %s"


def say(line):
    print(line, flush=True)


class Inbox:
    def __init__(self, args):
        self.args = args
        self.last_id = args.since_id
        self.known_contacts = set()
        self.handled = 0

    def show_status(self, conn, note):
        """A status notification names the message ({"id", "channel_id"}): its row says where it is."""
        msg_id = json.loads(note.payload)["id"]
        row = conn.execute(STATUS, (msg_id,)).fetchone()
        if row is not None:  # (not a message this role may read)
            say(f"status: message {msg_id} is {row[0]}" + (f" ({row[1]})" if row[1] else ""))

    def run(self):
        while True:
            try:
                with psycopg.connect(self.args.dsn, autocommit=True, application_name="inbox_client") as conn:
                    conn.execute("LISTEN wa_message")
                    conn.execute("LISTEN wa_status")
                    # LISTEN first, then catch up: a message committed in between is seen by both,
                    # and the id check below drops the second sighting.
                    self.catch_up(conn)
                    say(f"ready: listening, caught up to message {self.last_id}")
                    if self.done():
                        return
                    for note in conn.notifies():
                        if note.channel == "wa_message":
                            self.catch_up(conn)
                        else:
                            self.show_status(conn, note)
                        if self.done():
                            return
            except psycopg.OperationalError as e:
                say(f"connection lost ({str(e).strip()}); reconnecting")
                time.sleep(0.5)

    def done(self):
        return self.args.exit_after is not None and self.handled >= self.args.exit_after

    def reply(self, conn, msg_id, channel, sender):
        try:
            reply_id = conn.execute("SELECT wa_send_text(%s, %s, %s)", (channel, sender, self.args.reply)).fetchone()[0]
            say(f"replied to message {msg_id} with message {reply_id}")
        except psycopg.Error as e:
            if e.sqlstate is None:  # the connection itself failed: let run() reconnect
                raise
            # Refused by a rule (e.g. the 24-hour window is closed): say why, and go on.
            say(f"could not reply to message {msg_id}: {e.diag.message_primary} (hint: {e.diag.message_hint})")

    def catch_up(self, conn):
        for msg_id, channel, kind, body, contact_id, name, sender in conn.execute(NEW_MESSAGES, (self.last_id,)).fetchall():
            if contact_id is not None and contact_id not in self.known_contacts:
                self.known_contacts.add(contact_id)
                say(f"conversation: {channel} <-> {name} (+{sender})")
            say(f"message {msg_id} [{channel}] {name}: {body if body is not None else '<' + kind + '>'}")
            if self.args.reply and sender:
                self.reply(conn, msg_id, channel, sender)
            self.last_id = msg_id
            self.handled += 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="libpq connection string of the inbox database")
    parser.add_argument("--reply", help="answer every inbound message with this text")
    parser.add_argument("--since-id", type=int, default=0, help="show messages after this id first (default: all)")
    parser.add_argument("--exit-after", type=int, help="stop after handling this many messages (for tests)")
    Inbox(parser.parse_args()).run()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
