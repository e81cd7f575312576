"""The Flask cookie store interface through Flask's test client: the filter's cookies and the
Django engine's open here and back, every refusal, rotation, the payload's expiry, the
4096-byte pair limit exactly, login and logout, two different session cookies, its settings."""

from __future__ import annotations

import base64
import unittest
import warnings
from dataclasses import replace
from typing import Any
from unittest import mock

from django.test import override_settings
from flask import Flask, jsonify, request, session

from edge_session.cookie_sessions import CookieSessions, now
from edge_session.cookie_store import CookieKeyring, CookiePayload, SessionTooLarge
from edge_session.django_cookie import SessionStore as DjangoCookieStore
from edge_session.flask_cookie import CookieSession, init_app
from edge_session.secret_rules import ConfigError, DevelopmentSecretWarning

from . import cookie_support, support
from .cookie_support import vectors

NAME = support.cookie_name()
NOW = "edge_session.cookie_sessions.now"


def make_app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SESSION_COOKIE_NAME=NAME,
        SESSION_COOKIE_SECURE=support.cookie_secure(),
        SESSION_COOKIE_SAMESITE="Lax",
        EDGE_SESSION_COOKIE=support.cookie_config(),
        EDGE_SESSION_COOKIE_STORE_KEYS=cookie_support.keys(),
    )
    app.config.update(config)
    init_app(app)

    @app.get("/")
    def show() -> Any:
        assert isinstance(session, CookieSession)
        return jsonify(data=dict(session), id=session.session_id)

    @app.post("/set")
    def set_() -> Any:
        session.update(request.get_json())
        return jsonify(ok=True)

    @app.post("/login/<user>")
    def login(user: str) -> Any:
        assert isinstance(session, CookieSession)
        session.cycle()
        session["_user_id"] = user
        session.permanent = True
        return jsonify(ok=True)

    @app.post("/logout")
    def logout() -> Any:
        session.clear()
        return jsonify(ok=True)

    return app


def codec(*kids: str) -> CookieKeyring:
    return CookieKeyring.from_config(cookie_support.keys(*kids))


def sealed(**changes: Any) -> str:
    """A cookie as the filter seals it, valid now unless changed."""
    _, payload = CookieSessions(codec(), NAME).seal(None, {"k": "v"}, user=None, ttl_seconds=3600, browser_session=False)
    return codec().seal(NAME, replace(payload, **changes))


def set_cookie_of(response: Any) -> str | None:
    """The session cookie's Set-Cookie header, if the response has one."""
    found = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(f"{NAME}=")]
    return found[0] if found else None


