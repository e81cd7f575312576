"""The Flask session interface through Flask's test client, against a real companion."""

from __future__ import annotations

import threading
import unittest
from datetime import timedelta
from typing import Any

from flask import Flask, jsonify, request, session
from flask.testing import FlaskClient

from edge_session.companion import CompanionClient
from edge_session.flask import EdgeSession, init_app
from edge_session.secret_rules import DevelopmentSecretWarning
from edge_session.token import ConfigError, Keyring

from . import support
from .test_django_store import closed_port_url


def make_app(companion_url: str | None = None, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SESSION_COOKIE_NAME=support.cookie_name(),
        SESSION_COOKIE_SECURE=support.cookie_secure(),
        SESSION_COOKIE_SAMESITE="Lax",
        EDGE_SESSION_COOKIE=support.cookie_config(),
        EDGE_SESSION_COMPANION_URL=companion_url or support.companion_url(),
        EDGE_SESSION_COMPANION_TOKEN=support.companion_token(),
        EDGE_SESSION_KEYS=support.keys(),
        EDGE_SESSION_TIMEOUT=10.0,
    )
    app.config.update(config)
    init_app(app)

    @app.get("/")
    def show() -> Any:
        return jsonify(dict(session))

    @app.post("/set")
    def set_() -> Any:
        body = request.get_json()
        session.update(body)
        return jsonify(dict(session))

    @app.post("/login/<user>")
    def login(user: str) -> Any:
        assert isinstance(session, EdgeSession)
        session.cycle()
        session["_user_id"] = user
        session.permanent = True
        return jsonify(ok=True)

    @app.post("/logout")
    def logout() -> Any:
        session.clear()
        return jsonify(ok=True)

    return app


