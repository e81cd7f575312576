"""Moving a Django app's sessions into edge-session without logging anyone out: sessions written
by django-mongo-sessions 0.0.4 itself (in its own virtualenv, on Django 3.2 and pymongo 3.13)
into the test MongoDB, moved lazily by the middleware and ahead of time by
``manage.py edge_session_import``; and Django's own signed-cookie and database engines as
legacy engines."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory, SimpleTestCase, override_settings
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from edge_session.companion import CompanionClient
from edge_session.django import SessionMiddleware, SessionStore
from edge_session.django_mongo_sessions import MongoSessionsBatch
from edge_session.django_mongo_sessions import SessionStore as LegacyStore
from edge_session.migration import MOVED_KEY
from edge_session.token import Keyring

from . import support
from .test_django_store import closed_port_url

LEGACY_COOKIE = "sessionid"
TTL = 1209600
# What django.contrib.auth.login() stores; the user stays logged in when all three move.
LOGGED_IN = {
    "_auth_user_id": "42",
    "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
    "_auth_user_hash": "0c3f6d2b9a7e41f58d0b6a4c2e9f1a7b3d5c8e0f2a4b6c8d0e2f4a6b8c0d2e4f",
    "cart": ["book", "Zoë ✓"],
}


def legacy_conf(**change: Any) -> dict[str, Any]:
    return {
        "ENGINE": "mongo_sessions.session",
        "COOKIE_NAME": LEGACY_COOKIE,
        "MONGODB_URI": support.mongodb_uri(),
        "DATABASE": f"legacy_django_{os.getpid()}",
        "COLLECTION": "mongo_sessions",
        "TTL": TTL,
        **change,
    }


def with_legacy(**change: Any) -> Any:
    return override_settings(EDGE_SESSION={**settings.EDGE_SESSION, "LEGACY": legacy_conf(**change)})


def write_legacy(
    *sessions: dict[str, Any], conf: dict[str, Any] | None = None, secret: str | None = None, hashing: str = "sha256"
) -> list[str]:
    """Session keys of sessions django-mongo-sessions itself saved (``hashing`` ``sha1``: in the
    format of Django before 3.1)."""
    conf = conf or legacy_conf()
    args = (conf["MONGODB_URI"], conf["DATABASE"], conf["COLLECTION"], secret or settings.SECRET_KEY, str(TTL), hashing)
    keys: list[str] = support.run_legacy("django_mongo_sessions_writer.py", *args, sessions=list(sessions))
    return keys


def through_middleware(
    cookie: str, view: Callable[[HttpRequest], HttpResponse] | None = None
) -> tuple[HttpResponse, dict[str, Any]]:
    """The response to a request carrying ``cookie``, and the session its view saw."""
    seen: dict[str, Any] = {}

    def show(request: HttpRequest) -> HttpResponse:
        seen.update(request.session.items())
        return view(request) if view else HttpResponse("ok")

    response = SessionMiddleware(show)(RequestFactory().get("/", HTTP_COOKIE=cookie))
    return response, seen


class MovingDjangoMongoSessionsTests(SimpleTestCase):
    def setUp(self) -> None:
        self.companion = CompanionClient(support.companion_url(), support.companion_token())
        self.keyring = Keyring.from_config(support.keys())
        conf = legacy_conf()
        self.legacy = MongoClient(conf["MONGODB_URI"], tz_aware=True)[conf["DATABASE"]][conf["COLLECTION"]]
        self.addCleanup(self.legacy.database.client.close)
        self.enterContext(with_legacy())

    def record(self, key: str) -> Any:
        return self.legacy.find_one({"session_key": key})

    def new_session(self, response: HttpResponse) -> Any:
        """The companion's session whose cookie the response set."""
        token = response.cookies[settings.SESSION_COOKIE_NAME].value
        session_id = self.keyring.verify(token)
        assert session_id is not None, "the new cookie is a token the filter's keys verify"
        self.addCleanup(self.companion.delete, session_id)
        return self.companion.get(session_id)

    def assert_legacy_cookie_cleared(self, response: HttpResponse) -> None:
        morsel = response.cookies[LEGACY_COOKIE]
        self.assertEqual((morsel.value, morsel["max-age"], morsel["path"]), ("", 0, "/"))

    def test_a_legacy_login_moves_on_its_first_request_and_the_legacy_record_goes(self) -> None:
        (key,) = write_legacy(LOGGED_IN)
        self.assertIsNotNone(self.record(key), "django-mongo-sessions wrote its document")
        response, seen = through_middleware(f"{LEGACY_COOKIE}={key}")
        self.assertEqual(seen, LOGGED_IN, "the view sees the legacy session's data")
        moved = self.new_session(response)
        self.assertEqual((moved.data, moved.user), (LOGGED_IN, "42"), "same data, bound to the same user")
        self.assert_legacy_cookie_cleared(response)
        self.assertIsNone(self.record(key), "the legacy record is gone")
        token = response.cookies[settings.SESSION_COOKIE_NAME].value
        self.assertEqual(through_middleware(f"{settings.SESSION_COOKIE_NAME}={token}")[1], LOGGED_IN)
        replay, seen = through_middleware(f"{LEGACY_COOKIE}={key}")
        self.assertEqual((seen, dict(replay.cookies)), ({}, {}), "a copy of the legacy cookie opens nothing")

    def test_sessions_in_the_pre_django_3_1_format_move_too(self) -> None:
        (key,) = write_legacy(LOGGED_IN, hashing="sha1")
        self.assertNotIn(":", self.record(key)["session_data"], "base64(hash:json), not signing.dumps")
        response, seen = through_middleware(f"{LEGACY_COOKIE}={key}")
        self.assertEqual(seen, LOGGED_IN)
        self.assertEqual(self.new_session(response).data, LOGGED_IN)

    def test_sessions_signed_with_a_fallback_key_move_and_others_do_not(self) -> None:
        old = "the-legacy-apps-previous-secret-key-0123456789"
        new_format, old_format = (
            write_legacy(LOGGED_IN, secret=old),
            write_legacy(LOGGED_IN, secret=old, hashing="sha1"),
        )
        for keys in (new_format, old_format):
            with self.subTest(keys=keys):
                response, seen = through_middleware(f"{LEGACY_COOKIE}={keys[0]}")
                self.assertEqual((seen, dict(response.cookies)), ({}, {}), "not without the key")
                self.assertIsNotNone(self.record(keys[0]), "an unreadable session is left alone, to move once fixed")
                with override_settings(SECRET_KEY_FALLBACKS=[old]):
                    response, seen = through_middleware(f"{LEGACY_COOKIE}={keys[0]}")
                self.assertEqual(seen, LOGGED_IN)
                self.new_session(response)

    def test_an_expired_legacy_session_does_not_move_and_nothing_is_changed(self) -> None:
        expired, live = write_legacy({"a": 1}, {"a": 2})
        # The TTL index would remove it within a minute; the reader must not wait for that.
        for key, age in ((expired, TTL + 1), (live, TTL - 60)):
            self.legacy.update_one(
                {"session_key": key},
                {"$set": {"creation_date": self.record(key)["creation_date"] - timedelta(seconds=age)}},
            )
        response, seen = through_middleware(f"{LEGACY_COOKIE}={expired}")
        self.assertEqual((seen, dict(response.cookies)), ({}, {}))
        response, seen = through_middleware(f"{LEGACY_COOKIE}={live}")
        self.assertEqual(seen, {"a": 2}, "one minute from its expiry, it still moves")

    def test_a_5xx_response_moves_nothing_and_the_next_request_does(self) -> None:
        (key,) = write_legacy(LOGGED_IN)
        response, _ = through_middleware(f"{LEGACY_COOKIE}={key}", lambda request: HttpResponse(status=500))
        self.assertNotIn(settings.SESSION_COOKIE_NAME, response.cookies)
        self.assertNotIn(LEGACY_COOKIE, response.cookies)
        self.assertIsNotNone(self.record(key))
        response, seen = through_middleware(f"{LEGACY_COOKIE}={key}")
        self.assertEqual((seen, self.new_session(response).data), (LOGGED_IN, LOGGED_IN))

    def test_a_logout_on_the_moving_request_ends_both(self) -> None:
        (key,) = write_legacy(LOGGED_IN)

        def logout(request: HttpRequest) -> HttpResponse:
            request.session.flush()
            return HttpResponse("bye")

        response, _ = through_middleware(f"{LEGACY_COOKIE}={key}", logout)
        self.assertNotIn(settings.SESSION_COOKIE_NAME, response.cookies)
        self.assert_legacy_cookie_cleared(response)
        self.assertIsNone(self.record(key))

    def test_a_valid_edge_session_retires_the_legacy_cookie_without_reading_it(self) -> None:
        current = SessionStore()
        current.update({"fresh": True})
        current.save()
        self.addCleanup(SessionStore().delete, current.session_key)
        (key,) = write_legacy(LOGGED_IN)
        response, seen = through_middleware(
            f"{settings.SESSION_COOKIE_NAME}={current.session_key}; {LEGACY_COOKIE}={key}"
        )
        self.assertEqual(seen, {"fresh": True}, "the edge-session session wins")
        self.assert_legacy_cookie_cleared(response)
        self.assertIsNone(self.record(key), "so a later logout cannot bring the legacy login back")

    def test_two_different_legacy_cookies_move_nothing_and_are_not_cleared(self) -> None:
        mine, planted = write_legacy(LOGGED_IN, {"_auth_user_id": "666"})
        for header in [
            f"{LEGACY_COOKIE}={planted}; {LEGACY_COOKIE}={mine}",
            f"{LEGACY_COOKIE}={mine},{LEGACY_COOKIE}={planted}",
        ]:
            with self.subTest(header=header), with_legacy(MONGODB_URI=closed_port_url()):  # nothing may be looked up
                response, seen = through_middleware(header)
                self.assertEqual(seen, {})
                self.assertEqual(dict(response.cookies), {})
        self.assertIsNotNone(self.record(mine))
        response, seen = through_middleware(f"{LEGACY_COOKIE}={mine}; {LEGACY_COOKIE}={mine}")
        self.assertEqual(seen, LOGGED_IN, "the same value twice is one cookie")
        self.new_session(response)

    def test_a_legacy_cookie_that_is_no_django_session_key_is_never_looked_up(self) -> None:
        with with_legacy(MONGODB_URI=closed_port_url(), TIMEOUT=0.5):  # any lookup raises
            for value in ["a" * 7, "a" * 65, "A" * 32, "x" * 4097, '{"$ne":null}', "abc%00def123", "é" * 32]:
                with self.subTest(value=value[:20]):
                    response, seen = through_middleware(f"{LEGACY_COOKIE}={value}")
                    self.assertEqual((seen, dict(response.cookies)), ({}, {}))
            for value in ["a" * 8, "a" * 64]:  # the limits themselves are looked up
                with self.subTest(value=value), self.assertRaises(PyMongoError):
                    through_middleware(f"{LEGACY_COOKIE}={value}")

    def test_the_batch_import_moves_every_live_session_once_keeping_its_expiry(self) -> None:
        conf = legacy_conf(DATABASE=f"legacy_django_batch_{os.getpid()}")
        self.enterContext(override_settings(EDGE_SESSION={**settings.EDGE_SESSION, "LEGACY": conf}))
        collection = self.legacy.database.client[conf["DATABASE"]][conf["COLLECTION"]]
        collection.drop()
        keys = write_legacy(LOGGED_IN, {"cart": ["pen"]}, {"_auth_user_id": "7"}, {"gone": True}, conf=conf)
        collection.update_one(
            {"session_key": keys[3]},
            {
                "$set": {
                    "creation_date": collection.find_one({"session_key": keys[3]})["creation_date"]
                    - timedelta(seconds=TTL + 1)
                }
            },
        )
        before = {doc["session_key"]: doc for doc in collection.find()}

        out = io.StringIO()
        call_command("edge_session_import", "--dry-run", stdout=out)
        self.assertIn("3 live legacy sessions in the collection 'mongo_sessions'", out.getvalue())
        self.assertIn("would move 3, already moved 0", out.getvalue())
        self.assertIn("dry run: nothing written", out.getvalue())
        self.assertEqual({doc["session_key"]: doc for doc in collection.find()}, before, "a dry run writes nothing")

        out = io.StringIO()
        call_command("edge_session_import", "--progress-every", "2", stdout=out)
        self.assertIn("... 2/3", out.getvalue())
        self.assertIn("moved 3, already moved 0, empty or unreadable 0", out.getvalue())
        tokens = {}
        for key in keys[:3]:
            after = collection.find_one({"session_key": key})
            self.assertEqual(after["creation_date"], before[key]["creation_date"], "the marker expires with the cookie")
            marker = LegacyStore().decode(after["session_data"])
            self.assertEqual(list(marker), [MOVED_KEY])
            tokens[key] = marker[MOVED_KEY]
            session_id = self.keyring.verify(tokens[key])
            assert session_id is not None
            self.addCleanup(self.companion.delete, session_id)
            moved = self.companion.get(session_id)
            self.assertLessEqual(abs(moved.ttl_seconds - TTL), 120, "the legacy session's remaining life")
        self.assertEqual(self.companion.get(self.keyring.verify(tokens[keys[0]]) or "").data, LOGGED_IN)
        self.assertEqual(self.companion.get(self.keyring.verify(tokens[keys[0]]) or "").user, "42")

        out = io.StringIO()
        call_command("edge_session_import", stdout=out)
        self.assertIn("moved 0, already moved 3", out.getvalue(), "idempotent")

        # A browser that still holds the legacy cookie lands in its new session.
        response, seen = through_middleware(f"{LEGACY_COOKIE}={keys[0]}")
        self.assertEqual(seen, LOGGED_IN)
        self.assertEqual(response.cookies[settings.SESSION_COOKIE_NAME].value, tokens[keys[0]])
        self.assert_legacy_cookie_cleared(response)
        self.assertIsNone(collection.find_one({"session_key": keys[0]}))

    def test_a_record_changed_during_the_import_is_left_for_the_lazy_path(self) -> None:
        (key,) = write_legacy({"a": 1})
        batch = MongoSessionsBatch(LegacyStore)
        record = next(r for r in batch.records() if r.key == key)
        write_again = self.record(key)
        self.legacy.update_one({"session_key": key}, {"$set": {"session_data": write_again["session_data"] + "x"}})
        self.assertIs(batch.mark_moved(record, "token"), False)
        self.assertNotIn(MOVED_KEY, str(self.record(key)["session_data"]))

    def test_a_marker_that_does_not_verify_opens_nothing(self) -> None:
        (key,) = write_legacy({"a": 1})
        forged = "dev1." + "A" * 43 + "." + "B" * 43
        self.legacy.update_one(
            {"session_key": key}, {"$set": {"session_data": LegacyStore().encode({MOVED_KEY: forged})}}
        )
        response, seen = through_middleware(f"{LEGACY_COOKIE}={key}")
        self.assertEqual(seen, {})
        self.assertNotIn(settings.SESSION_COOKIE_NAME, response.cookies)


