"""Django's own ``SessionTestsMixin`` (tests/sessions_tests/tests.py of the pinned Django source
distribution, unmodified) run against ``edge_session.django.SessionStore`` on a real companion."""

from __future__ import annotations

from . import django_setup  # noqa: F401, I001 - configures Django before the imports below

from django.test import SimpleTestCase  # noqa: E402
from sessions_tests.tests import SessionTestsMixin  # noqa: E402

from edge_session.django import SessionStore  # noqa: E402


class EdgeSessionTests(SessionTestsMixin, SimpleTestCase):
    backend = SessionStore
