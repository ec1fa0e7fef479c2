"""Signing in to the web inbox, and two tenants side by side (run by tests/web_inbox/run.sh).

agent_a may send on channel tenant_a only, agent_b on tenant_b only (wa_grant_channel); the web
inbox connects as its own role and runs each request as the signed-in agent. Each channel has a
customer's message, a photo and a group, fed by signed webhooks as Meta posts them. Two browsers,
one per agent, stay open for the module.
"""

import base64
import hashlib
import http.client
import json
import struct
import threading
import time
import urllib.parse
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest
from selenium.webdriver.common.by import By

from helpers import (A, B, COOKIE, DEADLINE_S, ENV, TENANTS, URL, Agent, call_app, fill_sign_in, inbound, new_browser,
                     post_signed, screenshot, session_cookie, sign_in, superuser, wa_sim, wait_for)

# What each tenant's customers wrote; numbers and wamids of their own, so nothing is shared.
FIXTURES = {
    "a": {"customer": "16505550201", "photo_from": "16505550202", "text": "Tenant A: where is my parcel?",
          "group": "Y2FwaV9ncm91cDpUZW5hbnRBR3JvdXAwMDAwMDAwMDAwMQZD", "subject": "Tenant A launch"},
    "b": {"customer": "16505550301", "photo_from": "16505550302", "text": "Tenant B: can I change my order?",
          "group": "Y2FwaV9ncm91cDpUZW5hbnRCR3JvdXAwMDAwMDAwMDAwMQZD", "subject": "Tenant B launch"},
}


def channel_id(tenant):
    return superuser("SELECT id FROM wa_channels WHERE name = %s", (tenant["channel"],), fetch=True)[0][0]


def conversation_id(tenant, wa_id):
    return superuser("SELECT conversation_id FROM wa_conversations WHERE channel = %s AND wa_id = %s",
                     (tenant["channel"], wa_id), fetch=True)[0][0]


def queued(body):
    """The outbound messages with this body, whoever queued them."""
    return superuser("SELECT c.name FROM wa_messages m JOIN wa_channels c ON c.id = m.channel_id "
                     "WHERE m.direction = 'outbound' AND m.body = %s", (body,), fetch=True)


def photo_width():
    return struct.unpack(">I", open(ENV["WEB_INBOX_PHOTO"], "rb").read()[16:20])[0]  # from the PNG's IHDR


@pytest.fixture(scope="module")
def tenants():
    """Each channel's customer message, photo and group; the photos downloaded."""
    photo = open(ENV["WEB_INBOX_PHOTO"], "rb").read()
    for key, tenant in (("a", A), ("b", B)):
        f = FIXTURES[key]
        wa_sim("text", "--from", f["customer"], "--name", f"Customer {key.upper()}", "--text", f["text"], tenant=tenant)
        post_signed(inbound(f["photo_from"], f"Photographer {key.upper()}", f"wamid.tenant.{key}.photo", "image",
                            {"id": ENV["WEB_INBOX_MEDIA_ID"], "mime_type": "image/png", "caption": f"photo for {key}",
                             "sha256": base64.b64encode(hashlib.sha256(photo).digest()).decode()}), tenant=tenant)
        wa_sim("group_create", "--group", f["group"], "--text", f["subject"], tenant=tenant)
        wa_sim("group_text", "--group", f["group"], "--from", "16505550390", "--name", "Dana", "--text",
               f"hello {key}", tenant=tenant)
    wait_for("both photos downloaded", lambda: superuser(
        "SELECT count(*) FROM wa_messages m JOIN wa_media d ON d.message_id = m.id "
        "WHERE m.wamid IN ('wamid.tenant.a.photo', 'wamid.tenant.b.photo') AND d.content IS NOT NULL",
        fetch=True)[0][0] == 2)
    return FIXTURES


@pytest.fixture(scope="module")
def browsers(tenants):
    drivers = {}
    try:
        for key, tenant in (("a", A), ("b", B)):
            drivers[key] = sign_in(new_browser(), tenant)
        yield drivers
    finally:
        for driver in drivers.values():
            driver.quit()


