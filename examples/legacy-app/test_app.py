"""The legacy app's own behaviour, over real HTTP (python3 -m unittest in this folder)."""

import json
import threading
import unittest
import urllib.request
from http.server import ThreadingHTTPServer

from app import Handler


class LegacyAppTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=cls.server.serve_forever, daemon=True).start()
        cls.base = f"http://127.0.0.1:{cls.server.server_port}"

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()

    def get(self, path, headers=None):
        request = urllib.request.Request(self.base + path, headers=headers or {})
        opener = urllib.request.build_opener(NoRedirect)
        try:
            response = opener.open(request)
        except urllib.error.HTTPError as err:
            response = err
        return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()

    def test_root_echoes_request_headers_lowercased(self):
        status, _, body = self.get("/", {"X-Session-State": "valid", "X-Custom": "1"})
        self.assertEqual(status, 200)
        seen = json.loads(body)
        self.assertEqual(seen["x-session-state"], "valid")
        self.assertEqual(seen["x-custom"], "1")

    def test_login_cycles_binds_and_sets(self):
        status, headers, _ = self.get("/login?user=alice")
        self.assertEqual(status, 200)
        self.assertEqual(headers["x-session-cycle"], "1")
        self.assertEqual(headers["x-session-user"], "alice")
        self.assertEqual(json.loads(headers["x-session-set"]), {"user": "alice"})
        self.assertEqual(self.get("/login")[0], 400)

    def test_logout_and_set(self):
        self.assertEqual(self.get("/logout")[1]["x-session-flush"], "1")
        _, headers, _ = self.get("/set?key=color&value=blue")
        self.assertEqual(json.loads(headers["x-session-set"]), {"color": "blue"})
        self.assertEqual(self.get("/set")[0], 400)

    def test_expiry_passes_the_value_on(self):
        for value in ("browser", "default", "3600"):
            status, headers, _ = self.get(f"/expiry?value={value}")
            self.assertEqual(status, 200)
            self.assertEqual(headers["x-session-expiry"], value)
        status, headers, _ = self.get("/expiry")
        self.assertEqual(status, 400)
        self.assertNotIn("x-session-expiry", headers)

    def test_shop_page_shows_the_session(self):
        data = json.dumps({"cart": ["<b>tea</b>"]})
        _, _, body = self.get("/shop", {"x-session-state": "valid", "x-session-user": "bob", "x-session-data": data})
        page = body.decode()
        self.assertIn("Logged in as <b>bob</b>", page)
        self.assertIn("&lt;b&gt;tea&lt;/b&gt;", page, "session data is escaped")

    def test_cart_add_appends_to_the_session_cart(self):
        status, headers, _ = self.get(
            "/cart/add?item=milk",
            {"x-session-state": "valid", "x-session-data": json.dumps({"cart": ["tea"]})},
        )
        self.assertEqual(status, 303)
        self.assertEqual(json.loads(headers["x-session-set"]), {"cart": ["tea", "milk"]})
        _, headers, _ = self.get("/cart/add?item=milk", {"x-session-state": "none"})
        self.assertEqual(json.loads(headers["x-session-set"]), {"cart": ["milk"]})


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


if __name__ == "__main__":
    unittest.main()
