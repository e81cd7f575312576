"""What the Django engine promises beyond Django's own mixin: filter tokens as session keys, no
companion call for a forged key, outages that raise instead of emptying a session, per-key
writes, browser-close sessions and user binding, all against a real companion."""

from __future__ import annotations

import socket
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.base import CreateError, UpdateError
from django.contrib.sessions.exceptions import SessionInterrupted
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory, SimpleTestCase, override_settings

from edge_session.companion import CompanionClient, CompanionUnavailable, session_handle
from edge_session.django import SessionMiddleware, SessionStore
from edge_session.secret_rules import DevelopmentSecretWarning
from edge_session.token import Keyring

from . import support


def closed_port_url() -> str:
    """A URL where nothing listens: the companion is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def companion_down() -> Any:
    return override_settings(EDGE_SESSION={**settings.EDGE_SESSION, "COMPANION_URL": closed_port_url()})


class DjangoEngineTests(SimpleTestCase):
    def setUp(self) -> None:
        self.companion = CompanionClient(support.companion_url(), support.companion_token())
        self.keyring = Keyring.from_config(support.keys())

    def saved(self, **data: Any) -> SessionStore:
        store = SessionStore()
        store.update(data)
        store.save()
        self.addCleanup(SessionStore().delete, store.session_key)
        return store

    def stored(self, store: SessionStore) -> Any:
        session_id = self.keyring.verify(store.session_key or "")
        assert session_id is not None, "the session key is a token the filter's keys verify"
        return self.companion.get(session_id)

    def test_session_key_is_the_filters_token_and_the_data_is_plain_json(self) -> None:
        store = self.saved(cart=[1, 2], name="Zoë ✓")
        self.assertRegex(store.session_key or "", r"^dev1\.[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{43}$")
        stored = self.stored(store)
        self.assertEqual(stored.data, {"cart": [1, 2], "name": "Zoë ✓"})
        self.assertEqual(SessionStore(store.session_key).load(), {"cart": [1, 2], "name": "Zoë ✓"})

    def test_forged_or_unsigned_keys_never_reach_the_companion(self) -> None:
        real = self.saved(secret="x").session_key or ""
        kid, session_id, mac = real.split(".")
        forged = f"{kid}.{session_id}.{mac[:-2]}{'A' if mac[-2] != 'A' else 'B'}{mac[-1]}"
        with companion_down():  # any call would raise CompanionUnavailable
            for key in [forged, session_id, "someunknownkey", f"other.{session_id}.{mac}"]:
                store = SessionStore(key)
                self.assertEqual(store.load(), {}, key)
                self.assertIsNone(store.session_key)
                self.assertIs(store.exists(key), False)
                store.delete(key)  # nothing to delete, nothing called

    def test_an_outage_raises_and_never_looks_like_an_empty_session(self) -> None:
        key = self.saved(cart=[1]).session_key
        with companion_down():
            with self.assertRaises(CompanionUnavailable):
                SessionStore(key).load()
            with self.assertRaises(CompanionUnavailable):
                SessionStore(key).exists(key)
            with self.assertRaises(CompanionUnavailable):
                SessionStore(key).delete()
            fresh = SessionStore()
            fresh["a"] = 1
            with self.assertRaises(CreateError):
                fresh.save()
        loaded = SessionStore(key)
        loaded["more"] = True
        with companion_down():
            with self.assertRaises(UpdateError):
                loaded.save()
            with self.assertRaises(CreateError):
                loaded.cycle_key()
        self.assertEqual(SessionStore(key).load(), {"cart": [1]}, "the stored session is untouched")

    def test_middleware_turns_a_failed_save_into_session_interrupted_and_sets_no_cookie(self) -> None:
        key = self.saved(cart=[1]).session_key

        def view(request: HttpRequest) -> HttpResponse:
            request.session["cart"] = [1, 2]
            return HttpResponse("ok")

        request = RequestFactory().get("/", HTTP_COOKIE=f"{settings.SESSION_COOKIE_NAME}={key}")
        middleware = SessionMiddleware(view)
        middleware.process_request(request)
        response = view(request)
        with companion_down(), self.assertRaises(SessionInterrupted):
            middleware.process_response(request, response)
        self.assertNotIn(settings.SESSION_COOKIE_NAME, response.cookies)
        self.assertEqual(SessionStore(key).load(), {"cart": [1]})

    def test_middleware_sets_the_token_cookie_and_browser_sessions_have_no_max_age(self) -> None:
        def view(request: HttpRequest) -> HttpResponse:
            request.session["cart"] = ["x"]
            if request.GET.get("browser"):
                request.session.set_expiry(0)
            return HttpResponse("ok")

        for query, max_age in [("", str(settings.SESSION_COOKIE_AGE)), ("?browser=1", "")]:
            with self.subTest(query=query):
                request = RequestFactory().get("/" + query)
                response = SessionMiddleware(view)(request)
                cookie = response.cookies[settings.SESSION_COOKIE_NAME]
                self.addCleanup(SessionStore().delete, cookie.value)
                self.assertEqual(str(cookie["max-age"]), max_age)
                self.assertIsNotNone(self.keyring.verify(cookie.value), "the cookie is the filter's token")
                self.assertEqual(
                    SessionStore(cookie.value).load(), {"cart": ["x"], **({"_session_expiry": 0} if query else {})}
                )

    def test_two_different_session_cookies_are_no_session_and_are_not_cleared(self) -> None:
        mine = self.saved(cart=["mine"]).session_key
        planted = self.saved(cart=["planted"]).session_key
        name = settings.SESSION_COOKIE_NAME
        seen: list[tuple[str | None, dict[str, Any]]] = []

        def view(request: HttpRequest) -> HttpResponse:
            seen.append((request.session.session_key, dict(request.session)))
            return HttpResponse("ok")

        for header in [
            f"{name}={planted}; {name}={mine}",
            f"{name}={mine}; {name}={planted}",
            f"{name}={mine}; other=1; {name}=forged",
            f"{name}={planted},{name}={mine}",  # two Cookie headers, as WSGI servers join them
        ]:
            with self.subTest(header=header), companion_down():  # nothing may be looked up
                response = SessionMiddleware(view)(RequestFactory().get("/", HTTP_COOKIE=header))
                self.assertEqual(seen.pop(), (None, {}))
                self.assertNotIn(name, response.cookies, "neither cookie is cleared")
        response = SessionMiddleware(view)(RequestFactory().get("/", HTTP_COOKIE=f"{name}={mine}; {name}={mine}"))
        self.assertEqual(seen.pop(), (mine, {"cart": ["mine"]}), "the same value twice is one cookie")

        def login(request: HttpRequest) -> HttpResponse:
            request.session["user"] = "x"
            return HttpResponse("ok")

        response = SessionMiddleware(login)(RequestFactory().get("/", HTTP_COOKIE=f"{name}={mine}; {name}={planted}"))
        made = response.cookies[name].value
        self.addCleanup(SessionStore().delete, made)
        self.assertNotIn(made, (mine, planted), "a write makes a new session, never one of the two")
        self.assertEqual(SessionStore(mine).load(), {"cart": ["mine"]}, "the user's own session is untouched")

    def test_the_engine_refuses_djangos_own_session_middleware(self) -> None:
        from django.core.exceptions import ImproperlyConfigured

        with override_settings(MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"]):
            with self.assertRaisesRegex(ImproperlyConfigured, "edge_session.django.SessionMiddleware in its place"):
                SessionStore().exists("x")
        with override_settings(MIDDLEWARE=["edge_session.django.SessionMiddleware"]):
            self.assertIs(SessionStore().exists("x"), False)

    def test_concurrent_saves_of_different_keys_both_persist(self) -> None:
        key = self.saved(base=0).session_key
        first, second = SessionStore(key), SessionStore(key)
        first.load(), second.load()
        first["a"] = 1
        second["b"] = 2
        first.save()
        second.save()
        # Django's whole-blob backends keep only the last save here; per-key writes keep both.
        self.assertEqual(SessionStore(key).load(), {"base": 0, "a": 1, "b": 2})
        del first["base"]
        first.save()
        self.assertEqual(SessionStore(key).load(), {"a": 1, "b": 2}, "a deleted key is unset")

    def test_expiry_forms_reach_the_companion(self) -> None:
        store = self.saved(x=1)
        self.assertEqual(
            (self.stored(store).ttl_seconds, self.stored(store).browser_session), (settings.SESSION_COOKIE_AGE, False)
        )
        store.set_expiry(0)  # until the browser closes; the server keeps the default lifetime
        store.save()
        self.assertEqual(
            (self.stored(store).ttl_seconds, self.stored(store).browser_session), (settings.SESSION_COOKIE_AGE, True)
        )
        store.set_expiry(60)
        store.save()
        self.assertEqual((self.stored(store).ttl_seconds, self.stored(store).browser_session), (60, False))
        with override_settings(SESSION_EXPIRE_AT_BROWSER_CLOSE=True):
            store.set_expiry(None)
            store.save()
            self.assertEqual(self.stored(store).browser_session, True)

    def test_login_binds_the_user_and_cycle_keeps_unsaved_changes(self) -> None:
        store = self.saved(cart=["book"])
        old_key = store.session_key
        store["_auth_user_id"] = "42"  # what django.contrib.auth.login stores
        store.cycle_key()
        store.save()
        self.assertNotEqual(store.session_key, old_key)
        self.assertIs(SessionStore().exists(old_key), False, "the old id is gone at once")
        self.assertEqual(SessionStore(store.session_key).load(), {"cart": ["book"], "_auth_user_id": "42"})
        self.assertEqual(self.stored(store).user, "42")
        session_id = self.keyring.verify(store.session_key or "") or ""
        listed = self.companion.user_sessions("42")
        self.assertIn(session_handle(session_id), [s.handle for s in listed])
        self.assertNotIn(session_id, repr(listed), "a listing never carries an id")
        self.companion.delete_user_sessions("42")  # "log out everywhere"
        self.assertEqual(SessionStore(store.session_key).load(), {})

    def test_a_bad_configuration_is_refused_by_name(self) -> None:
        from django.core.exceptions import ImproperlyConfigured

        for conf, message in [
            ({}, "COMPANION_URL"),
            ({**settings.EDGE_SESSION, "KEYS": []}, "at least one key"),
            ({**settings.EDGE_SESSION, "COMPANION_URL": "ftp://x"}, "http"),
        ]:
            with self.subTest(message), override_settings(EDGE_SESSION=conf):
                with self.assertRaisesRegex(ImproperlyConfigured, message):
                    SessionStore("x" * 20).exists("dev1.x.y")

    def test_weak_secrets_are_refused_unless_the_development_switch_is_on(self) -> None:
        from django.core.exceptions import ImproperlyConfigured

        text_key = [{"id": "dev1", "secret": "ZGV2LW9ubHktc2VjcmV0LWRvLW5vdC11c2UtaW4tcHJvZHVjdGlvbiE="}]
        for name, change, message in [
            ("text key", {"KEYS": text_key}, r"keys\[0\]\.secret is printable text"),
            ("short token", {"COMPANION_TOKEN": "dev-token-change-me-0123456789"}, "token is shorter than 32"),
        ]:
            with self.subTest(name):
                weak = {**settings.EDGE_SESSION, **change}
                with override_settings(EDGE_SESSION=weak), self.assertRaisesRegex(ImproperlyConfigured, message) as e:
                    SessionStore().exists("x")
                self.assertIn('EDGE_SESSION["ALLOW_DEVELOPMENT_SECRETS"] accepts it', str(e.exception))
                allowed = {**weak, "ALLOW_DEVELOPMENT_SECRETS": True}
                with override_settings(EDGE_SESSION=allowed), self.assertWarnsRegex(DevelopmentSecretWarning, message):
                    self.assertIs(SessionStore().exists("x"), False)
        for change, message in [
            ({"COMPANION_TOKEN": "REPLACE-ME-openssl-rand-hex-24", "ALLOW_DEVELOPMENT_SECRETS": True}, "placeholder"),
            ({"ALLOW_DEVELOPMENT_SECRETS": "false"}, "True or False"),
        ]:
            with override_settings(EDGE_SESSION={**settings.EDGE_SESSION, **change}):
                with self.assertRaisesRegex(ImproperlyConfigured, message):
                    SessionStore().exists("x")

    def test_the_session_cookie_carries_the_filters_attributes(self) -> None:
        def view(request: HttpRequest) -> HttpResponse:
            request.session["x"] = 1
            return HttpResponse("ok")

        name = settings.SESSION_COOKIE_NAME
        scoped = {"same_site": "strict", "path": "/app", "domain": "example.com", "http_only": True}
        for cookie, app, attributes in [
            ({}, {"SESSION_COOKIE_SECURE": True}, {"secure": True, "samesite": "Lax", "path": "/", "domain": ""}),
            (
                scoped,
                {
                    "SESSION_COOKIE_SECURE": True,
                    "SESSION_COOKIE_SAMESITE": "Strict",
                    "SESSION_COOKIE_PATH": "/app",
                    "SESSION_COOKIE_DOMAIN": "example.com",
                },
                {"secure": True, "samesite": "Strict", "path": "/app", "domain": "example.com"},
            ),
        ]:
            edge_session = {**settings.EDGE_SESSION, "COOKIE": cookie}
            with self.subTest(cookie=cookie), override_settings(EDGE_SESSION=edge_session, **app):
                response = SessionMiddleware(view)(RequestFactory().get("/"))
                morsel = response.cookies[name]
                self.addCleanup(SessionStore().delete, morsel.value)
                self.assertEqual({key: morsel[key] for key in attributes}, attributes)
                self.assertIs(morsel["httponly"], True)
                self.assertIn("; Secure", morsel.OutputString())

    def test_a_cookie_setting_unlike_the_filters_is_refused_by_name(self) -> None:
        from django.core.exceptions import ImproperlyConfigured

        def view(request: HttpRequest) -> HttpResponse:
            return HttpResponse("ok")

        filter_defaults = {"EDGE_SESSION": {**settings.EDGE_SESSION, "COOKIE": {}}, "SESSION_COOKIE_SECURE": True}
        with override_settings(**filter_defaults, SESSION_COOKIE_SAMESITE="lax"):
            self.assertIs(SessionStore().exists("x"), False, "the filter's defaults, any case of Lax")
        for setting, value, message in [
            ("SESSION_COOKIE_SECURE", False, "SESSION_COOKIE_SECURE is False, but the filter's cookie.secure is True"),
            ("SESSION_COOKIE_HTTPONLY", False, "SESSION_COOKIE_HTTPONLY is False, but .* cookie.http_only is True"),
            ("SESSION_COOKIE_SAMESITE", False, "SESSION_COOKIE_SAMESITE is None, but .* cookie.same_site is 'Lax'"),
            ("SESSION_COOKIE_SAMESITE", "None", "SESSION_COOKIE_SAMESITE is 'None', but"),
            ("SESSION_COOKIE_SAMESITE", "Strict", "SESSION_COOKIE_SAMESITE is 'Strict', but"),
            ("SESSION_COOKIE_PATH", "/app", "SESSION_COOKIE_PATH is '/app', but the filter's cookie.path is '/'"),
            ("SESSION_COOKIE_DOMAIN", ".example.com", "SESSION_COOKIE_DOMAIN is '.example.com', but .* is None"),
            ("SESSION_COOKIE_NAME", "sessionid", "SESSION_COOKIE_NAME is 'sessionid', but .* cookie.name is 'sid'"),
        ]:
            with self.subTest(setting, value=value), override_settings(**{**filter_defaults, setting: value}):
                with self.assertRaisesRegex(ImproperlyConfigured, message):
                    SessionStore().exists("x")
                with self.assertRaisesRegex(ImproperlyConfigured, f"set {setting} = "):
                    SessionMiddleware(view)  # refused at start, before any request

    def test_a_bad_cookie_object_is_refused_by_field(self) -> None:
        from django.core.exceptions import ImproperlyConfigured

        for cookie, message in [
            ("secure", "must be the filter's cookie object"),
            ({"secure": "yes"}, "secure must be a bool"),
            ({"secure": 1}, "secure must be a bool"),
            ({"same_site": "LAX"}, "same_site must be Strict, Lax or None"),
            ({"sameSite": "Lax"}, "'sameSite' is not one of the filter's cookie fields"),
            ({"domain": 3}, "domain must be a str or None"),
        ]:
            with self.subTest(cookie=cookie):
                with override_settings(EDGE_SESSION={**settings.EDGE_SESSION, "COOKIE": cookie}):
                    with self.assertRaisesRegex(ImproperlyConfigured, message):
                        SessionStore().exists("x")