class FlaskCookieTests(unittest.TestCase):
    def test_the_filters_known_answers_open_here(self) -> None:
        client = make_app().test_client()
        with mock.patch(NOW, return_value=vectors()["now"]):
            for vector in vectors()["vectors"]:
                with self.subTest(vector["name"]):
                    payload = CookiePayload.from_json(vector["plaintext"].encode("utf-8"))
                    client.set_cookie(NAME, vector["cookie"])
                    self.assertEqual(client.get("/").json, {"data": payload.data, "id": payload.id})

    def test_a_session_round_trips_in_the_filters_format(self) -> None:
        client = make_app().test_client()
        client.post("/set", json={"cart": ["cup"], "city": "東京"})
        value = client.get_cookie(NAME)
        assert value is not None
        self.assertTrue(value.value.startswith("v1.c1."))
        opened = codec().open(value.value, now())
        self.assertEqual(opened.data, {"cart": ["cup"], "city": "東京"})
        self.assertIs(opened.browser_session, True, "not permanent: no Expires, as Flask's own")
        self.assertEqual(opened.ttl_seconds, 31 * 86400, "PERMANENT_SESSION_LIFETIME")
        self.assertEqual(client.get("/").json, {"data": {"cart": ["cup"], "city": "東京"}, "id": opened.id})

    def test_django_and_flask_open_each_others_cookies(self) -> None:
        with override_settings(**cookie_support.django_settings()):
            store = DjangoCookieStore()
            store.update({"cart": ["book"], "_auth_user_id": "9"})
            store.save()
            client = make_app().test_client()
            client.set_cookie(NAME, store.session_key or "")
            self.assertEqual(client.get("/").json, {"data": {"cart": ["book"], "_auth_user_id": "9"}, "id": store.session_id})
            client.post("/set", json={"color": "blue"})
            written = client.get_cookie(NAME)
            assert written is not None
            back = DjangoCookieStore(written.value)
            self.assertEqual(back.load(), {"cart": ["book"], "_auth_user_id": "9", "color": "blue"})
            self.assertEqual(back.session_id, store.session_id, "the same session")

    def test_login_cycles_the_id_and_logout_clears_the_cookie(self) -> None:
        client = make_app().test_client()
        client.post("/set", json={"cart": [1]})
        before = client.get("/").json["id"]
        response = client.post("/login/alice")
        header = set_cookie_of(response) or ""
        self.assertIn("Expires=", header, "a permanent session's cookie has an expiry")
        self.assertIn("HttpOnly", header)
        self.assertIn("SameSite=Lax", header)
        cookie = client.get_cookie(NAME)
        assert cookie is not None
        payload = codec().open(cookie.value, now())
        self.assertNotEqual(payload.id, before)
        self.assertEqual((payload.user, payload.data["cart"]), ("alice", [1]))
        self.assertIs(payload.browser_session, False)
        response = client.post("/logout")
        self.assertRegex(set_cookie_of(response) or "", r"^sid=; Expires=Thu, 01 Jan 1970 .*Max-Age=0")
        self.assertIsNone(client.get_cookie(NAME))

    def test_forged_removed_key_and_expired_cookies_are_no_session_and_are_cleared(self) -> None:
        good = sealed()
        old_key = codec("c0").seal(NAME, codec().open(good, now()))
        with mock.patch(NOW, return_value=1_800_000_000):
            expired = sealed(expires_at=1_800_000_000)  # ends this second; Max-Age says nothing
            capped = sealed(absolute_expires_at=1_800_000_000)
        client = make_app(EDGE_SESSION_COOKIE_STORE_KEYS=cookie_support.keys("c1")).test_client(use_cookies=False)
        with mock.patch(NOW, return_value=1_800_000_000):
            for name, value in [
                ("forged", good[:-3] + ("AAA" if good[-3:] != "AAA" else "BBB")),
                ("removed key", old_key),
                ("expired", expired),
                ("past its absolute limit", capped),
                ("not ours", "k1.abc.def"),
            ]:
                with self.subTest(name):
                    response = client.get("/", headers={"Cookie": f"{NAME}={value}"})
                    self.assertEqual(response.json, {"data": {}, "id": None})
                    self.assertRegex(set_cookie_of(response) or "", r"^sid=; Expires=Thu, 01 Jan 1970 .*Max-Age=0")

    def test_the_pair_limit_holds_exactly_at_4096_and_one_past(self) -> None:
        app = make_app()
        app.testing = True  # the refusal propagates to the test
        app.logger.disabled = True  # the 500 below is expected
        client = app.test_client()
        # Werkzeug warns past 4093 bytes of the whole Set-Cookie line, attributes included;
        # the limit browsers and the filter hold is the name=value pair's.
        self.enterContext(warnings.catch_warnings())
        warnings.filterwarnings("ignore", "The 'sid' cookie is too large", UserWarning)

        def size(blob: int) -> int:
            try:
                response = client.post("/set", json={"blob": "x" * blob})
            except SessionTooLarge as refused:
                return refused.size
            return len((set_cookie_of(response) or "").split(";")[0])

        blob = next(n for n in range(2700, 3200) if size(n) == 4096)
        cookie = client.get_cookie(NAME)
        assert cookie is not None
        self.assertEqual(len(f"{NAME}={cookie.value}"), 4096)
        self.assertEqual(client.get("/").json["data"], {"blob": "x" * blob})
        with self.assertRaises(SessionTooLarge) as refused:
            client.post("/set", json={"blob": "x" * (blob + 1)})
        self.assertEqual(refused.exception.size, 4097)
        after = client.get_cookie(NAME)
        assert after is not None
        self.assertEqual(after.value, cookie.value, "the previous cookie stays")
        app.testing = False
        response = client.post("/set", json={"blob": "x" * (blob + 1)})
        self.assertEqual(response.status_code, 500)
        self.assertIsNone(set_cookie_of(response))

    def test_two_different_session_cookies_are_no_session_and_are_not_cleared(self) -> None:
        client = make_app().test_client(use_cookies=False)
        mine, planted = sealed(), sealed()
        for header in [f"{NAME}={planted}; {NAME}={mine}", f"{NAME}={mine}; {NAME}=forged"]:
            with self.subTest(header=header):
                response = client.get("/", headers={"Cookie": header})
                self.assertEqual(response.json, {"data": {}, "id": None})
                self.assertIsNone(set_cookie_of(response), "neither cookie is cleared")
        response = client.get("/", headers={"Cookie": f"{NAME}={mine}; {NAME}={mine}"})
        self.assertEqual(response.json["data"], {"k": "v"}, "the same value twice is one cookie")


class FlaskCookieSettingsTests(unittest.TestCase):
    def test_bad_keys_and_cookie_settings_are_refused_naming_the_setting(self) -> None:
        placeholder = base64.b64encode(b"REPLACE-ME with 32 random bytes!!").decode()
        weak = base64.b64encode(b"a passphrase that is long enough").decode()
        signing = cookie_support.keys("c1")[0]["secret"]
        for config, message in [
            ({"EDGE_SESSION_COOKIE_STORE_KEYS": [{"id": "p", "secret": placeholder}],
              "EDGE_SESSION_ALLOW_DEVELOPMENT_SECRETS": True}, "placeholder"),
            ({"EDGE_SESSION_COOKIE_STORE_KEYS": [{"id": "w", "secret": weak}]}, "EDGE_SESSION_ALLOW_DEVELOPMENT_SECRETS"),
            ({"EDGE_SESSION_KEYS": [{"id": "s", "secret": signing}]}, "also a secret of EDGE_SESSION_KEYS"),
            ({"EDGE_SESSION_COOKIE_STORE_KEYS": "c1"}, "must be a list"),
            ({"SESSION_COOKIE_NAME": "session"}, "SESSION_COOKIE_NAME"),
            ({"EDGE_SESSION_ABSOLUTE_TTL_SECONDS": True}, "EDGE_SESSION_ABSOLUTE_TTL_SECONDS"),
        ]:
            with self.subTest(message), self.assertRaisesRegex(ConfigError, message):
                make_app(**config)
        app = Flask(__name__)
        with self.assertRaisesRegex(ConfigError, "EDGE_SESSION_COOKIE_STORE_KEYS"):
            init_app(app)

    def test_a_weak_key_is_accepted_in_development_with_a_warning(self) -> None:
        weak = base64.b64encode(b"a passphrase that is long enough").decode()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            make_app(
                EDGE_SESSION_COOKIE_STORE_KEYS=[{"id": "w", "secret": weak}], EDGE_SESSION_ALLOW_DEVELOPMENT_SECRETS=True
            )
        self.assertTrue(any(issubclass(w.category, DevelopmentSecretWarning) for w in caught))


if __name__ == "__main__":
    unittest.main()
