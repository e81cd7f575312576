"""Operator commands (list a user's sessions, end one, all but one, or all) in Django and Flask,
and session handles."""

from __future__ import annotations

import io
import json
import unittest
import urllib.request
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import SimpleTestCase, override_settings

from edge_session.companion import CompanionClient
from edge_session.django import SessionStore
from edge_session.handles import handle_of, is_handle
from edge_session.operations import printable
from edge_session.token import Keyring

from . import support
from .test_flask import make_app


def raw_listing(user: str) -> Any:
    request = urllib.request.Request(f"{support.companion_url()}/v1/users/{user}/sessions")
    request.add_header("authorization", f"Bearer {support.companion_token()}")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the local test companion
        return json.loads(response.read())


class HandleTests(unittest.TestCase):
    def test_a_handle_is_22_canonical_base64url_characters_of_the_ids_hash(self) -> None:
        handle = handle_of("A" * 43)
        self.assertRegex(handle, r"^[A-Za-z0-9_-]{22}$")
        self.assertTrue(is_handle(handle))
        self.assertNotEqual(handle_of("B" * 43), handle)
        self.assertNotIn(handle, "A" * 43)

    def test_anything_else_is_no_handle(self) -> None:
        good = handle_of("A" * 43)
        spare = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(good[-1])
        for text in [good[:21], good + "A", good[:21] + "=", good[:21] + "+", "", good[:21] + "é"]:
            with self.subTest(text=text):
                self.assertFalse(is_handle(text))
        # The last character carries four spare bits; only the canonical one is a handle.
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        self.assertFalse(is_handle(good[:21] + alphabet[spare ^ 1]))

    def test_printable_escapes_what_would_drive_a_terminal(self) -> None:
        self.assertEqual(printable("Mozilla\x1b[31m\u202eevil\n"), "Mozilla\\x1b[31m\\u202eevil\\n")
        self.assertEqual(printable("Zoë 東京"), "Zoë 東京")


class CompanionFlagTests(unittest.TestCase):
    def test_the_companion_flag_matches_the_companion(self) -> None:
        """Fails once the companion lists handles while their tests are still skipped: flip the flag."""
        companion = CompanionClient(support.companion_url(), support.companion_token())
        created = companion.create({"probe": True}, user="flag-probe")
        self.addCleanup(companion.delete, created.id)
        listing = raw_listing("flag-probe")
        self.assertEqual(support.COMPANION_HAS_HANDLE_API, "handle" in listing[0], support.NEEDS_HANDLE_API)


