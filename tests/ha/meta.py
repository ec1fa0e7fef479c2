#!/usr/bin/python3
"""The clients of tests/ha/failover.sh, and its final check.

  meta.py webhooks --url URL --secret S --phone-number-id P --out DIR [--workers 4]
      behaves like Meta: posts signed text-message webhooks, one new wamid each, and retries
      each one until it is answered 200 (Meta redelivers for days; here 120 s), until DIR/stop
      exists. Writes DIR/acked (a line per 200: wamid, the node haproxy says answered, time)
      and DIR/webhooks.progress (how many so far).
  meta.py post --url URL --secret S --phone-number-id P --wamid W
      posts one such webhook once and prints the HTTP status (or the error: no answer).
  meta.py outbound --dsn DSN --channel NAME --out DIR [--rate 20]
      queues wa_send_text() to a new recipient each time, one transaction each, until DIR/stop
      exists. A COMMIT that fails (the primary died) is ambiguous: after reconnecting, the
      message is queued again only if its recipient has no row. Writes DIR/committed.
  meta.py stamp
      copies stdin to stdout, each line prefixed by the time it was read (for wa-sim's log).
  meta.py check --dsn DSN --channel NAME --out DIR --sim-log FILE --killed-at T --before S --after S
      compares what was acked and queued with what the new primary stored and wa-sim received.

Standard library and psycopg 3 (Debian's python3-psycopg) only.
"""
import argparse
import collections
import hashlib
import hmac
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse

RECIPIENT_PREFIX = "+1666"  # outbound messages go to +1666 + 7 digits, one recipient each


def stop_requested(out):
    return os.path.exists(os.path.join(out, "stop"))