def listed(driver):
    """(wa ids, group ids) of the conversations the page lists."""
    items = driver.find_elements(By.CSS_SELECTOR, "li.conversation")
    return {i.get_attribute("data-wa-id") for i in items} - {None}, {i.get_attribute("data-group-id") for i in items} - {None}


# ---- signing in ---------------------------------------------------------------------------------


def test_without_a_session_the_api_refuses_and_a_wrong_password_is_refused():
    for path in ("/api/channels", "/api/conversations/1", "/api/events", "/media/1"):
        status, body, _ = call_app("GET", path)
        assert status == 401 and "not signed in" in body["error"], (path, status, body)
    driver = new_browser()
    try:
        driver.get(URL)
        fill_sign_in(driver, A["role"], A["password"] + "x")
        error = wait_for("the refusal", lambda: (e := driver.find_element(By.ID, "sign-in-error")).is_displayed() and e)
        assert error.text == "wrong role name or password"
        assert not driver.find_element(By.ID, "app").is_displayed()
        assert driver.get_cookie(COOKIE) is None
        assert driver.find_element(By.ID, "sign-in-password").get_attribute("value") == ""
    finally:
        driver.quit()


def sign_in_status(role, password):
    status, body, headers = call_app("POST", "/login", {"role": role, "password": password}, {"Origin": URL})
    return status, body.get("error"), headers


def test_failed_sign_ins_are_limited_per_role():
    superuser("CREATE ROLE agent_c LOGIN PASSWORD 'agent-c-password' IN ROLE inbox_agents; "
              f"GRANT agent_c TO {ENV['WEB_INBOX_APP_ROLE']}")
    for _ in range(5):
        assert sign_in_status("agent_c", "guess")[:2] == (401, "wrong role name or password")
    # The sixth try within the minute is refused without trying it, the right password too.
    status, error, headers = sign_in_status("agent_c", "agent-c-password")
    assert status == 429 and error.startswith("too many failed sign-ins as agent_c"), error
    assert 0 < int(headers["Retry-After"]) <= 60
    # Per role: another agent signs in meanwhile.
    assert sign_in_status(A["role"], A["password"])[0] == 200


def test_administrators_and_unchecked_passwords_may_not_sign_in():
    superuser("CREATE ROLE boss_super SUPERUSER LOGIN PASSWORD 'boss-super-password'; "
              "CREATE ROLE boss_bypass BYPASSRLS LOGIN PASSWORD 'boss-bypass-password' IN ROLE inbox_agents")
    status, error, _ = sign_in_status("boss_super", "boss-super-password")
    assert status == 403 and error == "sign in as an agent role, not an administrator: boss_super is a superuser"
    status, error, _ = sign_in_status("boss_bypass", "boss-bypass-password")
    assert status == 403 and error.startswith("sign in as an agent role, not an administrator: boss_bypass may bypass")
    # A role pg_hba.conf lets in without a password ("trust"): any password would do, so none does.
    hba = ENV["WEB_INBOX_PG_DATA"] + "/pg_hba.conf"
    rules = open(hba).read()
    open(hba, "w").write("host all agent_trusted 127.0.0.1/32 trust\n" + rules)
    superuser("CREATE ROLE agent_trusted LOGIN IN ROLE inbox_agents; SELECT pg_reload_conf()")

    def trusted():
        try:
            psycopg.connect(host="127.0.0.1", port=ENV["WEB_INBOX_PG_PORT"], dbname="postgres", user="agent_trusted",
                            password="anything").close()
            return True
        except psycopg.OperationalError:
            return False
    wait_for("the server to have reloaded pg_hba.conf", trusted)
    status, error, _ = sign_in_status("agent_trusted", "anything")
    assert status == 403 and "without asking for its password" in error, error


# ---- two tenants --------------------------------------------------------------------------------


