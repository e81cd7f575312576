"""Moving a Flask app's sessions into edge-session without logging anyone out: documents written
by flask-mongo-sessions 0.2.1 itself (in its own virtualenv, on Flask 2.2 and pymongo 3.13)
into the test MongoDB, a Python 2 pickle in its exact format, and Flask's own signed cookie;
moved lazily by the interface and ahead of time by ``flask edge-session import``."""

from __future__ import annotations

import datetime
import os
import pickle
import tempfile
import unittest
import uuid
from typing import Any

from bson.binary import Binary
from flask import Flask, session
from flask.sessions import SecureCookieSessionInterface
from markupsafe import Markup
from pymongo import MongoClient

from edge_session.companion import CompanionClient
from edge_session.flask_legacy import MOVED_FIELD, unpickle_session
from edge_session.token import ConfigError, Keyring

from . import support
from .test_django_store import closed_port_url
from .test_flask import make_app

LEGACY_COOKIE = "session"
SPECIAL = {
    "when": datetime.datetime(2024, 5, 1, 12, 30, 15, tzinfo=datetime.timezone.utc),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "pair": (1, "two"),
    "markup": Markup("<b>bold</b>"),
    "raw": b"\xff\x00",
}
LOGGED_IN = {"_user_id": "7", "_fresh": True, "cart": ["book", "Zoë ✓"]}
# What Python 2.7's pickle.dumps (protocol 0, flask-mongo-sessions' MongoDBSession.pack) wrote for
# {'_user_id': u'7', 'name': 'Zo\xc3\xab' (a UTF-8 byte string), u'city': u'\u6771\u4eac',
#  'when': datetime.datetime(2016, 3, 1, 8, 0), 'tags': ['a', u'b'], 'pair': (1, 2L)}.
PYTHON2_PICKLE = (
    b"(dp0\nS'_user_id'\np1\nV7\np2\nsS'name'\np3\nS'Zo\\xc3\\xab'\np4\nsVcity\np5\n"
    b"V\\u6771\\u4eac\np6\nsS'when'\np7\ncdatetime\ndatetime\np8\n"
    b"(S'\\x07\\xe0\\x03\\x01\\x08\\x00\\x00\\x00\\x00\\x00'\np9\ntp10\nRp11\n"
    b"sS'tags'\np12\n(lp13\nS'a'\np14\naVb\np15\nasS'pair'\np16\n(I1\nL2L\ntp17\ns."
)


def mongo_config(**change: Any) -> dict[str, Any]:
    return {
        "EDGE_SESSION_LEGACY_SOURCE": "flask-mongo-sessions",
        "EDGE_SESSION_LEGACY_MONGODB_URI": support.mongodb_uri(),
        "EDGE_SESSION_LEGACY_DATABASE": f"legacy_flask_{os.getpid()}",
        "EDGE_SESSION_LEGACY_COLLECTION": "sessions",
        "EDGE_SESSION_LEGACY_UNPICKLE": True,
        **change,
    }


def legacy_app(**config: Any) -> Flask:
    app = make_app(**config)

    @app.get("/types")
    def types() -> Any:
        return {key: [type(value).__name__, repr(value)] for key, value in session.items()}

    return app