class FlaskInterfaceTests(unittest.TestCase):
    def setUp(self) -> None:
        self.app = make_app()
        self.client = self.app.test_client()
        self.companion = CompanionClient(support.companion_url(), support.companion_token())
        self.keyring = Keyring.from_config(support.keys())

    def token(self, client: FlaskClient | None = None) -> str:
        cookie = (client or self.client).get_cookie(support.cookie_name())
        assert cookie is not None, "the response set the session cookie"
        return cookie.value

    def stored(self, client: FlaskClient | None = None) -> Any:
        session_id = self.keyring.verify(self.token(client))
        assert session_id is not None, "the cookie is a token the filter's keys verify"
        return self.companion.get(session_id)

    def test_values_persist_across_requests_in_the_filters_cookie_format(self) -> None:
        self.assertEqual(self.client.get("/").json, {})
        self.assertIsNone(self.client.get_cookie(support.cookie_name()), "an empty session sets no cookie")
        self.client.post("/set", json={"cart": [1, 2]})
        self.assertRegex(self.token(), r"^dev1\.[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{43}$")
        self.assertEqual(self.client.get("/").json, {"cart": [1, 2]})
        self.assertEqual(self.stored().data, {"cart": [1, 2]})

    def test_non_ascii_keys_and_values_round_trip(self) -> None:
        values = {"name": "Zoë Ørsted", "city": "東京", "emoji": "🍪✓", "ключ": "значение", "nul": "a\u0000b"}
        self.client.post("/set", json=values)
        self.assertEqual(self.client.get("/").json, values)
        self.assertEqual(self.stored().data, values, "stored as the text itself, not escaped twice")

    def test_concurrent_requests_changing_different_keys_lose_nothing(self) -> None:
        self.client.post("/set", json={"start": True})
        token, name = self.token(), support.cookie_name()
        errors: list[BaseException] = []

        def worker(n: int) -> None:
            client = self.app.test_client()
            client.set_cookie(name, token)
            try:
                for round_ in range(3):
                    reply = client.post("/set", json={f"k{n}": round_})
                    assert reply.status_code == 200, reply.status_code
            except BaseException as error:  # noqa: BLE001 - reported by the main thread
                errors.append(error)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual(errors, [])
        self.assertEqual(self.client.get("/").json, {"start": True, **{f"k{n}": 2 for n in range(8)}})

    def test_login_cycles_the_id_binds_the_user_and_makes_a_permanent_cookie(self) -> None:
        self.client.post("/set", json={"cart": ["book"]})
        before = self.token()
        self.assertTrue(self.stored().browser_session, "not permanent: a browser-session cookie")
        reply = self.client.post("/login/alice")
        after = self.token()
        self.assertNotEqual(after, before)
        self.assertIn("Expires=", reply.headers["Set-Cookie"])
        stored = self.stored()
        self.assertEqual((stored.user, stored.browser_session), ("alice", False))
        self.assertEqual(stored.ttl_seconds, int(self.app.permanent_session_lifetime.total_seconds()))
        self.assertEqual(self.client.get("/").json, {"cart": ["book"], "_user_id": "alice", "_permanent": True})
        old = self.app.test_client()
        old.set_cookie(support.cookie_name(), before)
        self.assertEqual(old.get("/").json, {}, "the pre-login id answers nothing")

    def test_logout_deletes_the_session_and_the_cookie(self) -> None:
        self.client.post("/set", json={"a": 1})
        token = self.token()
        reply = self.client.post("/logout")
        self.assertIn("Max-Age=0", reply.headers["Set-Cookie"])
        self.assertIsNone(self.companion.get(self.keyring.verify(token) or ""))
        replay = self.app.test_client()
        replay.set_cookie(support.cookie_name(), token)
        self.assertEqual(replay.get("/").json, {})

    def test_a_permanent_session_is_refreshed_and_lives_as_configured(self) -> None:
        self.app.permanent_session_lifetime = timedelta(seconds=120)
        self.client.post("/login/bob")
        self.assertEqual(self.stored().ttl_seconds, 120)
        reply = self.client.get("/")
        self.assertIn("Expires=", reply.headers.get("Set-Cookie", ""), "SESSION_REFRESH_EACH_REQUEST")

    def test_forged_cookie_opens_a_new_session_without_a_call_and_is_cleared(self) -> None:
        down = make_app(closed_port_url()).test_client()
        down.set_cookie(support.cookie_name(), "dev1." + "A" * 43 + "." + "B" * 43)
        reply = down.get("/")
        self.assertEqual((reply.status_code, reply.json), (200, {}))
        self.assertIn("Max-Age=0", reply.headers["Set-Cookie"])

    def test_two_different_session_cookies_are_no_session_and_are_not_cleared(self) -> None:
        self.client.post("/set", json={"cart": ["mine"]})
        mine, name = self.token(), support.cookie_name()
        other = make_app().test_client()
        other.post("/set", json={"cart": ["planted"]})
        planted = self.token(other)
        down = make_app(closed_port_url()).test_client(use_cookies=False)  # nothing may be looked up
        for header in [
            f"{name}={planted}; {name}={mine}",
            f"{name}={mine}; {name}={planted}",
            f"{name}={mine}; other=1; {name}=forged",
            f"{name}={planted},{name}={mine}",
        ]:
            with self.subTest(header=header):
                reply = down.get("/", headers={"Cookie": header})
                self.assertEqual((reply.status_code, reply.json), (200, {}))
                self.assertNotIn("Set-Cookie", reply.headers, "neither cookie is cleared")
        both = make_app().test_client(use_cookies=False)
        reply = both.get("/", headers={"Cookie": f"{name}={mine}; {name}={mine}"})
        self.assertEqual(reply.json, {"cart": ["mine"]}, "the same value twice is one cookie")
        conflicting = {"Cookie": f"{name}={mine}; {name}={planted}"}
        reply = both.post("/set", json={"x": 1}, headers=conflicting)
        self.assertEqual(reply.json, {"x": 1}, "a write makes a new session")
        self.assertNotIn(reply.headers["Set-Cookie"].split(";")[0].split("=", 1)[1], (mine, planted))
        self.assertEqual(self.client.get("/").json, {"cart": ["mine"]}, "the user's own session is untouched")

    def test_an_outage_answers_500_and_leaves_the_stored_session_alone(self) -> None:
        self.client.post("/set", json={"cart": [1]})
        token = self.token()
        down = make_app(closed_port_url())
        down.testing = False  # let Flask answer the error as in production
        down.logger.disabled = True  # the expected traceback
        client = down.test_client()
        client.set_cookie(support.cookie_name(), token)
        for reply in [client.get("/"), client.post("/set", json={"cart": []})]:
            self.assertEqual(reply.status_code, 500)
            self.assertNotIn("Set-Cookie", reply.headers)
        self.assertEqual(self.client.get("/").json, {"cart": [1]})


