"""What the Django cookie store engine promises beyond Django's own tests: the filter's cookies
open here and this engine's cookies are the filter's format, every refusal the filter makes,
key rotation, the payload's expiry over a stretched Max-Age, the 4096-byte pair limit exactly,
cycles, logout, two different session cookies, and its settings."""

from __future__ import annotations

import base64
import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from unittest import mock

from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory, SimpleTestCase, override_settings

from edge_session.cookie_sessions import CookieSessions, now
from edge_session.cookie_store import CookieKeyring, CookiePayload, SessionTooLarge, pair_bytes
from edge_session.django_cookie import SessionMiddleware, SessionStore
from edge_session.secret_rules import DevelopmentSecretWarning

from . import cookie_support, support
from .cookie_support import vectors

NAME = support.cookie_name()
VECTORS_NOW = "edge_session.cookie_sessions.now"


def codec(*kids: str) -> CookieKeyring:
    """The codec as the filter holds it (the filter's ``cookie_store.keys``)."""
    return CookieKeyring.from_config(cookie_support.keys(*kids))


def run(view: Callable[[HttpRequest], HttpResponse], cookie: str | None = None) -> HttpResponse:
    request = RequestFactory().get("/", HTTP_COOKIE=cookie) if cookie else RequestFactory().get("/")
    response: HttpResponse = SessionMiddleware(view)(request)
    return response


def sealed(**changes: Any) -> str:
    """A cookie sealed by the codec (as the filter seals it), valid now unless changed."""
    sessions = CookieSessions(codec(), NAME)
    value, payload = sessions.seal(None, {"k": "v"}, user=None, ttl_seconds=3600, browser_session=False)
    return codec().seal(NAME, replace(payload, **changes))