def test_each_agent_lists_only_its_own_conversations(tenants, browsers):
    for key, other in (("a", "b"), ("b", "a")):
        driver, own, theirs = browsers[key], tenants[key], tenants[other]
        options = [o.text for o in driver.find_elements(By.CSS_SELECTOR, "#channel option")]
        assert options == [TENANTS[key]["channel"]], options
        wait_for(f"{key}'s customer, photo and group in its list", lambda: (
            {own["customer"], own["photo_from"]} <= listed(driver)[0] and own["group"] in listed(driver)[1]))
        wa_ids, groups = listed(driver)
        assert not {theirs["customer"], theirs["photo_from"]} & wa_ids and theirs["group"] not in groups
    screenshot(browsers["b"], "tenant_b.png")


def test_each_agent_sees_its_own_photo(tenants, browsers):
    for key, driver in browsers.items():
        item = lambda: driver.find_element(By.CSS_SELECTOR, f'li.conversation[data-wa-id="{tenants[key]["photo_from"]}"]')
        wait_for(f"{key}'s photo conversation to open", lambda: (item().click() or True) and
                 driver.find_element(By.ID, "conversation-number").text == f"+{tenants[key]['photo_from']}")
        wait_for(f"{key}'s photo to be shown", lambda: driver.execute_script(
            "const i = document.querySelector('#messages img.media'); return i && i.complete ? i.naturalWidth : 0;")
            == photo_width())


def test_an_agent_sends_on_its_own_channel(tenants, browsers):
    driver, customer = browsers["b"], tenants["b"]["customer"]
    wait_for("b's customer to open", lambda: (driver.find_element(
        By.CSS_SELECTOR, f'li.conversation[data-wa-id="{customer}"]').click() or True)
        and driver.find_element(By.ID, "conversation-number").text == f"+{customer}")
    box = driver.find_element(By.ID, "reply-text")
    box.send_keys("Yes, agent_b here.")
    driver.find_element(By.ID, "reply-send").click()

    def status_of_reply():
        for m in driver.find_elements(By.CSS_SELECTOR, "#messages .message.outbound"):
            if "agent_b here" in m.text:
                return m.find_element(By.CLASS_NAME, "tick").get_attribute("data-status")
        return None
    wait_for("the reply to be read", lambda: status_of_reply() == "read")
    assert queued("Yes, agent_b here.") == [(B["channel"],)]


def test_the_other_tenants_conversation_and_photo_are_not_found(tenants):
    agent = Agent(B)
    theirs, own = conversation_id(A, tenants["a"]["customer"]), conversation_id(B, tenants["b"]["customer"])
    their_photo, own_photo = (superuser("SELECT id FROM wa_messages WHERE wamid = %s", (w,), fetch=True)[0][0]
                              for w in ("wamid.tenant.a.photo", "wamid.tenant.b.photo"))
    # What b may see is there (so a 404 below is not a broken session) ...
    assert agent.get(f"/api/conversations/{own}")[0] == 200
    status, body = agent.get(f"/media/{own_photo}")
    assert status == 200 and body.startswith(b"\x89PNG")
    # ... and a's is not, neither read nor written to.
    for path in (f"/api/conversations/{theirs}", f"/api/conversations/{theirs}/messages", f"/media/{their_photo}"):
        assert agent.get(path)[0] == 404, path
    assert agent.post(f"/api/conversations/{theirs}/text", {"body": "b writes to a's customer"})[0] == 404
    assert agent.post(f"/api/channels/{channel_id(A)}/template",
                      {"recipient": "+16505550299", "name": "hello_world", "language": "en_US"})[0] == 404
    assert queued("b writes to a's customer") == []
    assert agent.get(f"/api/channels/{channel_id(A)}/templates") == (200, [])