class DjangoOperatorCommandTests(SimpleTestCase):
    def setUp(self) -> None:
        self.companion = CompanionClient(support.companion_url(), support.companion_token())
        self.keyring = Keyring.from_config(support.keys())
        self.user = f"operator-{id(self)}"

    def logged_in(self, n: int) -> list[str]:
        """The session ids of ``n`` sessions of the test's user."""
        ids = []
        for _ in range(n):
            store = SessionStore()
            store.update({"_auth_user_id": self.user})
            store.save()
            self.addCleanup(SessionStore().delete, store.session_key)
            ids.append(self.keyring.verify(store.session_key or "") or "")
        return ids

    def command(self, *args: str) -> str:
        out = io.StringIO()
        call_command(*args, stdout=out)
        return out.getvalue()

    def test_ending_all_of_a_users_sessions(self) -> None:
        ids = self.logged_in(2)
        self.assertEqual(
            self.command("edge_session_end", self.user, "--all"), f"ended 2 sessions of user {self.user!r}\n"
        )
        self.assertEqual([self.companion.get(i) for i in ids], [None, None])

    def test_options_are_checked_before_any_call(self) -> None:
        with override_settings(EDGE_SESSION={**settings.EDGE_SESSION, "COMPANION_URL": "http://127.0.0.1:9"}):
            for args, message in [
                (["--handle", "short"], "'short' is not a session handle"),
                (["--all-except", "x" * 23], "is not a session handle"),
                (["--handle", "\x1b[2J" + "A" * 18], r"'\\\\x1b\[2J"),
            ]:
                with self.subTest(args=args), self.assertRaisesRegex(CommandError, message):
                    self.command("edge_session_end", "u", *args)
        with self.assertRaises(CommandError):
            self.command("edge_session_end", "u")  # one of the three is required

    @unittest.skipIf(support.COMPANION_HAS_HANDLE_API, "the companion has the handle API")
    def test_without_the_handle_api_nothing_is_listed_or_kept_by_handle(self) -> None:
        ids = self.logged_in(2)
        with self.assertRaisesRegex(CommandError, "needs a companion with the handle API"):
            self.command("edge_session_list", self.user)
        with self.assertRaisesRegex(CommandError, "needs a companion with the handle API"):
            self.command("edge_session_end", self.user, "--all-except", handle_of(ids[0]))
        self.assertNotIn(None, [self.companion.get(i) for i in ids], "an old companion ignoring ?except ended nothing")

    @unittest.skipUnless(support.COMPANION_HAS_HANDLE_API, support.NEEDS_HANDLE_API)
    def test_a_listing_names_sessions_by_handle_never_by_id(self) -> None:
        ids = self.logged_in(2)
        listing = self.command("edge_session_list", self.user)
        for session_id in ids:
            self.assertIn(handle_of(session_id), listing)
            self.assertNotIn(session_id, listing)
        self.assertIn(f"2 live sessions of user {self.user!r}", listing)

    @unittest.skipUnless(support.COMPANION_HAS_HANDLE_API, support.NEEDS_HANDLE_API)
    def test_a_hostile_user_agent_is_printed_escaped(self) -> None:
        body = {"data": {}, "user": self.user, "user_agent": "evil\x1b[2J\u202e", "client_address": "192.0.2.7"}
        _, created = self.companion._call("POST", "/v1/sessions", body)
        self.addCleanup(self.companion.delete, created["id"])
        listing = self.command("edge_session_list", self.user)
        self.assertIn("evil\\x1b[2J\\u202e", listing)
        self.assertNotIn("\x1b", listing)

    @unittest.skipUnless(support.COMPANION_HAS_HANDLE_API, support.NEEDS_HANDLE_API)
    def test_ending_one_or_all_but_one_session_by_handle(self) -> None:
        ids = self.logged_in(3)
        one = handle_of(ids[0])
        self.assertEqual(
            self.command("edge_session_end", self.user, "--handle", one), f"ended session {one} of user {self.user!r}\n"
        )
        self.assertIsNone(self.companion.get(ids[0]))
        with self.assertRaisesRegex(CommandError, "has no session"):
            self.command("edge_session_end", self.user, "--handle", one)
        with self.assertRaisesRegex(CommandError, "has no session"):
            self.command("edge_session_end", "someone-else", "--handle", handle_of(ids[1]))
        kept = handle_of(ids[2])
        self.assertIn("ended 1 session of", self.command("edge_session_end", self.user, "--all-except", kept))
        self.assertEqual([self.companion.get(i) is None for i in ids], [True, True, False])


class FlaskOperatorCommandTests(unittest.TestCase):
    def setUp(self) -> None:
        self.app = make_app()
        self.runner = self.app.test_cli_runner()
        self.companion = CompanionClient(support.companion_url(), support.companion_token())
        self.user = f"flask-operator-{id(self)}"

    def test_ending_all_and_checking_options(self) -> None:
        ids = [self.companion.create({"_user_id": self.user}, user=self.user).id for _ in range(2)]
        done = self.runner.invoke(args=["edge-session", "end", self.user, "--all"])
        self.assertEqual((done.exit_code, done.output), (0, f"ended 2 sessions of user {self.user!r}\n"))
        self.assertEqual([self.companion.get(i) for i in ids], [None, None])
        done = self.runner.invoke(args=["edge-session", "end", self.user, "--handle", "nope"])
        self.assertEqual(done.exit_code, 1)
        self.assertIn("'nope' is not a session handle", done.output)
        done = self.runner.invoke(args=["edge-session", "end", self.user, "--all", "--handle", handle_of(ids[0])])
        self.assertIn("give exactly one of", done.output)

    @unittest.skipUnless(support.COMPANION_HAS_HANDLE_API, support.NEEDS_HANDLE_API)
    def test_listing_and_ending_by_handle(self) -> None:
        ids = [self.companion.create({}, user=self.user).id for _ in range(2)]
        for session_id in ids:
            self.addCleanup(self.companion.delete, session_id)
        done = self.runner.invoke(args=["edge-session", "list", self.user])
        self.assertIn(handle_of(ids[0]), done.output)
        self.assertNotIn(ids[0], done.output)
        done = self.runner.invoke(args=["edge-session", "end", self.user, "--all-except", handle_of(ids[1])])
        self.assertEqual(done.output, f"ended 1 session of user {self.user!r}, kept {handle_of(ids[1])}\n")
