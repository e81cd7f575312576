"""The filter's signed session assertion: the verifier, and the Django engine and Flask interface
trusting the edge (docs/architecture.md, "Injected headers"; docs/security.md, "Session
assertion"). The harness tests (filter/tests/harness/assertion.rs) run this verifier on
assertions the real filter.wasm signed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import unittest
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.http import HttpResponse
from django.test import RequestFactory, SimpleTestCase, override_settings

from edge_session.assertion import AssertionVerifier, WriteLog, instant
from edge_session.companion import CompanionClient, CompanionUnavailable, Session
from edge_session.django import SessionMiddleware, SessionStore
from edge_session.token import ConfigError, Keyring

from . import support
from .test_django_store import closed_port_url
from .test_flask import make_app

# Assertion keys, never cookie keys.
NEW = support.secret("assertion")
OLD = support.secret("assertion_old")
KEYS = [{"id": "a2", "secret": NEW}, {"id": "a1", "secret": OLD}]
SID = base64.urlsafe_b64encode(bytes(range(32))).rstrip(b"=").decode()
NOW = 1_767_225_600


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def sign(claims: dict[str, Any], *, secret: str = NEW, kid: str = "a2", alg: str = "HS256") -> str:
    """An assertion as the filter signs it."""
    header = _b64(json.dumps({"alg": alg, "typ": "JWT", "kid": kid}).encode())
    payload = _b64(json.dumps(claims).encode())
    tag = hmac.new(base64.b64decode(secret), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(tag)}"


def claims(sid: str = SID, *, aud: str = "testserver", iat: int = NOW, **extra: Any) -> dict[str, Any]:
    return {
        "iss": "edge-session",
        "state": "valid",
        "sid": sid,
        "user": "u-42",
        "data": {"cart": [1, 2]},
        "expires": "2026-01-15T00:00:00Z",
        "browser": False,
        "ttl_seconds": 1209600,
        "updated_at": "2026-01-01T00:00:00.125Z",
        "iat": iat,
        "exp": iat + 30,
        "aud": aud,
        **extra,
    }


class VerifierTests(unittest.TestCase):
    def setUp(self) -> None:
        self.verifier = AssertionVerifier.from_config(KEYS)

    def verify(self, token: str | None, audience: str = "testserver", now: float = NOW + 1) -> Any:
        return self.verifier.verify(token, audience=audience, now=now)

    def test_a_signed_assertion_verifies_and_carries_the_session(self) -> None:
        asserted = self.verify(sign(claims()))
        self.assertIsNotNone(asserted)
        self.assertEqual(
            asserted.session(),
            Session(SID, {"cart": [1, 2]}, "u-42", 1209600, False, "2026-01-15T00:00:00Z", "2026-01-01T00:00:00.125Z"),
        )
        self.assertEqual(asserted.key_id, "a2")

    def test_every_listed_key_verifies_by_kid_and_only_those(self) -> None:
        self.assertIsNotNone(self.verify(sign(claims(), secret=OLD, kid="a1")))
        self.assertIsNone(self.verify(sign(claims(), secret=OLD, kid="a2")), "kid names the other key")
        self.assertIsNone(self.verify(sign(claims(), kid="zz")), "unknown kid")
        only_new = AssertionVerifier.from_config(KEYS[:1])
        self.assertIsNone(only_new.verify(sign(claims(), secret=OLD, kid="a1"), audience="testserver", now=NOW))

    def test_forgeries_are_refused(self) -> None:
        good = sign(claims())
        header, payload, tag = good.split(".")
        other = _b64(json.dumps(claims(user="admin")).encode())
        unsigned = _b64(json.dumps({"alg": "none", "kid": "a2"}).encode())
        forged = [
            f"{header}.{other}.{tag}",  # claims swapped under the old signature
            f"{unsigned}.{payload}.",  # alg none
            f"{header}.{payload}.{tag[:-1]}",  # truncated signature
            f"{header}.{payload}.{tag[:-1]}{'A' if tag[-1] != 'A' else 'B'}",  # one character changed
            f"{header}.{payload}.{tag}=",  # padded: not canonical
            f"{header}.{payload}",
            f"{header}.{payload}.{tag}.x",
            "",
            "a" * 70000,
            sign(claims(), secret="wMHCw8TFxsfIycrLzM3Oz9DR0tPU1dbX2Nna29zd3t8="),  # another key
            sign(claims(), alg="HS512"),
            sign(claims(), alg="RS256"),
            sign(claims(state="none")),
            sign(claims(iss="someone-else")),
            sign(claims(sid="not-a-session-id")),
            sign(claims(user=7)),
            sign(claims(data=[1])),
            sign(claims(browser=1)),
            sign(claims(exp=True)),
            sign(claims(updated_at="yesterday")),
            sign({k: v for k, v in claims().items() if k != "aud"}),
            _b64(b"[]") + "." + _b64(b"{}") + "." + tag,
        ]
        for token in forged:
            with self.subTest(token=token[:60]):
                self.assertIsNone(self.verify(token))
        self.assertIsNone(self.verify(None))

    def test_expiry_and_issue_time_hold_at_the_boundary(self) -> None:
        token = sign(claims())
        self.assertIsNotNone(self.verify(token, now=NOW + 30 + 5 - 0.001), "within exp plus the leeway")
        self.assertIsNone(self.verify(token, now=NOW + 30 + 5), "expired")
        self.assertIsNotNone(self.verify(token, now=NOW - 5), "issued up to the leeway ahead of our clock")
        self.assertIsNone(self.verify(token, now=NOW - 5.001), "issued in the future")

    def test_replay_to_another_authority_is_refused(self) -> None:
        token = sign(claims(aud="app.example"))
        self.assertIsNotNone(self.verify(token, audience="app.example"))
        for audience in ["evil.example", "app.example:443", "APP.EXAMPLE", ""]:
            with self.subTest(audience=audience):
                self.assertIsNone(self.verify(token, audience=audience))

    def test_keys_follow_the_secret_rules(self) -> None:
        with self.assertRaises(ConfigError):
            AssertionVerifier.from_config([{"id": "a", "secret": "REPLACE-ME"}])
        with self.assertRaises(ConfigError):
            AssertionVerifier.from_config([])
        self.assertNotIn(NEW, repr(AssertionVerifier.from_config(KEYS)))

    def test_the_write_log_refuses_assertions_older_than_our_write_and_of_deleted_sessions(self) -> None:
        log = WriteLog(max_sessions=2)
        asserted = self.verify(sign(claims()))
        self.assertTrue(log.allows(asserted), "nothing written: taken")
        log.record(Session(SID, {}, None, 60, False, "x", "2026-01-01T00:00:00.125Z"))
        self.assertTrue(log.allows(asserted), "as new as our write")
        log.record(Session(SID, {}, None, 60, False, "x", "2026-01-01T00:00:00.125000001Z"))
        self.assertFalse(log.allows(asserted), "one nanosecond older than our write")
        log.record_deletion(SID)
        self.assertFalse(log.allows(self.verify(sign(claims(updated_at="2030-01-01T00:00:00Z")))), "deleted")
        other = base64.urlsafe_b64encode(bytes(range(1, 33))).rstrip(b"=").decode()
        for n in range(2):
            log.record(Session(other[:-1] + "ABCDEFGH"[n], {}, None, 60, False, "x", "2026-01-01T00:00:01Z"))
        self.assertTrue(log.allows(asserted), "pushed out of the bounded log")

    def test_instants_keep_nanoseconds_and_offsets(self) -> None:
        self.assertEqual(instant("1970-01-01T00:00:01.5Z"), 1_500_000_000)
        self.assertEqual(instant("1970-01-01T01:00:00+01:00"), 0)
        self.assertIsNone(instant("1970-01-01 00:00:00"))


@contextmanager
def companion_down(conf: dict[str, Any]) -> Iterator[None]:
    with override_settings(EDGE_SESSION={**conf, "COMPANION_URL": closed_port_url()}):
        yield


class DjangoTrustTheEdgeTests(SimpleTestCase):
    def setUp(self) -> None:
        self.conf = {**settings.EDGE_SESSION, "ASSERTION_KEYS": KEYS}
        self.companion = CompanionClient(support.companion_url(), support.companion_token())
        self.keyring = Keyring.from_config(support.keys())
        with override_settings(EDGE_SESSION=self.conf):
            store = SessionStore()
            store.update({"cart": [1]})
            store.save()
        self.key = store.session_key or ""
        self.addCleanup(self.companion.delete, self.keyring.verify(self.key) or "")
        session_id = self.keyring.verify(self.key)
        assert session_id is not None
        stored = self.companion.get(session_id)
        assert stored is not None and stored.updated_at is not None
        self.session_id, self.updated_at = session_id, stored.updated_at

    def assertion(self, **extra: Any) -> str:
        signed = claims(self.session_id, iat=int(time.time()))
        signed.update({"updated_at": self.updated_at, "data": {"cart": [1, 2]}, **extra})
        return sign(signed)

    def open(self, assertion: str | None) -> SessionStore:
        # The Host the filter signed as `aud` (RequestFactory sends none of its own).
        meta = {"HTTP_COOKIE": f"{settings.SESSION_COOKIE_NAME}={self.key}", "HTTP_HOST": "testserver"}
        if assertion is not None:
            meta["HTTP_X_SESSION_ASSERTION"] = assertion
        request = RequestFactory().get("/", **meta)  # type: ignore[arg-type]
        SessionMiddleware(lambda r: HttpResponse()).process_request(request)
        store = request.session
        assert isinstance(store, SessionStore)
        return store

    def test_a_verified_assertion_loads_the_session_without_the_companion(self) -> None:
        with companion_down(self.conf):
            store = self.open(self.assertion())
            self.assertEqual(dict(store.items()), {"cart": [1, 2]})
            self.assertTrue(store.loaded_from_assertion)
            self.assertEqual(store.bound_user, "u-42")

    def test_an_absent_forged_or_foreign_assertion_falls_back_to_the_companion(self) -> None:
        other = base64.urlsafe_b64encode(bytes(range(5, 37))).rstrip(b"=").decode()
        for assertion in [
            None,
            self.assertion()[:-2] + "AA",
            sign(claims(self.session_id, iat=int(time.time()), updated_at=self.updated_at), secret=OLD, kid="a2"),
            self.assertion(sid=other),
            self.assertion(aud="elsewhere.example"),
            sign(claims(self.session_id, iat=int(time.time()) - 3600, updated_at=self.updated_at)),
        ]:
            with self.subTest(assertion=assertion and assertion[-10:]), override_settings(EDGE_SESSION=self.conf):
                store = self.open(assertion)
                self.assertEqual(dict(store.items()), {"cart": [1]}, "read from the companion")
                self.assertFalse(store.loaded_from_assertion)
            with self.subTest(down=True), companion_down(self.conf), self.assertRaises(CompanionUnavailable):
                self.open(assertion).items()

    def test_without_assertion_keys_an_assertion_is_ignored(self) -> None:
        store = self.open(self.assertion())
        self.assertEqual(dict(store.items()), {"cart": [1]})

    def test_an_assertion_older_than_our_last_write_or_of_a_deleted_session_is_not_taken(self) -> None:
        with override_settings(EDGE_SESSION=self.conf):
            store = self.open(self.assertion())
            store["cart"] = [1, 2, 3]
            store.save()
            again = self.open(self.assertion())
            self.assertEqual(dict(again.items()), {"cart": [1, 2, 3]}, "our write, not the stale assertion")
            self.assertFalse(again.loaded_from_assertion)
            again.delete()
            gone = self.open(self.assertion(updated_at="2100-01-01T00:00:00Z"))
            self.assertEqual(dict(gone.items()), {}, "a logout is not undone by a cached assertion")


class FlaskTrustTheEdgeTests(unittest.TestCase):
    def setUp(self) -> None:
        self.app = make_app(EDGE_SESSION_ASSERTION_KEYS=KEYS)
        self.client = self.app.test_client()
        self.client.post("/set", json={"cart": [1]})
        cookie = self.client.get_cookie(support.cookie_name())
        assert cookie is not None
        self.keyring = Keyring.from_config(support.keys())
        session_id = self.keyring.verify(cookie.value)
        assert session_id is not None
        self.session_id = session_id
        stored = CompanionClient(support.companion_url(), support.companion_token()).get(session_id)
        assert stored is not None and stored.updated_at is not None
        self.updated_at = stored.updated_at

    def assertion(self, **extra: Any) -> str:
        signed = claims(self.session_id, iat=int(time.time()))
        signed.update({"updated_at": self.updated_at, "data": {"cart": [1, 2]}, "aud": "localhost", **extra})
        return sign(signed)

    def show(self, assertion: str | None) -> Any:
        headers = {} if assertion is None else {"X-Session-Assertion": assertion}
        return self.client.get("/", headers=headers).get_json()

    def test_a_verified_assertion_opens_the_session_without_the_companion(self) -> None:
        interface = self.app.session_interface
        companion = interface.companion  # type: ignore[attr-defined]
        interface.companion = CompanionClient(closed_port_url(), support.companion_token())  # type: ignore[attr-defined]
        try:
            self.assertEqual(self.show(self.assertion()), {"cart": [1, 2]}, "no companion read")
            self.assertEqual(self.client.get("/").status_code, 500, "without it the companion is read")
        finally:
            interface.companion = companion  # type: ignore[attr-defined]

    def test_an_absent_forged_or_replayed_assertion_falls_back_to_the_companion(self) -> None:
        for assertion in [None, self.assertion()[:-2] + "AA", self.assertion(aud="evil.example")]:
            with self.subTest(assertion=assertion and assertion[-10:]):
                self.assertEqual(self.show(assertion), {"cart": [1]})

    def test_an_assertion_older_than_our_last_write_or_of_a_deleted_session_is_not_taken(self) -> None:
        stale = self.assertion()
        self.client.post("/set", json={"cart": [1, 2, 3]}, headers={"X-Session-Assertion": stale})
        self.assertEqual(self.show(stale), {"cart": [1, 2, 3]}, "our write, not the stale assertion")
        self.client.post("/logout")
        self.client.set_cookie(support.cookie_name(), self.keyring.sign(self.session_id))
        self.assertEqual(self.show(self.assertion(updated_at="2100-01-01T00:00:00Z")), {})