class EventStream:
    """/api/events as a page reads it, with an agent's session."""

    def __init__(self, agent):
        url = urllib.parse.urlsplit(URL)
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=DEADLINE_S)
        self.conn.request("GET", "/api/events", headers={"Cookie": f"{COOKIE}={agent.cookie}"})
        self.response = self.conn.getresponse()
        assert self.response.status == 200
        assert self.next()[0] == "db"

    def next(self, end=None):
        """The next event; by `end` (time.monotonic()), give or take a keep-alive's 15 s."""
        event, data = None, []
        while True:
            try:
                line = self.response.readline().decode()
            except TimeoutError:
                raise AssertionError(f"no event within {DEADLINE_S}s") from None
            assert line, "the event stream ended"
            assert end is None or time.monotonic() < end, "no such event in time"
            line = line.rstrip("\n")
            if not line and event:
                return event, json.loads("\n".join(data))
            if line.startswith("event: "):
                event = line[len("event: "):]
            elif line.startswith("data: "):
                data.append(line[len("data: "):])

    def until_message_of(self, channel):
        """Every event up to the first wa_message notification of `channel`."""
        seen, end = [], time.monotonic() + DEADLINE_S
        while not (seen and seen[-1][0] == "message" and seen[-1][1].get("channel_id") == channel):
            try:
                seen.append(self.next(end))
            except AssertionError as e:
                raise AssertionError(f"{e}: no message of channel {channel}, only {seen}") from None
        return seen


def test_each_page_is_sent_only_its_own_channels_notifications(tenants):
    streams = {"a": EventStream(Agent(A)), "b": EventStream(Agent(B))}
    a_id, b_id = channel_id(A), channel_id(B)
    # a's first, then b's: the LISTEN connection hears them in this order.
    wa_sim("text", "--from", "16505550203", "--name", "Late A", "--text", "for a only", tenant=A)
    wa_sim("text", "--from", "16505550303", "--name", "Late B", "--text", "for b only", tenant=B)
    for key, own, streams_channel in (("a", a_id, a_id), ("b", b_id, b_id)):
        seen = streams[key].until_message_of(streams_channel)
        channels = {data["channel_id"] for event, data in seen if event in ("message", "status", "media")}
        channels |= {row["channel_id"] for event, data in seen if event == "health" for row in data}
        assert channels == {own}, (key, seen)
    for stream in streams.values():
        stream.conn.close()


# ---- requests from elsewhere --------------------------------------------------------------------


def test_a_post_from_another_origin_is_refused_even_with_the_cookie_and_token(tenants):
    agent, conversation = Agent(A), conversation_id(A, tenants["a"]["customer"])
    path = f"/api/conversations/{conversation}/text"
    # The session's own token with its first character changed (a random token starts with
    # "x" one time in 64: then "x" + the rest would be the token itself).
    wrong = ("y" if agent.csrf[0] == "x" else "x") + agent.csrf[1:]
    for what, origin, csrf in (("another origin", "http://127.0.0.1:9", True), ("no Origin", None, True),
                               ("no token", URL, False), ("a wrong token", URL, wrong)):
        status, body = agent.post(path, {"body": f"forged with {what}"}, origin=origin, csrf=csrf)
        assert status == 403 and body["error"].startswith("refused"), (what, status, body)
        assert queued(f"forged with {what}") == [], what
    # The same request from the page itself goes out.
    assert agent.post(path, {"body": "sent from the page"})[0] == 200
    assert queued("sent from the page") == [(A["channel"],)]


@contextmanager
def page_on_another_origin(html):
    """A page served from 127.0.0.1 on another port: same site (the SameSite=Strict cookie still
    goes with its requests), another origin."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()


def test_a_form_on_another_origin_queues_nothing(tenants, browsers):
    driver, conversation = browsers["a"], conversation_id(A, tenants["a"]["customer"])
    action = f"{URL}/api/conversations/{conversation}/text"
    # text/plain lets a form post a body that parses as JSON: {"body": "...", "x": "="}
    forged = '<form method="POST" enctype="text/plain" action="%s"><input name=\'{"body": "forged by a form", "x": "\' ' \
             'value=\'"}\'></form><script>document.forms[0].submit()</script>' % action
    with page_on_another_origin(forged) as attacker:
        driver.get(attacker)
        wait_for("the form to have been posted", lambda: driver.current_url == action)
    assert "refused" in driver.find_element(By.TAG_NAME, "body").text
    assert queued("forged by a form") == []


def test_signing_out_ends_the_session(browsers):
    driver = browsers["b"]
    cookie = session_cookie(driver)
    driver.find_element(By.ID, "sign-out").click()
    wait_for("the sign-in form", lambda: driver.find_element(By.ID, "sign-in-form").is_displayed())
    assert Agent(cookie=cookie, csrf="").get("/api/channels")[0] == 401
