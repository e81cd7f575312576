"""Django's own ``SessionTestsMixin`` (tests/sessions_tests/tests.py of the pinned Django source
distribution, unmodified) run against ``edge_session.django.SessionStore`` on a real companion."""

from __future__ import annotations

from django.test import SimpleTestCase
from sessions_tests.tests import SessionTestsMixin

from edge_session.django import SessionStore


class EdgeSessionTests(SessionTestsMixin, SimpleTestCase):
    backend = SessionStore
