#!/usr/bin/env python3
"""A legacy web app that has sessions without any session code.

It sits behind edge-session (Envoy with the filter, or edge-dev): it reads the session from the
x-session-* request headers the filter injects, and writes it by setting x-session-* response
headers. Python standard library only. README.md in this folder says what to copy from it and
what not (its state-changing GET routes are a demo convenience, not a pattern).

    python3 app.py [--host 127.0.0.1] [--port 9000]

Routes:
    GET /                     200, a JSON object of every request header received
    GET /login?user=NAME      log NAME in (new session id, user bound, data {"user": NAME})
    GET /logout               end the session
    GET /set?key=K&value=V    store K=V in the session
    GET /expiry?value=V       set this session's expiry: seconds, browser or default
    GET /shop                 an HTML page: who is logged in, a cart, buttons to try it all
    GET /cart/add?item=X      add X to the cart, back to /shop
    GET /sessions             an HTML page: the user's sessions (x-session-list), to end them
    GET /sessions/end?handle=H | ?which=others | ?which=all
                              end one session, every other one, or every one (x-session-revoke)

Every value this app puts into a response header is checked first: a query parameter that
would put a CR, LF, NUL, another control character or a non-ASCII character into a header is
answered with 400 and a JSON error naming the parameter. Without that check,
``/expiry?value=60%0D%0Aset-cookie:...`` ends the header line early and plants a cookie, and
``/expiry?value=600%0D%0Ax-session-user:%20mallory`` makes the filter bind the victim's
session to another user.
"""

import argparse
import html
import json
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

# The filter's x-session-expiry grammar: positive seconds, browser or default ([0-9], because
# \d also matches non-ASCII digits).
EXPIRY = re.compile(r"0*[1-9][0-9]*|browser|default")
# The longest user id the filter and the companion bind, in bytes (ASCII here: characters).
MAX_USER_BYTES = 256
# A session's handle as the filter lists it: 22 characters of unpadded base64url.
HANDLE = re.compile(r"[A-Za-z0-9_-]{22}")


class UnsafeHeaderValue(ValueError):
    """A value that must not be put into a response header as it is."""


def is_header_safe(text):
    """Whether ``text`` can be a response header's value as it is: printable ASCII (0x20 to
    0x7e) with no leading or trailing space. CR and LF would end the header line (the rest
    becomes a header of the client's choosing), NUL and other control characters are refused
    or cut by proxies, non-ASCII has no agreed encoding in a header, and edge spaces are
    trimmed by proxies, so the value the filter sees would not be the one checked here."""
    return all(" " <= char <= "~" for char in text) and text == text.strip(" ")


def control_json(value):
    """``value`` as JSON for an ``x-session-set`` header. ``ensure_ascii=True`` escapes every
    character outside printable ASCII (control characters as ``\\uXXXX`` or ``\\n``,
    non-ASCII as ``\\uXXXX``), so any string from the query string gives a header-safe value;
    the check makes that a guarantee rather than an assumption."""
    text = json.dumps(value, ensure_ascii=True)
    if not is_header_safe(text):
        raise UnsafeHeaderValue("JSON that is not header-safe")
    return text


def injected_text(value):
    """The session's user or id as the filter injected it (``x-session-user``,
    ``x-session-id``), or None when the header is missing or malformed.

    The rule: the filter sends the value as it is when it is header-safe (visible ASCII,
    inner spaces or tabs, no leading or trailing whitespace) and does not start with a double
    quote; otherwise it sends an ASCII-only JSON string. So a value that starts with ``"`` is a
    JSON string, and anything else is the value itself. No value is ambiguous: a user that
    literally is ``"x"`` arrives as ``"\\"x\\""``.
    """
    if value is None:
        return None
    if not value.startswith('"'):
        return value
    try:
        decoded = json.loads(value)
    except ValueError:
        return None
    return decoded if isinstance(decoded, str) else None


