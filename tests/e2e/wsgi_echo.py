#!/usr/bin/env python3
"""A WSGI app on Python's own server (wsgiref), as many legacy apps run: it answers with every
HTTP_* variable its environ holds, as JSON. wsgiref, like CGI and Rack, folds `x_session_user`
and `x-session-user` into the one variable HTTP_X_SESSION_USER, which is why the proxy must
strip every spelling.

    python3 wsgi_echo.py PORT
"""

import json
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass


def app(environ, start_response):
    seen = {k: v for k, v in environ.items() if k.startswith("HTTP_")}
    body = json.dumps(seen, sort_keys=True).encode("ascii")
    start_response("200 OK", [("content-type", "application/json"), ("content-length", str(len(body)))])
    return [body]


if __name__ == "__main__":
    make_server("127.0.0.1", int(sys.argv[1]), app, handler_class=QuietHandler).serve_forever()