@override_settings(**cookie_support.django_settings())
class DjangoCookieEngineTests(SimpleTestCase):
    def test_the_filters_known_answers_open_here_with_their_data_user_and_id(self) -> None:
        with mock.patch(VECTORS_NOW, return_value=vectors()["now"]):
            for vector in vectors()["vectors"]:
                with self.subTest(vector["name"]):
                    payload = CookiePayload.from_json(vector["plaintext"].encode("utf-8"))
                    store = SessionStore(vector["cookie"])
                    self.assertEqual(store.load(), payload.data)
                    self.assertEqual(store.session_id, payload.id)
                    self.assertEqual(store.session_key, vector["cookie"])

    def test_a_saved_session_is_the_filters_format_sealed_by_the_first_key(self) -> None:
        store = SessionStore()
        store.update({"cart": [1, 2], "name": "Zoë ✓", "_auth_user_id": 7})
        with mock.patch(VECTORS_NOW, return_value=1_800_000_000):
            store.save()
            opened = codec().open(store.session_key or "", 1_800_000_000)
        self.assertTrue((store.session_key or "").startswith("v1.c1."))
        self.assertEqual(opened.data, {"cart": [1, 2], "name": "Zoë ✓", "_auth_user_id": 7})
        self.assertEqual(opened.user, "7", "USER_KEY is the filter's x-session-user")
        self.assertRegex(opened.id, r"^[A-Za-z0-9_-]{43}$")
        self.assertEqual(opened.id, store.session_id)
        self.assertEqual((opened.created_at, opened.issued_at), (1_800_000_000, 1_800_000_000))
        self.assertEqual(opened.expires_at, 1_800_000_000 + 1_209_600)
        self.assertEqual((opened.ttl_seconds, opened.browser_session, opened.absolute_expires_at), (1_209_600, False, None))
        # What the filter reads: the payload re-sealed with a vector's nonce is that exact
        # plaintext's form (fields in the filter's order, compact JSON).
        self.assertEqual(CookiePayload.from_json(opened.to_json()), opened)

    def test_new_ids_are_random_and_43_characters(self) -> None:
        ids = set()
        for _ in range(200):
            store = SessionStore()
            store["a"] = 1
            store.save()
            ids.add(store.session_id)
        self.assertEqual(len(ids), 200)
        self.assertTrue(all(len(i or "") == 43 for i in ids))

    def test_every_key_opens_the_first_seals_and_a_removed_key_is_no_session(self) -> None:
        with override_settings(**cookie_support.django_settings(COOKIE_STORE_KEYS=cookie_support.keys("c0"))):
            old = SessionStore()
            old["a"] = 1
            old.save()
        self.assertTrue((old.session_key or "").startswith("v1.c0."))
        rotated = SessionStore(old.session_key)
        self.assertEqual(rotated.load(), {"a": 1})
        rotated.save()
        self.assertTrue((rotated.session_key or "").startswith("v1.c1."), "re-sealed by the first key")
        self.assertEqual(rotated.session_id, old.session_id, "rotation keeps the session")
        with override_settings(**cookie_support.django_settings(COOKIE_STORE_KEYS=cookie_support.keys("c1"))):
            removed = SessionStore(old.session_key)
            self.assertEqual(removed.load(), {})
            self.assertIsNone(removed.session_key)

    def test_every_changed_character_is_no_session(self) -> None:
        value = sealed()
        self.assertEqual(SessionStore(value).load(), {"k": "v"})
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
        for at in range(len(value)):
            other = alphabet[(alphabet.index(value[at]) + 1) % len(alphabet)]
            changed = value[:at] + other + value[at + 1 :]
            store = SessionStore(changed)
            self.assertEqual(store.load(), {}, at)
            self.assertIsNone(store.session_key)
        for cut in (value[:-1], value + "A", value[: len(value) // 2], "v1.c1." + "A" * 4091):
            self.assertEqual(SessionStore(cut).load(), {})

    def test_an_expired_payload_is_no_session_whatever_max_age_the_client_kept(self) -> None:
        # The browser was told Max-Age=1209600 (or kept the cookie longer by hand); the
        # payload says the session ended a second ago, or its absolute limit did.
        with mock.patch(VECTORS_NOW, return_value=1_800_000_000):
            ended = sealed(expires_at=1_800_000_000, ttl_seconds=1_209_600)
            capped = sealed(expires_at=1_800_000_100, absolute_expires_at=1_800_000_000)
            alive = sealed(expires_at=1_800_000_001)
            self.assertEqual(SessionStore(alive).load(), {"k": "v"}, "one second before its end")
            for value in (ended, capped):
                self.assertEqual(SessionStore(value).load(), {})

                def view(request: HttpRequest) -> HttpResponse:
                    return HttpResponse(str(dict(request.session)))

                response = run(view, f"{NAME}={value}")
                self.assertEqual(response.content, b"{}")
                self.assertEqual(response.cookies[NAME]["max-age"], 0, "the filter clears it too")

    def test_the_pair_limit_holds_exactly_at_4096_and_one_past(self) -> None:
        def size(blob_bytes: int) -> tuple[int, SessionStore]:
            store = SessionStore()
            store["blob"] = "x" * blob_bytes
            try:
                store.save()
            except SessionTooLarge as refused:
                return refused.size, store
            return pair_bytes(NAME, store.session_key or ""), store

        blob = next(n for n in range(2600, 3200) if size(n)[0] == 4096)
        at_limit, store = size(blob)
        self.assertEqual(at_limit, 4096)
        self.assertEqual(len(f"{NAME}={store.session_key}"), 4096)
        self.assertEqual(SessionStore(store.session_key).load(), {"blob": "x" * blob}, "it opens too")

        past = SessionStore(store.session_key)
        past["blob"] = "x" * (blob + 1)
        with self.assertRaises(SessionTooLarge) as refused:
            past.save()
        self.assertEqual(refused.exception.size, 4097)
        self.assertIn("4097 bytes, over the 4096", str(refused.exception))
        self.assertIn(repr(NAME), str(refused.exception))
        self.assertEqual(past.session_key, store.session_key, "the previous cookie stays")

        def view(request: HttpRequest) -> HttpResponse:
            request.session["blob"] = "x" * (blob + 1)
            return HttpResponse("ok")

        with self.assertRaises(SessionTooLarge):
            run(view, f"{NAME}={store.session_key}")

    def test_cycle_gives_a_new_id_keeping_data_creation_and_the_absolute_limit(self) -> None:
        with override_settings(**cookie_support.django_settings(ABSOLUTE_TTL_SECONDS=600)):
            with mock.patch(VECTORS_NOW, return_value=1_800_000_000):
                store = SessionStore()
                store["cart"] = ["book"]
                store.save()
            before = codec().open(store.session_key or "", 1_800_000_000)
            self.assertEqual((before.absolute_expires_at, before.expires_at), (1_800_000_600, 1_800_000_600))
            with mock.patch(VECTORS_NOW, return_value=1_800_000_100):
                cycled = SessionStore(store.session_key)
                cycled.cycle_key()
                after = codec().open(cycled.session_key or "", 1_800_000_100)
        self.assertNotEqual(after.id, before.id)
        self.assertEqual(after.data, {"cart": ["book"]})
        self.assertEqual((after.created_at, after.issued_at), (1_800_000_000, 1_800_000_100))
        self.assertEqual(after.absolute_expires_at, 1_800_000_600, "a cycle does not reset the absolute limit")

    def test_login_and_logout_through_the_middleware(self) -> None:
        def login(request: HttpRequest) -> HttpResponse:
            request.session.cycle_key()
            request.session["_auth_user_id"] = "42"
            return HttpResponse("ok")

        def logout(request: HttpRequest) -> HttpResponse:
            request.session.flush()
            return HttpResponse("ok")

        def shop(request: HttpRequest) -> HttpResponse:
            request.session["cart"] = [1]
            return HttpResponse("ok")

        first = run(shop).cookies[NAME].value
        logged_in = run(login, f"{NAME}={first}").cookies[NAME]
        payload = codec().open(logged_in.value, now())
        self.assertNotEqual(payload.id, codec().open(first, now()).id)
        self.assertEqual((payload.user, payload.data), ("42", {"cart": [1], "_auth_user_id": "42"}))
        self.assertEqual(str(logged_in["max-age"]), "1209600")
        self.assertEqual(logged_in["path"], "/")
        self.assertTrue(logged_in["httponly"])
        self.assertEqual(logged_in["samesite"], "Lax")
        cleared = run(logout, f"{NAME}={logged_in.value}").cookies[NAME]
        self.assertEqual((cleared.value, cleared["max-age"]), ("", 0))

    def test_a_browser_session_has_no_max_age_and_says_so_in_the_payload(self) -> None:
        def view(request: HttpRequest) -> HttpResponse:
            request.session["a"] = 1
            request.session.set_expiry(0)
            return HttpResponse("ok")

        cookie = run(view).cookies[NAME]
        self.assertEqual(cookie["max-age"], "")
        payload = codec().open(cookie.value, now())
        self.assertIs(payload.browser_session, True)
        self.assertEqual(payload.expires_at - payload.issued_at, 1_209_600, "kept as long as any session")

    def test_two_different_session_cookies_are_no_session_and_are_not_cleared(self) -> None:
        mine, planted = sealed(), sealed()
        seen: list[tuple[str | None, dict[str, Any]]] = []

        def view(request: HttpRequest) -> HttpResponse:
            seen.append((request.session.session_key, dict(request.session)))
            return HttpResponse("ok")

        for header in [
            f"{NAME}={planted}; {NAME}={mine}",
            f"{NAME}={mine}; other=1; {NAME}=forged",
            f"{NAME}={planted},{NAME}={mine}",  # two Cookie headers, as WSGI servers join them
        ]:
            with self.subTest(header=header):
                response = run(view, header)
                self.assertEqual(seen.pop(), (None, {}))
                self.assertNotIn(NAME, response.cookies, "neither cookie is cleared")
        run(view, f"{NAME}={mine}; {NAME}={mine}")
        self.assertEqual(seen.pop(), (mine, {"k": "v"}), "the same value twice is one cookie")


class DjangoCookieSettingsTests(SimpleTestCase):
    def refused(self, message: str, **settings: Any) -> None:
        with override_settings(**settings), self.assertRaisesMessage(Exception, message) as caught:
            SessionStore("v1.c1.AAAAAAAA").load()
        self.assertEqual(type(caught.exception).__name__, "ImproperlyConfigured")

    def test_placeholder_weak_and_shared_keys_are_refused(self) -> None:
        placeholder = base64.b64encode(b"REPLACE-ME with 32 random bytes!!").decode()
        weak = base64.b64encode(b"a passphrase that is long enough").decode()
        signing = cookie_support.keys("c1")[0]["secret"]
        for keys, message, extra in [
            ([{"id": "p", "secret": placeholder}], "placeholder", {"ALLOW_DEVELOPMENT_SECRETS": True}),
            ([{"id": "w", "secret": weak}], "ALLOW_DEVELOPMENT_SECRETS", {}),
            ([], "at least one", {}),
            ("c1", "must be a list", {}),
            (cookie_support.keys("c1"), 'also a secret of EDGE_SESSION["KEYS"]', {"KEYS": [{"id": "s", "secret": signing}]}),
        ]:
            with self.subTest(message):
                self.refused(message, **cookie_support.django_settings(COOKIE_STORE_KEYS=keys, **extra))

    def test_a_weak_key_is_accepted_in_development_with_a_warning(self) -> None:
        weak = base64.b64encode(b"a passphrase that is long enough").decode()
        conf = cookie_support.django_settings(COOKIE_STORE_KEYS=[{"id": "w", "secret": weak}], ALLOW_DEVELOPMENT_SECRETS=True)
        with override_settings(**conf), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            store = SessionStore()
            store["a"] = 1
            store.save()
        self.assertTrue(any(issubclass(w.category, DevelopmentSecretWarning) for w in caught))
        self.assertTrue((store.session_key or "").startswith("v1.w."))

    def test_missing_keys_other_cookie_settings_and_djangos_middleware_are_refused(self) -> None:
        self.refused("COOKIE_STORE_KEYS", EDGE_SESSION={"COOKIE": support.cookie_config()})
        self.refused("SESSION_COOKIE_NAME", SESSION_COOKIE_NAME="sessionid", **cookie_support.django_settings())
        self.refused("ABSOLUTE_TTL_SECONDS", **cookie_support.django_settings(ABSOLUTE_TTL_SECONDS=0))
        self.refused(
            "edge_session.django_cookie.SessionMiddleware in its place",
            MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
            **cookie_support.django_settings(),
        )