def json_header(value, default=None):
    """A header the filter always sends as JSON: ``x-session-data``, and every mapped header
    (the filter's ``headers.map``, e.g. data key ``cart`` to ``x-cart``), strings included
    (``"admin"`` with its quotes). ``default`` when the header is missing or not JSON."""
    if value is None:
        return default
    try:
        return json.loads(value)
    except ValueError:
        return default


def session_data(headers):
    """The session data the filter injected, or {} without a valid session."""
    if headers.get("x-session-state") != "valid":
        return {}
    data = json_header(headers.get("x-session-data"), {})
    return data if isinstance(data, dict) else {}


def refused(parameter, rule):
    return 400, {"error": f"{parameter} {rule}", "parameter": parameter}


class Handler(BaseHTTPRequestHandler):
    server_version = "legacy-app/1"

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass

    def send_header(self, keyword, value):
        # The one door every header goes through: a route that forgot to check what it puts
        # here fails instead of writing a header the client chose.
        if not is_header_safe(keyword) or not is_header_safe(str(value)):
            raise UnsafeHeaderValue(f"unsafe value for the {keyword!r} header")
        super().send_header(keyword, value)

    def reply(self, status, body, content_type="application/json", headers=()):
        payload = body.encode("utf-8")
        self.respond(status, [("content-type", content_type), *headers], payload)

    def respond(self, status, headers, payload=b""):
        headers = [*headers, ("content-length", str(len(payload)))]
        for name, value in headers:
            if not is_header_safe(name) or not is_header_safe(value):
                # A bug in a route, not the client's doing: nothing of it goes out.
                status, payload = 500, b'{"error": "the app tried to send an unsafe header"}'
                headers = [("content-type", "application/json"), ("content-length", str(len(payload)))]
                break
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self):  # noqa: N802 - the stdlib's name
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        if url.path == "/":
            return self.reply(200, json.dumps(headers, sort_keys=True))
        if url.path == "/shop":
            return self.reply(200, self.shop_page(headers), content_type="text/html; charset=utf-8")
        if url.path == "/sessions":
            return self.reply(200, sessions_page(headers), content_type="text/html; charset=utf-8")
        route = ROUTES.get(url.path)
        if route is None:
            return self.reply(404, json.dumps({"error": "not found"}))
        status, body, *rest = route(query, headers)
        session_headers = rest[0] if rest else []
        if status == 303:
            return self.respond(303, [("location", body), *session_headers])
        return self.reply(status, json.dumps(body), headers=session_headers)

    def shop_page(self, headers):
        data = session_data(headers)
        state = headers.get("x-session-state", "(no filter in front of this app)")
        user = injected_text(headers.get("x-session-user"))
        cart = data.get("cart", [])
        items = "".join(f"<li>{html.escape(str(item))}</li>" for item in cart) or "<li>(empty)</li>"
        who = f"Logged in as <b>{html.escape(user)}</b>" if user else "Not logged in"
        return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Legacy shop</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 2em auto">
<h1>Legacy shop</h1>
<p>{who}. Session state: <code>{html.escape(state)}</code></p>
<form action="/login"><input name="user" placeholder="name"> <button>Log in</button></form>
<h2>Cart</h2><ul>{items}</ul>
<form action="/cart/add"><input name="item" placeholder="item"> <button>Add to cart</button></form>
<p><a href="/logout">Log out</a> · <a href="/sessions">Your sessions</a> ·
<a href="/">Request headers as the app sees them</a></p>
</body></html>"""


def sessions_page(headers):
    """The user's sessions as the filter injected them on its listing route (``x-session-list``:
    ``{"sessions": [...], "truncated": bool}``, or ``{"error": ...}``), each with a button that
    ends it through ``x-session-revoke``. Every value is escaped: a user agent is the client's
    own text."""
    listing = json_header(headers.get("x-session-list"))
    user = injected_text(headers.get("x-session-user"))
    if headers.get("x-session-state") != "valid" or not user:
        body = "<p>Not logged in: <a href=\"/shop\">log in</a> first.</p>"
    elif not isinstance(listing, dict):
        body = "<p>No list: the filter's <code>session_list</code> route is not this page.</p>"
    elif "error" in listing or not isinstance(listing.get("sessions"), list):
        body = "<p>Your sessions cannot be listed right now; try again in a moment.</p>"
    else:
        rows = []
        for entry in listing["sessions"]:
            if not isinstance(entry, dict) or not HANDLE.fullmatch(str(entry.get("handle", ""))):
                continue
            cell = lambda key: html.escape(str(entry.get(key) or "unknown"))  # noqa: E731
            action = (
                "<b>this device</b>"
                if entry.get("current") is True
                else f'<a href="/sessions/end?handle={entry["handle"]}">end</a>'
            )
            rows.append(
                f"<tr><td>{cell('user_agent')}</td><td>{cell('client_address')}</td>"
                f"<td>{cell('created_at')}</td><td>{cell('last_seen_at')}</td><td>{action}</td></tr>"
            )
        more = "<p>(more sessions than fit in one page)</p>" if listing.get("truncated") is True else ""
        body = f"""<table border="1" cellpadding="4">
