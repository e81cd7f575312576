"""Django configured for the engine under test; imported first by every Django test module."""

from __future__ import annotations

import sys

import django
from django.conf import settings

from . import support

if not settings.configured:
    # Django's own session tests are a package in its source distribution's tests/ directory.
    sys.path.insert(0, support.required("DJANGO_TESTS_DIR"))
    settings.configure(
        SECRET_KEY="edge-session-tests-only",
        # edge_session: its management commands; the database: the legacy db engine's table.
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.sessions", "sessions_tests", "edge_session"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        USE_TZ=True,
        SESSION_ENGINE="edge_session.django",
        SESSION_COOKIE_NAME=support.cookie_name(),
        SESSION_COOKIE_SECURE=support.cookie_secure(),
        EDGE_SESSION={
            "COMPANION_URL": support.companion_url(),
            "COMPANION_TOKEN": support.companion_token(),
            "KEYS": support.keys(),
            "TIMEOUT": 10.0,
            "COOKIE": support.cookie_config(),
        },
    )
    django.setup()