def webhook_body(phone_number_id, wamid, seq):
    sender = "1555%07d" % (seq % 500)  # 500 customers write in, as wa-sim's payloads look
    now = str(int(time.time()))
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_number_id},
        "contacts": [{"profile": {"name": "Customer %d" % (seq % 500)}, "wa_id": sender}],
        "messages": [{"from": sender, "id": wamid, "timestamp": now, "type": "text",
                      "text": {"body": "ha message %d" % seq}}],
    }
    payload = {"object": "whatsapp_business_account",
               "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}]}
    return json.dumps(payload, separators=(",", ":")).encode()


def webhooks(args):
    url = urllib.parse.urlsplit(args.url)
    lock = threading.Lock()
    state = {"next": 0, "acked": [], "posts": 0, "refused": collections.Counter(), "gave_up": []}

    def post_until_200(seq):
        wamid = "wamid.HA.%07d" % seq
        body = webhook_body(args.phone_number_id, wamid, seq)
        signature = "sha256=" + hmac.new(args.secret.encode(), body, hashlib.sha256).hexdigest()
        deadline = time.monotonic() + 120
        conn = None
        while time.monotonic() < deadline:
            try:
                # A new connection each try: one that was open to a dead primary is useless.
                conn = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
                conn.request("POST", url.path, body, {"Content-Type": "application/json",
                                                      "X-Hub-Signature-256": signature})
                response = conn.getresponse()
                response.read()
                outcome = response.status
                served_by = response.getheader("X-Served-By", "-")
            except (OSError, http.client.HTTPException) as e:
                outcome = type(e).__name__
            finally:
                conn.close()
            with lock:
                state["posts"] += 1
                if outcome == 200:
                    state["acked"].append("%s %s %.3f" % (wamid, served_by, time.time()))
                    return
                state["refused"][str(outcome)] += 1
            time.sleep(0.2)  # Meta backs off; a short pause keeps the test short
        with lock:
            state["gave_up"].append(wamid)

    def worker():
        while not stop_requested(args.out):
            with lock:
                seq = state["next"]
                state["next"] += 1
            post_until_200(seq)
            time.sleep(args.pause)

    threads = [threading.Thread(target=worker) for _ in range(args.workers)]
    for t in threads:
        t.start()
    progress = os.path.join(args.out, "webhooks.progress")
    while any(t.is_alive() for t in threads):
        time.sleep(0.2)
        with lock:
            line = "%d\n" % len(state["acked"])
        with open(progress + ".tmp", "w") as f:
            f.write(line)
        os.replace(progress + ".tmp", progress)
    with open(os.path.join(args.out, "acked"), "w") as f:
        f.write("".join(w + "\n" for w in state["acked"]))
    print("webhooks: %d acked in %d POSTs; not 200: %s; gave up: %d" % (
        len(state["acked"]), state["posts"], dict(state["refused"]) or "none", len(state["gave_up"])))
    return 1 if state["gave_up"] else 0


def post(args):
    url = urllib.parse.urlsplit(args.url)
    body = webhook_body(args.phone_number_id, args.wamid, 0)
    signature = "sha256=" + hmac.new(args.secret.encode(), body, hashlib.sha256).hexdigest()
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request("POST", url.path, body, {"Content-Type": "application/json", "X-Hub-Signature-256": signature})
        response = conn.getresponse()
        response.read()
        print(response.status)
    except (OSError, http.client.HTTPException) as e:
        print("no answer (%s)" % type(e).__name__)
    return 0


def outbound(args):
    import psycopg

    committed, conn, seq, errors = [], None, 0, collections.Counter()
    interval = 1.0 / args.rate
    deadline = None
    while True:
        if stop_requested(args.out):
            break
        recipient = "%s%07d" % (RECIPIENT_PREFIX, seq)
        started = time.monotonic()
        ambiguous = False
        while True:
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(args.dsn, autocommit=False, connect_timeout=3)
                    if ambiguous:
                        # The last COMMIT had no answer: was it committed before the crash?
                        row = conn.execute("SELECT count(*) FROM wa_messages WHERE recipient = %s",
                                           (recipient,)).fetchone()
                        conn.commit()
                        if row[0] > 0:
                            committed.append(recipient)
                            break
                conn.execute("SELECT wa_send_text(%s, %s, %s)", (args.channel, recipient, "ha reply %d" % seq))
                ambiguous = True  # from here on, a lost connection leaves the outcome unknown
                conn.commit()
                committed.append(recipient)
                break
            except psycopg.Error as e:
                errors[type(e).__name__] += 1
                try:
                    conn.close()
                except Exception:
                    pass
                conn = None
                deadline = deadline or time.monotonic() + 120
                if time.monotonic() > deadline:
                    print("outbound: no primary for 120 s: %s" % e, file=sys.stderr)
                    return 1
                time.sleep(0.2)
        deadline = None
        seq += 1
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
    with open(os.path.join(args.out, "committed"), "w") as f:
        f.write("".join(r + "\n" for r in committed))
    print("outbound: %d queued and committed; errors on the way: %s" % (len(committed), dict(errors) or "none"))
    return 0


def stamp(_args):
    for line in sys.stdin:
        sys.stdout.write("%.3f %s" % (time.time(), line))
        sys.stdout.flush()
    return 0


def read_lines(path):
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def check(args):
    import psycopg

    acks = {line.split()[0]: line.split()[1:] for line in read_lines(os.path.join(args.out, "acked"))}
    acked = list(acks)
    committed = read_lines(os.path.join(args.out, "committed"))
    failures = []
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        if in_recovery:
            failures.append("the node checked is not the primary")
        stored = collections.Counter(dict(conn.execute(
            """SELECT m.wamid, count(*) FROM wa_messages m JOIN wa_channels c ON c.id = m.channel_id
                WHERE c.name = %s AND m.direction = 'inbound' AND m.wamid LIKE 'wamid.HA.%%'
                GROUP BY m.wamid""", (args.channel,)).fetchall()))
        outbound_rows = conn.execute(
            "SELECT recipient, status, wamid FROM wa_messages WHERE direction = 'outbound' AND recipient LIKE %s",
            (RECIPIENT_PREFIX + "%",)).fetchall()

    # Inbound: every webhook answered 200 is stored, exactly once.
    lost = [w for w in acked if stored[w] == 0]
    killed_at = float(args.killed_at)
    twice = [w for w, n in stored.items() if n > 1]
    if lost:
        failures.append("%d acked webhooks are not on the new primary: %s" % (len(lost), ", ".join(
            "%s (200 from %s %+.3f s after the kill)" % (w, acks[w][0], float(acks[w][1]) - killed_at)
            for w in lost[:10])))
    if twice:
        failures.append("%d webhooks are stored more than once, e.g. %s" % (len(twice), twice[:5]))
    unacked_stored = len(set(stored) - set(acked))
    if unacked_stored:  # the client retries until 200, so everything stored was acked in the end
        failures.append("%d webhooks stored that the client never saw acked" % unacked_stored)

    # Outbound: every committed wa_send_text is a row on the new primary, recorded as sent...
    rows = {r: (status, wamid) for r, status, wamid in outbound_rows}
    missing_rows = [r for r in committed if r not in rows]
    if missing_rows:
        failures.append("%d committed wa_send_text rows are not on the new primary, e.g. %s"
                        % (len(missing_rows), missing_rows[:5]))
    unsent = {r: s for r, (s, w) in rows.items() if s not in ("sent", "delivered", "read") or not w}
    if unsent:
        failures.append("%d outbound messages not recorded as sent: %s"
                        % (len(unsent), dict(collections.Counter(unsent.values()))))

    # ... and wa-sim accepted each of them; more than once only if it was in flight at the crash.
    sends = collections.defaultdict(list)  # recipient -> times wa-sim accepted a send to it
    for line in read_lines(args.sim_log):
        at, _, rest = line.partition(" ")
        if ": accepted as " in rest and " to " in rest:
            to = rest.split(" to ", 1)[1].split(":", 1)[0]
            sends[to].append(float(at))
    undelivered = [r for r in rows if r not in sends]
    if undelivered:
        failures.append("%d queued messages never reached wa-sim, e.g. %s" % (len(undelivered), undelivered[:5]))
    foreign = [r for r in sends if r.startswith(RECIPIENT_PREFIX) and r not in rows]
    if foreign:
        failures.append("wa-sim got %d messages that are not rows on the new primary, e.g. %s"
                        % (len(foreign), foreign[:5]))
    # wa-sim logs a send when it answers it (--latency-ms after it arrived). In flight at the
    # crash: answered at most `before` seconds before the kill (its record not yet committed
    # and replicated) or at most `after` seconds after it (sent before the kill, or by the
    # dying worker just after it).
    in_flight = {r for r, times in sends.items() if killed_at - args.before <= times[0] <= killed_at + args.after}
    duplicates = sum(len(t) - 1 for t in sends.values())
    outside = [r for r, t in sends.items() if len(t) > 1 and r not in in_flight]
    if outside:
        failures.append("%d messages were sent twice that were not in flight at the crash, e.g. %s (first sends %s, kill %.3f)"
                        % (len(outside), outside[:3], [sends[r][0] for r in outside[:3]], killed_at))
    thrice = [r for r, t in sends.items() if len(t) > 2]
    if thrice:
        failures.append("%d messages were sent more than twice, e.g. %s" % (len(thrice), thrice[:3]))

    twice = sorted(t[0] - killed_at for t in sends.values() if len(t) > 1)
    print("inbound: %d acked, %d stored; outbound: %d committed, %d rows, %d accepted by wa-sim in %d sends; "
          "%d answered from %.1f s before to %.1f s after the kill (the duplicate window); those sent twice were "
          "first answered %s s after the kill"
          % (len(acked), len(stored), len(committed), len(rows), len(sends), sum(map(len, sends.values())),
             len(in_flight), args.before, args.after,
             "%+.3f to %+.3f" % (twice[0], twice[-1]) if twice else "-"))
    for f in failures:
        print("FAIL: " + f)
    print("acked %d, stored %d, lost %d, duplicates %d" % (len(acked), sum(stored[w] > 0 for w in acked), len(lost), duplicates))
    return 1 if failures else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("webhooks")
    p.add_argument("--url", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--phone-number-id", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--pause", type=float, default=0.02, help="seconds between two webhooks of a worker")
    p = sub.add_parser("outbound")
    p.add_argument("--dsn", required=True)
    p.add_argument("--channel", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--rate", type=float, default=20.0)
    p = sub.add_parser("post")
    p.add_argument("--url", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--phone-number-id", required=True)
    p.add_argument("--wamid", required=True)
    sub.add_parser("stamp")
    p = sub.add_parser("check")
    p.add_argument("--dsn", required=True)
    p.add_argument("--channel", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--sim-log", required=True)
    p.add_argument("--killed-at", required=True)
    p.add_argument("--before", type=float, required=True, help="the duplicate window: seconds before the kill")
    p.add_argument("--after", type=float, required=True, help="and after it")
    args = parser.parse_args()
    return {"webhooks": webhooks, "post": post, "outbound": outbound, "stamp": stamp, "check": check}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
