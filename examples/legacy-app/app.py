#!/usr/bin/env python3
"""A legacy web app that has sessions without any session code.

It sits behind edge-session (Envoy with the filter, or edge-dev): it reads the session from the
x-session-* request headers the filter injects, and writes it by setting x-session-* response
headers. Python standard library only.

    python3 app.py [--host 127.0.0.1] [--port 9000]

Routes:
    GET /                     200, a JSON object of every request header received
    GET /login?user=NAME      log NAME in (new session id, user bound, data {"user": NAME})
    GET /logout               end the session
    GET /set?key=K&value=V    store K=V in the session
    GET /expiry?value=V       set this session's expiry: seconds, browser or default
    GET /shop                 an HTML page: who is logged in, a cart, buttons to try it all
    GET /cart/add?item=X      add X to the cart, back to /shop
"""

import argparse
import html
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def session_data(headers):
    """The session data the filter injected, or {} without a valid session."""
    if headers.get("x-session-state") != "valid":
        return {}
    try:
        data = json.loads(headers.get("x-session-data", "{}"))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


class Handler(BaseHTTPRequestHandler):
    server_version = "legacy-app/1"

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass

    def reply(self, status, body, content_type="application/json", headers=()):
        payload = body.encode("utf-8")
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(payload)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def redirect(self, location, headers=()):
        self.send_response(303)
        self.send_header("location", location)
        self.send_header("content-length", "0")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()

    def do_GET(self):  # noqa: N802 - the stdlib's name
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        if url.path == "/":
            return self.reply(200, json.dumps(headers, sort_keys=True))
        if url.path == "/login":
            user = query.get("user", "").strip()
            if not user:
                return self.reply(400, json.dumps({"error": "user is required"}))
            return self.reply(
                200,
                json.dumps({"logged_in": user}),
                headers=[
                    ("x-session-cycle", "1"),
                    ("x-session-user", user),
                    ("x-session-set", json.dumps({"user": user})),
                ],
            )
        if url.path == "/logout":
            return self.reply(200, json.dumps({"logged_out": True}), headers=[("x-session-flush", "1")])
        if url.path == "/set":
            key, value = query.get("key"), query.get("value", "")
            if not key:
                return self.reply(400, json.dumps({"error": "key is required"}))
            return self.reply(200, json.dumps({"set": {key: value}}), headers=[("x-session-set", json.dumps({key: value}))])
        if url.path == "/expiry":
            value = query.get("value", "").strip()
            if not value:
                return self.reply(400, json.dumps({"error": "value is required (seconds, browser or default)"}))
            return self.reply(200, json.dumps({"expiry": value}), headers=[("x-session-expiry", value)])
        if url.path == "/shop":
            return self.reply(200, self.shop_page(headers), content_type="text/html; charset=utf-8")
        if url.path == "/cart/add":
            cart = session_data(headers).get("cart", [])
            cart = (cart if isinstance(cart, list) else []) + [query.get("item", "thing")]
            return self.redirect("/shop", headers=[("x-session-set", json.dumps({"cart": cart}))])
        return self.reply(404, json.dumps({"error": "not found"}))

    def shop_page(self, headers):
        data = session_data(headers)
        state = headers.get("x-session-state", "(no filter in front of this app)")
        user = headers.get("x-session-user")
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
<p><a href="/logout">Log out</a> · <a href="/">Request headers as the app sees them</a></p>
</body></html>"""


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
