"""One cookie store session shared by Django, Flask and an app behind the filter: edge-dev in the
``"store": "cookie"`` mode (the project's envoy.yaml with ``EDGE_SESSION_COOKIE_PLUGIN_OVERRIDE``
merged over its plugin configuration, no companion) in front of the legacy app, which echoes the
headers it receives. Both engines hold the filter's ``cookie_store.keys``; nothing is stored
anywhere but in the cookie, so every write is seen by the next request that carries it."""

from __future__ import annotations

import json
import time
import unittest
import urllib.request
from dataclasses import dataclass, replace
from email.message import Message
from functools import cache
from pathlib import Path
from typing import Any

from django.test import SimpleTestCase, override_settings
from flask import Flask

from edge_session.cookie_sessions import now
from edge_session.cookie_store import (
    MAX_COOKIE_PAIR_BYTES,
    CookieKeyring,
    SessionTooLarge,
    pair_bytes,
)
from edge_session.django_cookie import SessionStore

from . import support
from .test_flask_cookie import make_app

NAME = support.cookie_name()


@cache
def proxy_override() -> dict[str, Any]:
    """What ``cargo xtask python`` merged over the cookie store proxy's plugin configuration."""
    loaded: dict[str, Any] = json.loads(support.required("EDGE_SESSION_COOKIE_PLUGIN_OVERRIDE"))
    return loaded


def proxy_keys() -> list[dict[str, str]]:
    """The cookie store proxy's ``cookie_store.keys``: the key ring both engines are given."""
    return list(proxy_override()["cookie_store"]["keys"])


def keyring() -> CookieKeyring:
    return CookieKeyring.from_config(proxy_keys())


def django_settings() -> dict[str, Any]:
    """The Django cookie engine as an app behind this proxy configures it: the proxy's cookie
    store keys next to its signing keys (which the engine checks are not the same secrets)."""
    return {
        "SESSION_ENGINE": "edge_session.django_cookie",
        "EDGE_SESSION": {"COOKIE_STORE_KEYS": proxy_keys(), "KEYS": support.keys(), "COOKIE": support.cookie_config()},
    }


def flask_app() -> Flask:
    return make_app(EDGE_SESSION_COOKIE_STORE_KEYS=proxy_keys(), EDGE_SESSION_KEYS=support.keys())


@dataclass(frozen=True)
class Reply:
    """What the client got from the cookie store proxy."""

    status: int
    body: Any
    set_cookies: list[str]

    @property
    def cookie(self) -> str | None:
        """The session cookie's new value, if the response set it ("" when it cleared it)."""
        found = [c for c in self.set_cookies if c.startswith(f"{NAME}=")]
        if not found:
            return None
        assert len(found) == 1, found
        return found[0].split(";")[0].split("=", 1)[1]

    @property
    def cleared(self) -> bool:
        return any(c.startswith(f"{NAME}=") and "Max-Age=0" in c for c in self.set_cookies)


def through_proxy(path: str, value: str | None = None) -> Reply:
    request = urllib.request.Request(support.required("EDGE_SESSION_COOKIE_PROXY_URL") + path)
    if value is not None:
        request.add_header("cookie", f"{NAME}={value}; other=1")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - a local test URL
        headers: Message = response.headers
        return Reply(response.status, json.loads(response.read()), headers.get_all("set-cookie") or [])


def app_saw(value: str | None) -> dict[str, Any]:
    """The request headers the legacy app received behind the filter."""
    seen: dict[str, Any] = through_proxy("/", value).body
    return seen


def log_since(offset: int) -> str:
    """The cookie store proxy's log after ``offset`` bytes (edge-dev has no stats endpoint:
    the filter's counters are not reachable from here, its warnings are)."""
    with Path(support.required("EDGE_SESSION_COOKIE_PROXY_LOG")).open("rb") as log:
        log.seek(offset)
        return log.read().decode("utf-8", "replace")


def log_size() -> int:
    return Path(support.required("EDGE_SESSION_COOKIE_PROXY_LOG")).stat().st_size


def logged_in(user: str = "alice") -> str:
    """A session the legacy app logged ``user`` into through the filter: its cookie value."""
    reply = through_proxy(f"/login?user={user}")
    assert reply.body == {"logged_in": user}, reply
    assert reply.cookie, "the filter set the session cookie"
    return reply.cookie


