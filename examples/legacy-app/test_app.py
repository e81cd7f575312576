"""The legacy app's own behaviour, over real HTTP (python3 -m unittest in this folder)."""

import json
import socket
import threading
import unittest
import urllib.error
import urllib.parse
import urllib.request
from http.server import ThreadingHTTPServer

from app import Handler, control_json, injected_text, is_header_safe, json_header

# Characters that must never reach a response header as they are, each spelled as it arrives
# in a query string: CR and LF end the header line, NUL and the other C0 controls and DEL are
# refused or cut by proxies, TAB is a control character the filter refuses in a user id, and
# non-ASCII (Latin-1, CJK, U+2028, invalid UTF-8) has no agreed encoding in a header.
UNSAFE = {
    "CR": "%0D",
    "LF": "%0A",
    "CRLF": "%0D%0A",
    "NUL": "%00",
    "SOH": "%01",
    "ESC": "%1B",
    "US": "%1F",
    "TAB": "%09",
    "DEL": "%7F",
    "e acute": "%C3%A9",
    "CJK": "%E6%9D%B1",
    "line separator": "%E2%80%A8",
    "invalid UTF-8": "%FF",
}


class LegacyAppTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=cls.server.serve_forever, daemon=True).start()
        cls.base = f"http://127.0.0.1:{cls.server.server_port}"

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()
        cls.server.server_close()

    def get(self, path, headers=None):
        request = urllib.request.Request(self.base + path, headers=headers or {})
        opener = urllib.request.build_opener(NoRedirect)
        try:
            response = opener.open(request)
        except urllib.error.HTTPError as err:
            response = err
        return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()

    def raw_head(self, path):
        """The response's status line and header lines exactly as the app wrote them."""
        with socket.create_connection(("127.0.0.1", self.server.server_port), timeout=5) as sock:
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode("ascii"))
            raw = b""
            while chunk := sock.recv(65536):
                raw += chunk
        return raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")

    def assert_refused(self, path, parameter):
        status, headers, body = self.get(path)
        self.assertEqual(status, 400, path)
        self.assertEqual(headers["content-type"], "application/json")
        self.assertEqual(json.loads(body)["parameter"], parameter)
        self.assertEqual([h for h in headers if h.startswith("x-session") or h == "set-cookie"], [], path)

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

    def test_login_accepts_every_printable_ascii_user(self):
        printable = "".join(chr(c) for c in range(0x21, 0x7F))
        for user in ["bob", "a b", printable, '"quoted"', "x" * 256]:
            with self.subTest(user=user):
                query = urllib.parse.quote(user, safe="")
                status, headers, _ = self.get(f"/login?user={query}")
                self.assertEqual(status, 200)
                self.assertEqual(headers["x-session-user"], user)
                self.assertEqual(json.loads(headers["x-session-set"]), {"user": user})
        self.assert_refused(f"/login?user={'x' * 257}", "user")
        status, headers, _ = self.get("/login?user=%20%20carol%20")
        self.assertEqual((status, headers["x-session-user"]), (200, "carol"), "edge spaces are trimmed")

    def test_login_refuses_a_user_unsafe_in_a_header(self):
        for name, spelled in UNSAFE.items():
            for user in [f"a{spelled}b", f"{spelled}b", f"a{spelled}"]:
                with self.subTest(name, user=user):
                    self.assert_refused(f"/login?user={user}", "user")
        self.assert_refused("/login?user=eve%0D%0Aset-cookie:%20sid=planted", "user")

    def test_expiry_refuses_the_header_injection_of_the_security_report(self):
        attacks = [
            "60%0D%0Aset-cookie:%20sid=planted;%20Path=/",
            "600%0D%0Ax-session-user:%20mallory",
            "600%0Ax-session-user:%20mallory",
            "600%0Dx-session-user:%20mallory",
        ]
        for attack in attacks:
            with self.subTest(attack):
                self.assert_refused(f"/expiry?value={attack}", "value")
                head = b"\n".join(self.raw_head(f"/expiry?value={attack}")).lower()
                self.assertNotIn(b"set-cookie", head)
                self.assertNotIn(b"mallory", head)
                self.assertNotIn(b"x-session-user", head)

    def test_expiry_refuses_anything_but_seconds_browser_or_default(self):
        for name, spelled in UNSAFE.items():
            for value in [f"60{spelled}", f"browser{spelled}", spelled]:
                with self.subTest(name, value=value):
                    self.assert_refused(f"/expiry?value={value}", "value")
        for value in ["0", "000", "-1", "1.5", "60s", "Browser", "browser%20default", "%D9%A1%D9%A2", "1e3", "0x10"]:
            with self.subTest(value=value):
                self.assert_refused(f"/expiry?value={value}", "value")

    def test_expiry_passes_good_values_on(self):
        for value in ("browser", "default", "3600", "1", "007"):
            status, headers, _ = self.get(f"/expiry?value={value}")
            self.assertEqual(status, 200)
            self.assertEqual(headers["x-session-expiry"], value)
        status, headers, _ = self.get("/expiry?value=%20600%20")
        self.assertEqual((status, headers["x-session-expiry"]), (200, "600"), "edge spaces are trimmed")
        status, headers, _ = self.get("/expiry")
        self.assertEqual(status, 400)
        self.assertNotIn("x-session-expiry", headers)

    def test_logout_and_set(self):
        self.assertEqual(self.get("/logout")[1]["x-session-flush"], "1")
        _, headers, _ = self.get("/set?key=color&value=blue")
        self.assertEqual(json.loads(headers["x-session-set"]), {"color": "blue"})
        self.assertEqual(self.get("/set")[0], 400)

    def test_set_escapes_every_unsafe_character_into_ascii_json(self):
        for name, spelled in UNSAFE.items():
            with self.subTest(name):
                status, headers, _ = self.get(f"/set?key=k{spelled}&value=v{spelled}x")
                self.assertEqual(status, 200)
                raw = headers["x-session-set"]
                self.assertTrue(is_header_safe(raw), raw)
                decoded = urllib.parse.unquote(spelled, errors="replace")
                self.assertEqual(json.loads(raw), {f"k{decoded}": f"v{decoded}x"}, "the value itself is kept")
        head = self.raw_head("/set?key=k&value=1%0D%0Aset-cookie:%20sid=planted")
        self.assertEqual([line for line in head if line.lower().startswith(b"set-cookie")], [])

    def test_cart_add_escapes_the_item_and_redirects_to_the_shop(self):
        status, headers, _ = self.get(
            "/cart/add?item=milk%0D%0Aset-cookie:%20x=1",
            {"x-session-state": "valid", "x-session-data": json.dumps({"cart": ["tea"]})},
        )
        self.assertEqual((status, headers["location"]), (303, "/shop"))
        self.assertNotIn("set-cookie", headers)
        self.assertEqual(json.loads(headers["x-session-set"]), {"cart": ["tea", "milk\r\nset-cookie: x=1"]})

    def test_shop_page_shows_the_session(self):
        data = json.dumps({"cart": ["<b>tea</b>"]})
        _, _, body = self.get("/shop", {"x-session-state": "valid", "x-session-user": "bob", "x-session-data": data})
        page = body.decode()
        self.assertIn("Logged in as <b>bob</b>", page)
        self.assertIn("&lt;b&gt;tea&lt;/b&gt;", page, "session data is escaped")

    def test_shop_page_shows_the_user_decoded(self):
        cases = [
            ('"\\u00e9"', "é"),  # a non-ASCII user arrives as a JSON string
            ('"\\"\\\\u00e9\\""', "&quot;\\u00e9&quot;"),  # a user that literally is "\u00e9"
            ('" admin"', " admin"),  # edge whitespace is not header-safe: JSON
            ('"\\u00e9', None),  # a malformed JSON string is no user at all
        ]
        for injected, shown in cases:
            with self.subTest(injected):
                _, _, body = self.get("/shop", {"x-session-state": "valid", "x-session-user": injected})
                page = body.decode()
                if shown is None:
                    self.assertIn("Not logged in", page)
                else:
                    self.assertIn(f"Logged in as <b>{shown}</b>", page)

    def test_sessions_page_lists_escapes_and_links_each_other_session(self):
        other, mine = "A" * 22, "B" * 21 + "_"
        listing = {
            "sessions": [
                {"handle": other, "current": False, "user_agent": "<script>x</script>", "client_address": "192.0.2.9",
                 "created_at": "2026-12-03T10:00:00Z", "last_seen_at": "2026-12-03T11:00:00Z"},
                {"handle": mine, "current": True, "user_agent": "laptop", "client_address": None,
                 "created_at": "2026-12-03T09:00:00Z", "last_seen_at": "2026-12-03T12:00:00Z"},
                {"handle": "../../x", "current": False},
            ],
            "truncated": True,
        }
        headers = {"x-session-state": "valid", "x-session-user": "alice", "x-session-list": json.dumps(listing)}
        status, _, body = self.get("/sessions", headers)
        page = body.decode()
        self.assertEqual(status, 200)
        self.assertIn(f'href="/sessions/end?handle={other}"', page)
        self.assertNotIn(f"handle={mine}", page, "this device is marked, not ended from here")
        self.assertIn("<b>this device</b>", page)
        self.assertIn("&lt;script&gt;", page, "a user agent is the client's text: escaped")
        self.assertNotIn("../../x", page, "an entry without a valid handle is skipped")
        self.assertIn("more sessions than fit", page)

    def test_sessions_page_without_a_list_or_login_says_why(self):
        cases = [
            ({"x-session-state": "none"}, "Not logged in"),
            ({"x-session-state": "valid", "x-session-user": "alice"}, "route is not this page"),
            (
                {"x-session-state": "valid", "x-session-user": "alice", "x-session-list": '{"error":"unavailable"}'},
                "cannot be listed right now",
            ),
        ]
        for headers, said in cases:
            with self.subTest(said):
                _, _, body = self.get("/sessions", headers)
                self.assertIn(said, body.decode())

    def test_ending_sessions_sends_revoke_and_refuses_anything_else(self):
        handle = "Ab-_" * 5 + "xy"
        for query, revoke, location in [
            (f"handle={handle}", handle, "/sessions"),
            ("which=others", "others", "/sessions"),
            ("which=all", "all", "/shop"),
        ]:
            with self.subTest(query):
                status, headers, _ = self.get(f"/sessions/end?{query}")
                self.assertEqual((status, headers["x-session-revoke"], headers["location"]), (303, revoke, location))
        for query in ["", "handle=short", "handle=" + "A" * 21 + "%0D%0Ax:1", "which=some", f"which=all&handle={handle}"]:
            with self.subTest(query):
                status, headers, _ = self.get(f"/sessions/end?{query}")
                self.assertEqual(status, 400)
                self.assertNotIn("x-session-revoke", headers)

    def test_cart_add_appends_to_the_session_cart(self):
        status, headers, _ = self.get(
            "/cart/add?item=milk",
            {"x-session-state": "valid", "x-session-data": json.dumps({"cart": ["tea"]})},
        )
        self.assertEqual(status, 303)
        self.assertEqual(json.loads(headers["x-session-set"]), {"cart": ["tea", "milk"]})
        _, headers, _ = self.get("/cart/add?item=milk", {"x-session-state": "none"})
        self.assertEqual(json.loads(headers["x-session-set"]), {"cart": ["milk"]})