class FlaskConfigurationTests(unittest.TestCase):
    def test_the_session_cookie_carries_the_filters_attributes(self) -> None:
        for cookie, app, expected in [
            ({}, {"SESSION_COOKIE_SECURE": True}, ["Secure", "HttpOnly", "Path=/", "SameSite=Lax"]),
            (
                {"same_site": "Strict", "domain": "example.com"},
                {
                    "SESSION_COOKIE_SECURE": True,
                    "SESSION_COOKIE_SAMESITE": "Strict",
                    "SESSION_COOKIE_DOMAIN": "example.com",
                },
                ["Secure", "HttpOnly", "Path=/", "SameSite=Strict", "Domain=example.com"],
            ),
        ]:
            with self.subTest(cookie=cookie):
                client = make_app(EDGE_SESSION_COOKIE=cookie, **app).test_client(use_cookies=False)
                made = client.post("/set", json={"x": 1}).headers["Set-Cookie"]
                cleared = client.post("/logout", headers={"Cookie": made.split(";")[0]}).headers["Set-Cookie"]
                self.assertIn("Max-Age=0", cleared)
                for header in [made, cleared]:
                    attributes = [part.strip() for part in header.split(";")[1:]]
                    for attribute in expected:
                        self.assertIn(attribute, attributes, header)

    def test_a_cookie_setting_unlike_the_filters_is_refused_at_init_app_by_name(self) -> None:
        filter_defaults: dict[str, Any] = {"EDGE_SESSION_COOKIE": {}, "SESSION_COOKIE_SECURE": True}
        make_app(**filter_defaults, SESSION_COOKIE_SAMESITE="lax")
        for setting, value, message in [
            ("SESSION_COOKIE_SECURE", False, "SESSION_COOKIE_SECURE is False, but the filter's cookie.secure is True"),
            ("SESSION_COOKIE_HTTPONLY", False, "SESSION_COOKIE_HTTPONLY is False, but .* cookie.http_only is True"),
            ("SESSION_COOKIE_SAMESITE", None, "SESSION_COOKIE_SAMESITE is None, but .* cookie.same_site is 'Lax'"),
            ("SESSION_COOKIE_SAMESITE", "Strict", "SESSION_COOKIE_SAMESITE is 'Strict', but"),
            ("SESSION_COOKIE_PATH", "/app", "SESSION_COOKIE_PATH is '/app', but the filter's cookie.path is '/'"),
            ("APPLICATION_ROOT", "/app", "SESSION_COOKIE_PATH is '/app', but"),
            ("SESSION_COOKIE_DOMAIN", "example.com", "SESSION_COOKIE_DOMAIN is 'example.com', but .* is None"),
            ("SESSION_COOKIE_NAME", "session", "SESSION_COOKIE_NAME is 'session', but .* cookie.name is 'sid'"),
            ("SESSION_COOKIE_PARTITIONED", True, "SESSION_COOKIE_PARTITIONED is True"),
        ]:
            with self.subTest(setting, value=value), self.assertRaisesRegex(ConfigError, message):
                make_app(**{**filter_defaults, setting: value})
        with self.assertRaisesRegex(ConfigError, "EDGE_SESSION_COOKIE: secure must be a bool"):
            make_app(EDGE_SESSION_COOKIE={"secure": "false"})

    def test_flasks_own_cookie_defaults_are_refused(self) -> None:
        app = Flask(__name__)
        app.config.update(
            SESSION_COOKIE_NAME="sid",
            EDGE_SESSION_COMPANION_URL=support.companion_url(),
            EDGE_SESSION_COMPANION_TOKEN=support.companion_token(),
            EDGE_SESSION_KEYS=support.keys(),
        )
        with self.assertRaisesRegex(ConfigError, "set SESSION_COOKIE_SECURE = True"):
            init_app(app)

    def test_weak_secrets_are_refused_at_init_app_unless_the_development_switch_is_on(self) -> None:
        text_key = [{"id": "dev1", "secret": "ZGV2LW9ubHktc2VjcmV0LWRvLW5vdC11c2UtaW4tcHJvZHVjdGlvbiE="}]
        for name, change, message in [
            ("text key", {"EDGE_SESSION_KEYS": text_key}, r"EDGE_SESSION_KEYS: keys\[0\]\.secret is printable text"),
            (
                "short token",
                {"EDGE_SESSION_COMPANION_TOKEN": "dev-token-change-me-0123456789"},
                "EDGE_SESSION_COMPANION_TOKEN: the companion token is shorter than 32",
            ),
        ]:
            with self.subTest(name):
                with self.assertRaisesRegex(ConfigError, message) as refused:
                    make_app(**change)
                self.assertIn("EDGE_SESSION_ALLOW_DEVELOPMENT_SECRETS accepts it", str(refused.exception))
                with self.assertWarnsRegex(DevelopmentSecretWarning, "EDGE_SESSION_ALLOW_DEVELOPMENT_SECRETS is on"):
                    app = make_app(**change, EDGE_SESSION_ALLOW_DEVELOPMENT_SECRETS=True)
                self.assertEqual(app.test_client().get("/").status_code, 200)
        with self.assertRaisesRegex(ConfigError, "placeholder"):
            make_app(
                EDGE_SESSION_COMPANION_TOKEN="REPLACE-ME-openssl-rand-hex-24",
                EDGE_SESSION_ALLOW_DEVELOPMENT_SECRETS=True,
            )
        with self.assertRaisesRegex(ConfigError, "True or False"):
            make_app(EDGE_SESSION_ALLOW_DEVELOPMENT_SECRETS="false")


if __name__ == "__main__":
    unittest.main()