class MovingFlaskMongoSessionsTests(unittest.TestCase):
    def setUp(self) -> None:
        self.companion = CompanionClient(support.companion_url(), support.companion_token())
        self.keyring = Keyring.from_config(support.keys())
        conf = mongo_config()
        client: MongoClient[dict[str, Any]] = MongoClient(conf["EDGE_SESSION_LEGACY_MONGODB_URI"], tz_aware=True)
        self.addCleanup(client.close)
        self.legacy = client[conf["EDGE_SESSION_LEGACY_DATABASE"]][conf["EDGE_SESSION_LEGACY_COLLECTION"]]
        self.app = legacy_app(**conf)

    def write(self, *sessions: dict[str, Any]) -> list[str]:
        conf = mongo_config()
        args = (conf["EDGE_SESSION_LEGACY_MONGODB_URI"], conf["EDGE_SESSION_LEGACY_DATABASE"], "sessions")
        cookies: list[str] = support.run_legacy("flask_mongo_sessions_writer.py", *args, sessions=list(sessions))
        return cookies

    def request(self, cookie: str, path: str = "/", app: Flask | None = None) -> Any:
        return (app or self.app).test_client(use_cookies=False).get(path, headers={"Cookie": cookie})

    def moved(self, reply: Any) -> Any:
        token = next(
            header.split(";")[0].split("=", 1)[1]
            for header in reply.headers.getlist("Set-Cookie")
            if header.startswith(support.cookie_name() + "=")
        )
        session_id = self.keyring.verify(token)
        assert session_id is not None, "the new cookie is a token the filter's keys verify"
        self.addCleanup(self.companion.delete, session_id)
        return self.companion.get(session_id)

    def assert_legacy_cookie_cleared(self, reply: Any) -> None:
        cleared = [h for h in reply.headers.getlist("Set-Cookie") if h.startswith(LEGACY_COOKIE + "=")]
        self.assertEqual(len(cleared), 1, reply.headers)
        self.assertIn("Max-Age=0", cleared[0])
        self.assertIn("Path=/", cleared[0])

    def test_a_legacy_login_moves_with_its_types_and_the_document_goes(self) -> None:
        (sid,) = self.write({"data": LOGGED_IN, "permanent": True, "special": True})
        self.assertIsNotNone(self.legacy.find_one({"_id": sid}), "flask-mongo-sessions wrote its document")
        reply = self.request(f"{LEGACY_COOKIE}={sid}", "/types")
        expected = {**LOGGED_IN, **SPECIAL, "_permanent": True}
        self.assertEqual(reply.json, {key: [type(value).__name__, repr(value)] for key, value in expected.items()})
        moved = self.moved(reply)
        self.assertEqual(moved.user, "7")
        self.assertFalse(moved.browser_session, "a permanent session stays permanent")
        self.assertEqual(moved.data["pair"], {" t": [1, "two"]}, "stored as Flask's tagged JSON")
        self.assert_legacy_cookie_cleared(reply)
        self.assertIsNone(self.legacy.find_one({"_id": sid}), "the legacy document is gone")

    def test_without_the_unpickle_switch_the_source_is_refused_at_init_app(self) -> None:
        for value in (None, False, "true", 1):
            with self.subTest(value=value), self.assertRaisesRegex(ConfigError, "EDGE_SESSION_LEGACY_UNPICKLE = True"):
                make_app(**mongo_config(EDGE_SESSION_LEGACY_UNPICKLE=value))

    def test_a_pickle_naming_any_other_class_is_refused_without_running_it(self) -> None:
        with tempfile.TemporaryDirectory() as directory:
            marker = os.path.join(directory, "ran")

            class Exploit:
                def __reduce__(self) -> Any:
                    return (os.system, (f"touch {marker}",))

            for payload in [{"x": Exploit()}, {"x": {1, 2}}, {"x": datetime.date(2024, 1, 1)}]:
                sid = uuid.uuid4().hex
                future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
                self.legacy.insert_one({"_id": sid, "d": Binary(pickle.dumps(payload)), "exp": future})
                with self.subTest(payload=type(payload["x"]).__name__), self.assertLogs("edge_session.migration"):
                    reply = self.request(f"{LEGACY_COOKIE}={sid}")
                self.assertEqual((reply.json, reply.headers.getlist("Set-Cookie")), ({}, []))
                self.assertIsNotNone(self.legacy.find_one({"_id": sid}), "left as it is")
            self.assertFalse(os.path.exists(marker), "the pickle's code never ran")

    def test_a_python_2_pickle_moves_with_its_text_as_text(self) -> None:
        sid = uuid.uuid4().hex
        future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
        self.legacy.insert_one({"_id": sid, "d": Binary(PYTHON2_PICKLE), "exp": future})
        reply = self.request(f"{LEGACY_COOKIE}={sid}", "/types")
        self.assertEqual(
            reply.json,
            {
                "_user_id": ["str", "'7'"],
                "name": ["str", "'Zoë'"],
                "city": ["str", "'東京'"],
                # Flask's serializer keeps datetimes as HTTP dates, read back in UTC.
                "when": ["datetime", repr(datetime.datetime(2016, 3, 1, 8, 0, tzinfo=datetime.timezone.utc))],
                "tags": ["list", "['a', 'b']"],
                "pair": ["tuple", "(1, 2)"],
            },
        )
        self.assertEqual(self.moved(reply).user, "7")

    def test_an_expired_or_malformed_legacy_cookie_moves_nothing(self) -> None:
        (sid,) = self.write({"data": LOGGED_IN})
        past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)
        self.legacy.update_one({"_id": sid}, {"$set": {"exp": past}})
        reply = self.request(f"{LEGACY_COOKIE}={sid}")
        self.assertEqual((reply.json, reply.headers.getlist("Set-Cookie")), ({}, []))
        down = legacy_app(
            **mongo_config(EDGE_SESSION_LEGACY_MONGODB_URI=closed_port_url(), EDGE_SESSION_LEGACY_TIMEOUT=0.5)
        )
        for value in ["0" * 31, "0" * 33, "A" * 32, "g" * 32, '{"$ne": null}', "x" * 5000]:
            with self.subTest(value=value[:40]):
                reply = self.request(f"{LEGACY_COOKIE}={value}", app=down)
                self.assertEqual((reply.status_code, reply.json), (200, {}), "never looked up")

    def test_a_5xx_response_moves_nothing(self) -> None:
        (sid,) = self.write({"data": LOGGED_IN})
        app = legacy_app(**mongo_config())

        @app.get("/fail")
        def fail() -> Any:
            return "down", 503

        reply = self.request(f"{LEGACY_COOKIE}={sid}", "/fail", app=app)
        self.assertEqual(reply.headers.getlist("Set-Cookie"), [])
        self.assertIsNotNone(self.legacy.find_one({"_id": sid}))

    def test_the_cli_import_moves_every_live_session_once_keeping_its_expiry(self) -> None:
        conf = mongo_config(EDGE_SESSION_LEGACY_DATABASE=f"legacy_flask_batch_{os.getpid()}")
        collection = self.legacy.database.client[conf["EDGE_SESSION_LEGACY_DATABASE"]]["sessions"]
        collection.drop()
        args = (conf["EDGE_SESSION_LEGACY_MONGODB_URI"], conf["EDGE_SESSION_LEGACY_DATABASE"], "sessions")
        sids = support.run_legacy(
            "flask_mongo_sessions_writer.py",
            *args,
            sessions=[
                {"data": LOGGED_IN, "permanent": True, "special": True},
                {"data": {"cart": [1]}},
                {"data": {"x": 1}},
            ],
        )
        past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)
        collection.update_one({"_id": sids[2]}, {"$set": {"exp": past}})
        before = {doc["_id"]: doc for doc in collection.find()}
        app = legacy_app(**conf)
        runner = app.test_cli_runner()

        done = runner.invoke(args=["edge-session", "import", "--dry-run"])
        self.assertEqual(done.exit_code, 0, done.output)
        self.assertIn("2 live legacy sessions in the collection 'sessions'", done.output)
        self.assertIn("would move 2, already moved 0", done.output)
        self.assertEqual({doc["_id"]: doc for doc in collection.find()}, before, "a dry run writes nothing")

        done = runner.invoke(args=["edge-session", "import", "--progress-every", "1"])
        self.assertEqual(done.exit_code, 0, done.output)
        self.assertIn("... 1/2", done.output)
        self.assertIn("moved 2, already moved 0", done.output)
        after = collection.find_one({"_id": sids[0]})
        self.assertEqual(after["exp"], before[sids[0]]["exp"], "the marker expires with the legacy cookie")
        self.assertEqual(unpickle_session(after["d"]), {}, "the data is gone from the legacy store")
        token = after[MOVED_FIELD]
        session_id = self.keyring.verify(token)
        assert session_id is not None
        self.addCleanup(self.companion.delete, session_id)
        moved = self.companion.get(session_id)
        self.assertEqual((moved.user, moved.browser_session), ("7", False))

        done = runner.invoke(args=["edge-session", "import"])
        self.assertIn("moved 0, already moved 2", done.output, "idempotent")

        reply = self.request(f"{LEGACY_COOKIE}={sids[0]}", "/types", app=app)
        self.assertEqual(reply.json["pair"], ["tuple", "(1, 'two')"])
        self.assertIn(f"{support.cookie_name()}={token};", reply.headers.getlist("Set-Cookie")[0])
        self.assert_legacy_cookie_cleared(reply)
        self.assertIsNone(collection.find_one({"_id": sids[0]}))