@override_settings(**django_settings())
class CookieSharingTests(SimpleTestCase):
    def test_a_django_sealed_cookie_is_valid_at_the_filter_with_its_id_data_and_user(self) -> None:
        store = SessionStore()
        data = {"cart": ["book", "pen"], "name": "Zoë ✓", "_auth_user_id": "7"}
        store.update(data)
        store.save()
        value = store.session_key or ""
        self.assertTrue(value.startswith(f"v1.{proxy_keys()[0]['id']}."), value[:10])
        reply = through_proxy("/", value)
        seen = reply.body
        self.assertEqual(seen["x-session-state"], "valid")
        self.assertEqual(seen["x-session-id"], store.session_id)
        self.assertEqual(json.loads(seen["x-session-data"]), data)
        self.assertEqual(seen["x-session-user"], "7", "Django's login binds the user")
        self.assertEqual(json.loads(seen["x-cart"]), ["book", "pen"], "mapped headers work too")
        self.assertEqual(seen["x-session-browser"], "0")
        self.assertIn(f"{NAME}={value}", seen.get("cookie", ""), "forward_cookie: an app behind it reads it too")
        self.assertIsNone(reply.cookie, "a fresh session is read, not re-sealed")

    def test_a_flask_sealed_cookie_is_valid_at_the_filter(self) -> None:
        client = flask_app().test_client()
        client.post("/login/carol")
        client.post("/set", json={"cart": ["cup"], "city": "東京"})
        cookie = client.get_cookie(NAME)
        assert cookie is not None
        opened = client.get("/").json
        assert opened is not None
        seen = app_saw(cookie.value)
        self.assertEqual(seen["x-session-state"], "valid")
        self.assertEqual(seen["x-session-id"], opened["id"])
        self.assertEqual(seen["x-session-user"], "carol")
        self.assertEqual(
            json.loads(seen["x-session-data"]),
            {"_permanent": True, "_user_id": "carol", "cart": ["cup"], "city": "東京"},
            "Flask keeps session.permanent in the data, as its own cookie does",
        )

    def test_a_login_through_the_filter_opens_in_django_and_flask_with_its_user(self) -> None:
        value = logged_in("alice")
        payload = keyring().open(value, now())
        self.assertEqual((payload.user, payload.data), ("alice", {"user": "alice"}), "the filter sealed it")
        self.assertEqual(len(payload.id), 43)

        store = SessionStore(value)
        self.assertEqual(store.load(), {"user": "alice"})
        self.assertEqual(store.session_id, payload.id)
        self.assertEqual(store.session_key, value, "the filter's cookie is Django's session key")
        flask_client = flask_app().test_client()
        flask_client.set_cookie(NAME, value)
        self.assertEqual(flask_client.get("/").json, {"data": {"user": "alice"}, "id": payload.id})
        seen = app_saw(value)
        self.assertEqual((seen["x-session-state"], seen["x-session-id"]), ("valid", payload.id))
        self.assertEqual(seen["x-session-user"], "alice")

    def test_each_write_is_seen_by_the_others_at_once(self) -> None:
        value = logged_in("alice")
        session_id = keyring().open(value, now()).id

        # The legacy app writes through the filter: Django and Flask read the new cookie.
        reply = through_proxy("/set?key=color&value=blue", value)
        self.assertEqual(reply.body, {"set": {"color": "blue"}})
        assert reply.cookie, "a write re-seals the cookie"
        after_filter = reply.cookie
        store = SessionStore(after_filter)
        self.assertEqual(store.load(), {"user": "alice", "color": "blue"})
        self.assertEqual(store.session_id, session_id, "the same session")
        flask_client = flask_app().test_client()
        flask_client.set_cookie(NAME, after_filter)
        self.assertEqual(flask_client.get("/").json, {"data": {"user": "alice", "color": "blue"}, "id": session_id})

        # Flask writes: the next request through the filter carries it, with no cache to wait for.
        flask_client.post("/set", json={"size": "L"})
        after_flask = flask_client.get_cookie(NAME)
        assert after_flask is not None and after_flask.value != after_filter
        seen = app_saw(after_flask.value)
        self.assertEqual(seen["x-session-state"], "valid")
        self.assertEqual(seen["x-session-id"], session_id)
        self.assertEqual(json.loads(seen["x-session-data"]), {"user": "alice", "color": "blue", "size": "L"})

        # Django writes: the same.
        store = SessionStore(after_flask.value)
        store["cart"] = ["lamp"]
        store.save()
        seen = app_saw(store.session_key)
        self.assertEqual(seen["x-session-id"], session_id)
        self.assertEqual(
            json.loads(seen["x-session-data"]), {"user": "alice", "color": "blue", "size": "L", "cart": ["lamp"]}
        )
        self.assertEqual(json.loads(seen["x-cart"]), ["lamp"])

    def test_a_write_in_django_or_flask_keeps_the_user_the_filter_bound(self) -> None:
        # The legacy app logged alice in through the filter (x-session-user; no framework key in
        # the data): a Django or Flask write keeps her bound, as the companion engines do, since
        # the framework's own user key did not change.
        value = logged_in("alice")
        store = SessionStore(value)
        store["color"] = "red"
        store.save()
        flask_client = flask_app().test_client()
        flask_client.set_cookie(NAME, value)
        flask_client.post("/set", json={"color": "green"})
        after_flask = flask_client.get_cookie(NAME)
        assert after_flask is not None
        users = {
            "django": app_saw(store.session_key).get("x-session-user"),
            "flask": app_saw(after_flask.value).get("x-session-user"),
        }
        self.assertEqual(users, {"django": "alice", "flask": "alice"})

    def test_a_logout_through_the_filter_refuses_every_copy_of_the_cookie(self) -> None:
        first = logged_in("alice")
        later = through_proxy("/set?key=color&value=blue", first).cookie
        assert later
        reply = through_proxy("/logout", later)
        self.assertEqual(reply.body, {"logged_out": True})
        self.assertTrue(reply.cleared, reply.set_cookies)

        for name, copy in (("the last cookie", later), ("an older value of the same session", first)):
            with self.subTest(name):
                replay = through_proxy("/", copy)
                self.assertEqual(replay.body["x-session-state"], "expired")
                self.assertNotIn("x-session-id", replay.body)
                self.assertNotIn("x-session-data", replay.body)
                self.assertTrue(replay.cleared, "the replayed cookie is cleared")
                # A write on the replayed cookie starts a new session, holding nothing of the old.
                fresh = through_proxy("/set?key=k&value=v", copy).cookie
                assert fresh
                reopened = keyring().open(fresh, now())
                self.assertEqual((reopened.data, reopened.user), ({"k": "v"}, None))
                self.assertNotEqual(reopened.id, keyring().open(copy, now()).id)

        # What remains (docs/architecture.md, "Cookie store revocation"): the revocation is the
        # proxy's; an app reached without it opens the copy until its expires_at.
        self.assertEqual(SessionStore(later).load(), {"user": "alice", "color": "blue"})
        # A new login after the logout is a new session, valid at once.
        again = logged_in("alice")
        self.assertNotEqual(keyring().open(again, now()).id, keyring().open(later, now()).id)
        self.assertEqual(app_saw(again)["x-session-state"], "valid")

    def test_the_pair_limit_holds_at_4096_bytes_through_the_filter_and_in_django(self) -> None:
        value = logged_in("alice")
        opened = keyring().open(value, now())

        def pair_with(blob: int) -> int:
            # The size depends on lengths only, and every time in it has ten digits.
            payload = replace(opened, data={"user": "alice", "blob": "x" * blob})
            try:
                return pair_bytes(NAME, keyring().seal(NAME, payload))
            except SessionTooLarge as refused:
                return refused.size

        blob = next(n for n in range(2000, 3500) if pair_with(n) == MAX_COOKIE_PAIR_BYTES)
        self.assertEqual(pair_with(blob + 1), MAX_COOKIE_PAIR_BYTES + 1)

        # The filter seals a cookie of exactly 4096 bytes, and Django and Flask open it.
        at_limit = through_proxy(f"/set?key=blob&value={'x' * blob}", value).cookie
        assert at_limit, "a write at the limit is sealed"
        self.assertEqual(len(f"{NAME}={at_limit}"), MAX_COOKIE_PAIR_BYTES)
        self.assertEqual(SessionStore(at_limit).load(), {"user": "alice", "blob": "x" * blob})
        seen = app_saw(at_limit)
        self.assertEqual((seen["x-session-state"], len(json.loads(seen["x-session-data"])["blob"])), ("valid", blob))

        # One byte more: refused by name, the response goes out, the cookie stays as it was.
        offset = log_size()
        past = through_proxy(f"/set?key=blob&value={'x' * (blob + 1)}", at_limit)
        self.assertEqual((past.status, past.body), (200, {"set": {"blob": "x" * (blob + 1)}}))
        self.assertEqual(past.set_cookies, [], "nothing is written")
        self.assertEqual(len(json.loads(app_saw(at_limit)["x-session-data"])["blob"]), blob)
        warning = "the session cookie would take 4097 bytes, over 4096"
        log = wait_for_line(offset, warning)
        self.assertIn(warning, log, "the refusal is logged, with edge_session_cookie_too_large counted")
        self.assertNotIn("x" * 64, log, "never the data")

        # Django, on the same session: a save whose cookie would pass 4096 bytes is refused
        # before anything is sealed, and one of exactly 4096 bytes is a cookie the filter takes.
        def django_save(size: int) -> tuple[int, SessionStore]:
            store = SessionStore(at_limit)
            store["blob"] = "y" * size
            try:
                store.save()
            except SessionTooLarge as refused:
                return refused.size, store
            return pair_bytes(NAME, store.session_key or ""), store

        django_blob = next(n for n in range(blob - 64, blob + 64) if django_save(n)[0] == MAX_COOKIE_PAIR_BYTES)
        size, store = django_save(django_blob + 1)
        self.assertEqual(size, MAX_COOKIE_PAIR_BYTES + 1)
        self.assertEqual(store.session_key, at_limit, "the previous cookie stays")
        size, store = django_save(django_blob)
        self.assertEqual(len(f"{NAME}={store.session_key}"), MAX_COOKIE_PAIR_BYTES)
        seen = app_saw(store.session_key)
        self.assertEqual((seen["x-session-state"], seen["x-session-id"]), ("valid", opened.id))
        self.assertEqual(json.loads(seen["x-session-data"])["blob"], "y" * django_blob)

    def test_a_tampered_or_foreign_cookie_is_invalid_at_the_filter_and_in_both_engines(self) -> None:
        value = logged_in("alice")
        body = value.rsplit(".", 1)[1]
        flipped = value[: -len(body)] + ("A" if body[0] != "A" else "B") + body[1:]
        # Sealed by the signing key's secret under the proxy's key id: the key separation means
        # no other key of the configuration opens a cookie store value.
        signing = CookieKeyring.from_config([{"id": proxy_keys()[0]["id"], "secret": support.keys()[0]["secret"]}])
        foreign = signing.seal(NAME, keyring().open(value, now()))
        for name, bad in (("a changed character", flipped), ("the signing key's seal", foreign)):
            with self.subTest(name):
                reply = through_proxy("/", bad)
                self.assertEqual(reply.body["x-session-state"], "invalid")
                self.assertTrue(reply.cleared)
                self.assertEqual(SessionStore(bad).load(), {})
                flask_client = flask_app().test_client()
                flask_client.set_cookie(NAME, bad)
                self.assertEqual(flask_client.get("/").json, {"data": {}, "id": None})

    def test_a_payload_past_its_expiry_is_expired_whatever_the_client_kept(self) -> None:
        value = logged_in("alice")
        opened = keyring().open(value, now())
        ended = keyring().seal(NAME, replace(opened, expires_at=now() - 1))
        self.assertEqual(app_saw(ended)["x-session-state"], "expired")
        self.assertEqual(SessionStore(ended).load(), {})


def wait_for_line(offset: int, line: str, within: float = 5.0) -> str:
    """The log after ``offset`` once it holds ``line`` (edge-dev writes it as the response
    goes out, so it may trail the reply a little), or whatever it holds by then."""
    deadline = time.monotonic() + within
    while True:
        log = log_since(offset)
        if line in log or time.monotonic() > deadline:
            return log
        time.sleep(0.05)


if __name__ == "__main__":
    unittest.main()
