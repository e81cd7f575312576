"""Flask session values: Flask's own session tests (tests/test_basic.py of the pinned Flask source
distribution, unmodified) run with edge-session's interface in place of Flask's cookie session,
and round trips through the companion and the filter."""

from __future__ import annotations

import datetime
import json
import sys
import unittest
import uuid
from collections.abc import Callable
from typing import Any

from flask import Flask, session
from markupsafe import Markup

from edge_session.companion import CompanionClient
from edge_session.flask import init_app
from edge_session.token import Keyring

from . import support
from .test_flask import make_app
from .test_sharing import app_saw

sys.path.insert(0, support.required("FLASK_TESTS_DIR"))
import test_basic  # noqa: E402 - Flask's own tests, from its source distribution

# Flask's session tests that hold for any session interface. Left out, and why:
# test_session_path, test_session_using_application_root, test_session_using_session_settings
# and test_session_using_samesite_attribute set cookie attributes (path, domain, SameSite,
# Partitioned) that init_app refuses because the filter sets the same cookie with its own;
# test_missing_session and test_session_secret_key_fallbacks test the signed cookie's key.
FLASK_SESSION_TESTS = [
    "test_session_accessed",
    "test_session_expiration",
    "test_session_stored_last",
    "test_session_special_types",
    "test_session_cookie_setting",
    "test_session_vary_cookie",
    "test_session_refresh_vary",
    "test_extended_flashing",
]


def flask_test_app() -> Flask:
    """What Flask's conftest ``app`` fixture makes, with edge-session's interface."""
    app = Flask("flask_test", root_path=support.required("FLASK_TESTS_DIR"))
    app.config.update(
        TESTING=True,
        SECRET_KEY="test key",
        SESSION_COOKIE_NAME=support.cookie_name(),
        SESSION_COOKIE_SECURE=support.cookie_secure(),
        SESSION_COOKIE_SAMESITE="Lax",
        EDGE_SESSION_COOKIE=support.cookie_config(),
        EDGE_SESSION_COMPANION_URL=support.companion_url(),
        EDGE_SESSION_COMPANION_TOKEN=support.companion_token(),
        EDGE_SESSION_KEYS=support.keys(),
        EDGE_SESSION_TIMEOUT=10.0,
    )
    init_app(app)
    return app


def flask_test(name: str) -> Callable[[unittest.TestCase], None]:
    def run(self: unittest.TestCase) -> None:
        test: Callable[..., None] = getattr(test_basic, name)
        app = flask_test_app()
        takes = test.__code__.co_varnames[: test.__code__.co_argcount]
        test(*[app if arg == "app" else app.test_client() for arg in takes])

    run.__name__ = name
    return run


class FlasksOwnSessionTests(unittest.TestCase):
    locals().update({name: flask_test(name) for name in FLASK_SESSION_TESTS})

    def test_flashes(self) -> None:
        app = flask_test_app()
        with app.test_request_context():
            test_basic.test_flashes(app, None)


class FlaskValueRoundTripTests(unittest.TestCase):
    VALUES: dict[str, Any] = {
        "when": datetime.datetime(2024, 5, 1, 12, 30, 15, tzinfo=datetime.timezone.utc),
        "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "pair": (1, ("nested", b"\x00")),
        "markup": Markup("<b>bold</b>"),
        "raw": b"\xff\x00",
        "looks_tagged": {" t": "not-a-tuple"},
        "plain": {"cart": [1, 2], "name": "Zoë"},
    }

    def setUp(self) -> None:
        self.app = make_app()
        self.companion = CompanionClient(support.companion_url(), support.companion_token())
        self.keyring = Keyring.from_config(support.keys())

        @self.app.post("/special")
        def special() -> Any:
            session.update(self.VALUES)
            return "ok"

        @self.app.post("/later")
        def later() -> Any:
            session["when"] = session["when"] + datetime.timedelta(days=1)
            return "ok"

        @self.app.get("/types")
        def types() -> Any:
            return {key: [type(value).__name__, repr(value)] for key, value in session.items()}

    def token(self, client: Any) -> str:
        cookie = client.get_cookie(support.cookie_name())
        assert cookie is not None
        return str(cookie.value)

    def test_the_types_flasks_serializer_carries_come_back_as_they_went_in(self) -> None:
        client = self.app.test_client()
        client.post("/special")
        seen = client.get("/types").json
        self.assertEqual(seen, {key: [type(value).__name__, repr(value)] for key, value in self.VALUES.items()})

    def test_each_value_is_stored_as_tagged_json_and_written_on_its_own(self) -> None:
        client = self.app.test_client()
        client.post("/special")
        session_id = self.keyring.verify(self.token(client))
        assert session_id is not None
        stored = self.companion.get(session_id)
        assert stored is not None
        self.assertEqual(stored.data["when"], {" d": "Wed, 01 May 2024 12:30:15 GMT"})
        self.assertEqual(stored.data["pair"], {" t": [1, {" t": ["nested", {" b": "AA=="}]}]})
        self.assertEqual(stored.data["looks_tagged"], {" di": {" t__": "not-a-tuple"}})
        self.assertEqual(stored.data["plain"], {"cart": [1, 2], "name": "Zoë"}, "plain JSON stays plain")
        # Another writer changes a key meanwhile; changing "when" sends "when" only.
        self.companion.patch(session_id, set={"other": "kept"})
        client.post("/later")
        after = self.companion.get(session_id)
        assert after is not None
        self.assertEqual(after.data["when"], {" d": "Thu, 02 May 2024 12:30:15 GMT"})
        self.assertEqual(after.data["other"], "kept")

    def test_the_filter_injects_the_tagged_forms(self) -> None:
        client = self.app.test_client()
        client.post("/special")
        seen = json.loads(app_saw(self.token(client))["x-session-data"])
        self.assertEqual(seen["uuid"], {" u": "12345678123456781234567812345678"})
        self.assertEqual(seen["markup"], {" m": "<b>bold</b>"})

    def test_a_value_flasks_serializer_cannot_carry_fails_the_request_as_in_flask(self) -> None:
        plain = Flask("plain")
        plain.secret_key = "flask's own cookie session"
        for app in (self.app, plain):

            @app.post("/set-of")
            def set_of() -> Any:
                session["s"] = {1, 2}
                return "ok"

            app.testing = True  # let the error out, as Flask's test client does in tests
            with self.subTest(app=app.name), self.assertRaisesRegex(TypeError, "set is not JSON serializable"):
                app.test_client().post("/set-of")


if __name__ == "__main__":
    unittest.main()