class MovingFlaskSignedCookieSessionsTests(unittest.TestCase):
    def setUp(self) -> None:
        self.companion = CompanionClient(support.companion_url(), support.companion_token())
        self.keyring = Keyring.from_config(support.keys())

    def test_a_signed_cookie_session_moves_with_the_current_or_a_fallback_key(self) -> None:
        for secret, fallbacks in [
            ("the-current-secret-key", []),
            ("the-previous-secret-key", ["the-previous-secret-key"]),
        ]:
            with self.subTest(fallbacks=fallbacks):
                app = legacy_app(
                    EDGE_SESSION_LEGACY_SOURCE="flask-signed-cookie",
                    SECRET_KEY="the-current-secret-key",
                    SECRET_KEY_FALLBACKS=fallbacks,
                )
                signer = Flask("legacy")
                signer.secret_key = secret
                serializer = SecureCookieSessionInterface().get_signing_serializer(signer)
                assert serializer is not None
                cookie = serializer.dumps({**LOGGED_IN, **SPECIAL})
                reply = app.test_client(use_cookies=False).get(
                    "/types", headers={"Cookie": f"{LEGACY_COOKIE}={cookie}"}
                )
                expected = {**LOGGED_IN, **SPECIAL}
                self.assertEqual(
                    reply.json, {key: [type(value).__name__, repr(value)] for key, value in expected.items()}
                )
                cookies = reply.headers.getlist("Set-Cookie")
                self.assertTrue(any(c.startswith(f"{LEGACY_COOKIE}=;") and "Max-Age=0" in c for c in cookies), cookies)
                token = next(c.split(";")[0].split("=", 1)[1] for c in cookies if c.startswith(support.cookie_name()))
                session_id = self.keyring.verify(token)
                assert session_id is not None
                self.addCleanup(self.companion.delete, session_id)
                self.assertEqual(self.companion.get(session_id).user, "7")
        forged = legacy_app(EDGE_SESSION_LEGACY_SOURCE="flask-signed-cookie", SECRET_KEY="another-key")
        reply = forged.test_client(use_cookies=False).get("/", headers={"Cookie": f"{LEGACY_COOKIE}={cookie}"})
        self.assertEqual((reply.json, reply.headers.getlist("Set-Cookie")), ({}, []))
        done = forged.test_cli_runner().invoke(args=["edge-session", "import"])
        self.assertNotEqual(done.exit_code, 0)
        self.assertIn("live in their browsers", done.output)

    def test_a_bad_legacy_configuration_is_refused_at_init_app_by_name(self) -> None:
        for config, message in [
            ({"EDGE_SESSION_LEGACY_SOURCE": "redis"}, "EDGE_SESSION_LEGACY_SOURCE must be one of"),
            (
                {
                    "EDGE_SESSION_LEGACY_SOURCE": "flask-signed-cookie",
                    "EDGE_SESSION_LEGACY_COOKIE_NAME": support.cookie_name(),
                },
                "must have different names",
            ),
            (
                {"EDGE_SESSION_LEGACY_SOURCE": "flask-signed-cookie", "EDGE_SESSION_LEGACY_COOKIE_NAME": "a;b"},
                "must be a cookie name",
            ),
            (mongo_config(EDGE_SESSION_LEGACY_COLLECTION=None), "EDGE_SESSION_LEGACY_COLLECTION must name"),
            (mongo_config(EDGE_SESSION_LEGACY_TIMEOUT=0), "EDGE_SESSION_LEGACY_TIMEOUT must be a positive"),
        ]:
            with self.subTest(config=config), self.assertRaisesRegex(ConfigError, message):
                make_app(**config)


if __name__ == "__main__":
    unittest.main()
