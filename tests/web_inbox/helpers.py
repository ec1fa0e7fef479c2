"""What the web inbox's browser tests share: where everything is (WEB_INBOX_*, from run.sh), the
two tenants, webhooks as Meta would post them, a signed-in browser, and the API as a signed-in
page calls it (cookie, CSRF token, Origin) without a browser."""

import hashlib
import hmac
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from http.cookies import SimpleCookie

import psycopg
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

ENV = os.environ
URL = ENV["WEB_INBOX_URL"]
# How long anything may take to show where the issue sets no time; polled, not slept.
DEADLINE_S = 15.0
COOKIE = "web_inbox_session"

# Two channels, each signed in to by its own agent role (wa_grant_channel 'send' on its channel only).
TENANTS = {
    key: {
        "channel": ENV[f"WEB_INBOX_CHANNEL_{key.upper()}"],
        "app_secret": ENV[f"WEB_INBOX_APP_SECRET_{key.upper()}"],
        "phone_number_id": ENV[f"WEB_INBOX_PHONE_NUMBER_ID_{key.upper()}"],
        "role": ENV[f"WEB_INBOX_AGENT_{key.upper()}"],
        "password": ENV[f"WEB_INBOX_PASSWORD_{key.upper()}"],
    }
    for key in ("a", "b")
}
A, B = TENANTS["a"], TENANTS["b"]


def wait_for(what, check, timeout=DEADLINE_S):
    """Polls check() until it returns something true; fails naming what did not happen."""
    end = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = check()
            if value:
                return value
        # Not there yet, re-rendered meanwhile, or (AttributeError) looked for inside what is not there yet.
        except (NoSuchElementException, StaleElementReferenceException, AttributeError) as e:
            last_error = f"{e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        if time.monotonic() > end:
            raise AssertionError(f"after {timeout}s still waiting for {what}" + (f" ({last_error})" if last_error else ""))
        time.sleep(0.05)


def wa_sim(*args, tenant=A):
    """wa-sim trigger ... : a signed webhook as Meta would post it."""
    out = subprocess.run(
        [ENV["WEB_INBOX_WA_SIM"], "trigger", *args, "--channel", tenant["channel"], "--dsn", ENV["WEB_INBOX_SUPER_DSN"]],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def post_signed(value, tenant=A):
    """A webhook wa-sim has no flag for (a media id it serves, an old timestamp, an edit): built
    like Meta's and signed with the channel's app secret, as Meta signs."""
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": "15550783881", "phone_number_id": tenant["phone_number_id"]},
             **value}
    body = json.dumps({"object": "whatsapp_business_account",
                       "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}]}).encode()
    signature = "sha256=" + hmac.new(tenant["app_secret"].encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(f"{ENV['WEB_INBOX_LISTENER']}/webhook/{tenant['channel']}", data=body, method="POST",
                                     headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def inbound(wa_id, name, wamid, kind, content, timestamp=None):
    return {"contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
            "messages": [{"from": wa_id, "id": wamid, "timestamp": str(int(timestamp or time.time())), "type": kind,
                          kind: content}]}


def superuser(sql, params=None, fetch=False):
    with psycopg.connect(ENV["WEB_INBOX_SUPER_DSN"], autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if fetch else None


def screenshot(page, name):
    os.makedirs(ENV["WEB_INBOX_SCREENSHOTS"], exist_ok=True)
    page.save_screenshot(os.path.join(ENV["WEB_INBOX_SCREENSHOTS"], name))


# ---- browsers -----------------------------------------------------------------------------------


def new_browser():
    """Headless Chromium with a profile of its own: its cookies are its own session."""
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900", "--lang=en-US"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def fill_sign_in(driver, role, password):
    """Opens the page (or uses the one shown) and submits the sign-in form as a person would."""
    form = wait_for("the sign-in form", lambda: (f := driver.find_element(By.ID, "sign-in-form")).is_displayed() and f)
    for field, value in (("sign-in-role", role), ("sign-in-password", password)):
        box = form.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)
    form.find_element(By.ID, "sign-in-submit").click()


def sign_in(driver, tenant):
    driver.get(URL)
    fill_sign_in(driver, tenant["role"], tenant["password"])
    wait_for(f"{tenant['role']} to be signed in and the page live",
             lambda: driver.find_element(By.ID, "signed-in-as").text == tenant["role"]
             and driver.find_element(By.ID, "db-state").get_attribute("data-state") == "up")
    return driver


def session_cookie(driver):
    return driver.get_cookie(COOKIE)["value"]


# ---- the API without a browser ------------------------------------------------------------------


def call_app(method, path, body=None, headers=None):
    """(status, parsed JSON or raw bytes, headers) of one request to the web inbox."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(URL + path, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw, got = response.status, response.read(), response.headers
    except urllib.error.HTTPError as e:
        status, raw, got = e.code, e.read(), e.headers
    try:
        return status, json.loads(raw), got
    except ValueError:
        return status, raw, got


class Agent:
    """An agent's session as its page holds it: the cookie, and the CSRF token it sends back."""

    def __init__(self, tenant=None, cookie=None, csrf=None):
        if tenant is not None:
            status, body, headers = call_app("POST", "/login", {"role": tenant["role"], "password": tenant["password"]},
                                         {"Origin": URL})
            assert status == 200, body
            jar = SimpleCookie()
            for line in headers.get_all("Set-Cookie"):
                jar.load(line)
            cookie, csrf = jar[COOKIE].value, body["csrf_token"]
        self.cookie, self.csrf = cookie, csrf

    def get(self, path):
        status, body, _ = call_app("GET", path, headers={"Cookie": f"{COOKIE}={self.cookie}"})
        return status, body

    def post(self, path, body, origin=URL, csrf=True):
        headers = {"Cookie": f"{COOKIE}={self.cookie}"}
        if origin is not None:
            headers["Origin"] = origin
        if csrf is True:
            headers["X-CSRF-Token"] = self.csrf
        elif csrf:
            headers["X-CSRF-Token"] = csrf
        status, body, _ = call_app("POST", path, body, headers)
        return status, body