class DecodingTest(unittest.TestCase):
    """The filter's one rule for injected values: the user and the id are sent as they are when
    header-safe and not starting with a double quote, else as an ASCII-only JSON string;
    mapped headers (and x-session-data) are always JSON."""

    def test_user_and_id_decode_by_the_leading_quote(self):
        cases = [
            ("alice", "alice"),
            ("u-42", "u-42"),
            ("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"),
            ("a b", "a b"),
            ('a"b', 'a"b'),  # a quote inside is only a quote
            ('"\\u00e9"', "é"),
            ('"\\u6771\\u4eac"', "東京"),
            ('"\\"\\\\u00e9\\""', '"\\u00e9"'),  # the user that literally is "\u00e9"
            ('"\\"admin\\""', '"admin"'),  # the user that literally is "admin" with quotes
            ('" admin"', " admin"),
            ('"admin "', "admin "),
            ('"a\\r\\nb"', "a\r\nb"),
            ('""', ""),
        ]
        for injected, user in cases:
            with self.subTest(injected):
                self.assertEqual(injected_text(injected), user)

    def test_malformed_or_missing_values_are_no_value(self):
        for injected in [None, '"', '"abc', '"\\x41"', '"a"b', "\"1\" 2", '"\\ud800"x']:
            with self.subTest(injected):
                self.assertIsNone(injected_text(injected))

    def test_the_encoding_is_injective(self):
        # What the filter sends for a user (its rule, restated), decoded, gives the user back.
        def filter_sends(user):
            safe = all(" " <= c <= "~" or c == "\t" for c in user) and user == user.strip(" \t")
            return user if safe and not user.startswith('"') else json.dumps(user, ensure_ascii=True)

        for user in ["é", '"\\u00e9"', '"é"', " admin", "admin", '"', '""', "a\tb", "\t", "x\u2028", "null", "1"]:
            with self.subTest(user=user):
                self.assertEqual(injected_text(filter_sends(user)), user)

    def test_mapped_headers_are_always_json(self):
        self.assertEqual(json_header('"admin"'), "admin")
        self.assertEqual(json_header('["admin", "ops"]'), ["admin", "ops"])
        self.assertEqual(json_header('"\\u00e9"'), "é")
        self.assertEqual(json_header("3"), 3)
        self.assertEqual(json_header('{"x": 1}'), {"x": 1})
        self.assertEqual(json_header("admin", "?"), "?", "a bare string is not what the filter sends")
        self.assertEqual(json_header(None, []), [])

    def test_control_json_is_ascii_and_header_safe_for_any_string(self):
        every = "".join(chr(c) for c in range(0x00, 0x800)) + "\u2028\u2029\ufeff\U0001f36a\udc80"
        text = control_json({every: every})
        self.assertTrue(is_header_safe(text))
        self.assertEqual(json.loads(text), {every: every})


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


if __name__ == "__main__":
    unittest.main()
