"""The absolute session lifetime: ``EDGE_SESSION["ABSOLUTE_TTL_SECONDS"]`` and
``EDGE_SESSION_ABSOLUTE_TTL_SECONDS`` are checked, and sent when a session is created."""

from __future__ import annotations

import unittest
from datetime import datetime, timedelta, timezone

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import SimpleTestCase, override_settings

from edge_session.companion import CompanionClient, CompanionRefused
from edge_session.django import SessionStore
from edge_session.token import ConfigError, Keyring

from . import support
from .test_flask import make_app


class CompanionFlagTests(unittest.TestCase):
    def test_the_companion_flag_matches_the_companion(self) -> None:
        """Fails once the companion takes the field while its tests are still skipped: flip the flag."""
        companion = CompanionClient(support.companion_url(), support.companion_token())
        try:
            absolute = companion.create({"probe": True}, absolute_ttl_seconds=60)
        except CompanionRefused:
            has_absolute = False
        else:
            companion.delete(absolute.id)
            has_absolute = True
        self.assertEqual(support.COMPANION_HAS_ABSOLUTE_TTL, has_absolute, support.NEEDS_ABSOLUTE_TTL)


class AbsoluteLifetimeTests(SimpleTestCase):
    def test_a_bad_absolute_lifetime_is_refused_by_name(self) -> None:
        for value in [0, -1, True, "60", 1.5]:
            with self.subTest(value=value):
                with override_settings(EDGE_SESSION={**settings.EDGE_SESSION, "ABSOLUTE_TTL_SECONDS": value}):
                    with self.assertRaisesRegex(ImproperlyConfigured, "ABSOLUTE_TTL_SECONDS"):
                        SessionStore().exists("x")
                with self.assertRaisesRegex(ConfigError, "EDGE_SESSION_ABSOLUTE_TTL_SECONDS"):
                    make_app(EDGE_SESSION_ABSOLUTE_TTL_SECONDS=value)

    @unittest.skipUnless(support.COMPANION_HAS_ABSOLUTE_TTL, support.NEEDS_ABSOLUTE_TTL)
    def test_a_new_session_ends_at_its_absolute_lifetime_in_django_and_flask(self) -> None:
        keyring = Keyring.from_config(support.keys())
        companion = CompanionClient(support.companion_url(), support.companion_token())
        limit = datetime.now(timezone.utc) + timedelta(seconds=60 + 5)
        with override_settings(EDGE_SESSION={**settings.EDGE_SESSION, "ABSOLUTE_TTL_SECONDS": 60}):
            store = SessionStore()
            store["x"] = 1
            store.save()
            self.addCleanup(SessionStore().delete, store.session_key)
            django_session = companion.get(keyring.verify(store.session_key or "") or "")
        client = make_app(EDGE_SESSION_ABSOLUTE_TTL_SECONDS=60).test_client()
        client.post("/set", json={"x": 1})
        cookie = client.get_cookie(support.cookie_name())
        assert cookie is not None and django_session is not None
        flask_session = companion.get(keyring.verify(cookie.value) or "")
        assert flask_session is not None
        self.addCleanup(companion.delete, flask_session.id)
        for session in (django_session, flask_session):
            self.assertGreater(session.ttl_seconds, 60, "the idle lifetime is the default")
            self.assertLess(datetime.fromisoformat(session.expires_at.replace("Z", "+00:00")), limit)