class MovingFromDjangosOwnEnginesTests(SimpleTestCase):
    """Any engine by dotted path, read with the app's own keys and serializer."""

    databases = {"default"}

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        call_command("migrate", "sessions", verbosity=0)  # the db engine's table, in memory

    def setUp(self) -> None:
        self.companion = CompanionClient(support.companion_url(), support.companion_token())
        self.keyring = Keyring.from_config(support.keys())

    def engine(self, engine: str) -> Any:
        return override_settings(
            EDGE_SESSION={**settings.EDGE_SESSION, "LEGACY": {"ENGINE": engine, "COOKIE_NAME": LEGACY_COOKIE}}
        )

    def moved(self, response: HttpResponse) -> Any:
        session_id = self.keyring.verify(response.cookies[settings.SESSION_COOKIE_NAME].value)
        assert session_id is not None
        self.addCleanup(self.companion.delete, session_id)
        return self.companion.get(session_id)

    def test_a_signed_cookie_session_moves_with_the_current_or_a_fallback_key(self) -> None:
        from django.contrib.sessions.backends.signed_cookies import SessionStore as SignedCookies

        def legacy_cookie(secret: str) -> str:
            with override_settings(SECRET_KEY=secret):
                store = SignedCookies()
                store.update(LOGGED_IN)
                store.save()
                return str(store.session_key)

        self.enterContext(self.engine("django.contrib.sessions.backends.signed_cookies"))
        for secret, fallbacks in [
            (settings.SECRET_KEY, []),
            ("the-previous-key-0123456789abcdef", ["the-previous-key-0123456789abcdef"]),
        ]:
            with self.subTest(fallbacks=fallbacks), override_settings(SECRET_KEY_FALLBACKS=fallbacks):
                response, seen = through_middleware(f"{LEGACY_COOKIE}={legacy_cookie(secret)}")
                self.assertEqual(seen, LOGGED_IN)
                self.assertEqual((self.moved(response).data, self.moved(response).user), (LOGGED_IN, "42"))
                self.assertEqual(response.cookies[LEGACY_COOKIE]["max-age"], 0)
        response, seen = through_middleware(f"{LEGACY_COOKIE}={legacy_cookie('an-unknown-key-0123456789abcdef')}")
        self.assertEqual((seen, dict(response.cookies)), ({}, {}), "a cookie no key verifies moves nothing")
        with self.assertRaisesRegex(CommandError, "keeps no list of its sessions"):
            call_command("edge_session_import", stdout=io.StringIO())

    def test_a_database_session_moves_lazily_and_by_batch(self) -> None:
        from django.contrib.sessions.backends.db import SessionStore as Database
        from django.contrib.sessions.models import Session

        self.enterContext(self.engine("django.contrib.sessions.backends.db"))
        lazy, batch = Database(), Database()
        for store in (lazy, batch):
            store.update(LOGGED_IN)
            store.save()
        response, seen = through_middleware(f"{LEGACY_COOKIE}={lazy.session_key}")
        self.assertEqual(self.moved(response).data, LOGGED_IN)
        self.assertFalse(Session.objects.filter(session_key=lazy.session_key).exists(), "the row is gone")

        expiry = Session.objects.get(session_key=batch.session_key).expire_date
        out = io.StringIO()
        call_command("edge_session_import", stdout=out)
        self.assertIn("1 live legacy session in the table 'django_session'", out.getvalue())
        self.assertIn("moved 1, already moved 0", out.getvalue())
        row = Session.objects.get(session_key=batch.session_key)
        self.assertEqual(row.expire_date, expiry, "the marker expires with the legacy cookie")
        token = Database().decode(row.session_data)[MOVED_KEY]
        call_command("edge_session_import", stdout=(out := io.StringIO()))
        self.assertIn("moved 0, already moved 1", out.getvalue())
        response, seen = through_middleware(f"{LEGACY_COOKIE}={batch.session_key}")
        self.assertEqual((seen, response.cookies[settings.SESSION_COOKIE_NAME].value), (LOGGED_IN, token))
        self.moved(response)
        self.assertFalse(Session.objects.filter(session_key=batch.session_key).exists())

    def test_a_bad_legacy_configuration_is_refused_by_name(self) -> None:
        for legacy, message in [
            ("mongo", r'EDGE_SESSION\["LEGACY"\] must be a dict'),
            ({}, r'\["ENGINE"\] must name'),
            ({"ENGINE": "no.such.engine"}, "'no.such.engine' is not a session engine"),
            (
                {"ENGINE": "django.contrib.sessions.backends.db", "COOKIE_NAME": settings.SESSION_COOKIE_NAME},
                "must have different names",
            ),
            ({"ENGINE": "django.contrib.sessions.backends.db", "COOKIE_NAME": "a b"}, "must be a cookie name"),
        ]:
            with (
                self.subTest(legacy=legacy),
                override_settings(EDGE_SESSION={**settings.EDGE_SESSION, "LEGACY": legacy}),
            ):
                with self.assertRaisesRegex(ImproperlyConfigured, message):
                    SessionMiddleware(lambda request: HttpResponse())