<tr><th>device</th><th>address</th><th>signed in</th><th>last seen</th><th></th></tr>
{"".join(rows)}</table>{more}
<p><a href="/sessions/end?which=others">End every other session</a> ·
<a href="/sessions/end?which=all">Log out everywhere</a></p>"""
    who = f" of <b>{html.escape(user)}</b>" if user else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Your sessions</title></head>
<body style="font-family: sans-serif; max-width: 50em; margin: 2em auto">
<h1>Sessions{who}</h1>
{body}
<p><a href="/shop">Back to the shop</a></p>
</body></html>"""


# Each route takes the query and the request headers and returns (status, JSON body,
# response headers), or (303, location, response headers) for a redirect. Every value a route
# puts into a header is either checked with is_header_safe or made by control_json.


def login(query, headers):
    user = query.get("user", "").strip(" ")
    if not user:
        return refused("user", "is required")
    if not is_header_safe(user):
        # x-session-user carries the user as it is (the filter takes it raw, trimmed).
        return refused("user", "must be printable ASCII (it goes into the x-session-user header)")
    if len(user) > MAX_USER_BYTES:
        # The filter would drop the whole login as a bad control header; say so here instead.
        return refused("user", f"must be at most {MAX_USER_BYTES} characters")
    return (
        200,
        {"logged_in": user},
        [("x-session-cycle", "1"), ("x-session-user", user), ("x-session-set", control_json({"user": user}))],
    )


def logout(query, headers):
    return 200, {"logged_out": True}, [("x-session-flush", "1")]


def set_value(query, headers):
    key, value = query.get("key"), query.get("value", "")
    if not key:
        return refused("key", "is required")
    return 200, {"set": {key: value}}, [("x-session-set", control_json({key: value}))]


def expiry(query, headers):
    value = query.get("value", "").strip(" ")
    if not value:
        return refused("value", "is required (seconds, browser or default)")
    if not EXPIRY.fullmatch(value):
        return refused("value", "must be positive seconds (digits 0-9), browser or default")
    return 200, {"expiry": value}, [("x-session-expiry", value)]


def cart_add(query, headers):
    cart = session_data(headers).get("cart", [])
    cart = (cart if isinstance(cart, list) else []) + [query.get("item", "thing")]
    return 303, "/shop", [("x-session-set", control_json({"cart": cart}))]


def end_sessions(query, headers):
    """Ends sessions of the logged-in user through the filter: one by its handle, every other
    one, or all of them (this one too). The filter checks the value as well; checking it here
    keeps a client's text out of the response header."""
    which, handle = query.get("which"), query.get("handle")
    if which in ("others", "all") and handle is None:
        revoke = which
    elif which is None and handle is not None and HANDLE.fullmatch(handle):
        revoke = handle
    else:
        return refused("handle", "must be a session handle, or which=others or which=all")
    return 303, "/sessions" if revoke != "all" else "/shop", [("x-session-revoke", revoke)]


ROUTES = {"/sessions/end": end_sessions, "/login": login, "/logout": logout, "/set": set_value, "/expiry": expiry, "/cart/add": cart_add}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"legacy app on http://{args.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
