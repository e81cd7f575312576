"""One session shared by Django, Flask and an app behind the filter: edge-dev running the release
filter.wasm with the project's envoy.yaml, in front of the legacy app (which echoes the headers
it receives), all on the same companion."""

from __future__ import annotations

import json
import time
import unittest
import urllib.request
from collections.abc import Callable
from typing import Any

from edge_session.django import SessionStore
from edge_session.token import Keyring

from . import support
from .test_flask import make_app


def through_proxy(path: str, token: str | None = None) -> tuple[dict[str, Any], str | None]:
    """The legacy app's reply to ``path`` through edge-dev, and the Set-Cookie the client got."""
    request = urllib.request.Request(support.required("EDGE_SESSION_PROXY_URL") + path)
    if token:
        request.add_header("cookie", f"{support.cookie_name()}={token}; other=1")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - a local test URL
        return json.loads(response.read()), response.headers.get("set-cookie")


def app_saw(token: str | None) -> dict[str, Any]:
    """The request headers the legacy app received behind the filter."""
    return through_proxy("/", token)[0]


def eventually(check: Callable[[], Any], expected: Any, within: float) -> Any:
    """The filter caches a session for ``cache.ttl_ms`` (2 s by default); writes made around
    the proxy (by Django or Flask) show within that time."""
    deadline = time.monotonic() + within
    while True:
        got = check()
        if got == expected or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def cache_window() -> float:
    return float(support.plugin_config().get("cache", {}).get("ttl_ms", 2000)) / 1000 + 1.0


class SharingTests(unittest.TestCase):
    def setUp(self) -> None:
        self.keyring = Keyring.from_config(support.keys())

    def test_a_django_session_is_valid_with_the_same_data_at_the_filter(self) -> None:
        store = SessionStore()
        data = {"cart": ["book", "pen"], "name": "Zoë ✓", "_auth_user_id": "7"}
        store.update(data)
        store.save()
        self.addCleanup(SessionStore().delete, store.session_key)
        seen = app_saw(store.session_key)
        self.assertEqual(seen["x-session-state"], "valid")
        self.assertEqual(seen["x-session-id"], self.keyring.verify(store.session_key or ""))
        self.assertEqual(json.loads(seen["x-session-data"]), data)
        self.assertEqual(seen["x-session-user"], "7", "Django's login binds the user")
        self.assertEqual(json.loads(seen["x-cart"]), ["book", "pen"], "mapped headers work too")
        self.assertNotIn(support.cookie_name() + "=", seen.get("cookie", ""), "the token is not forwarded")

    def test_a_flask_session_is_valid_with_the_same_data_at_the_filter(self) -> None:
        client = make_app().test_client()
        client.post("/set", json={"cart": ["cup"], "city": "東京"})
        cookie = client.get_cookie(support.cookie_name())
        assert cookie is not None
        seen = app_saw(cookie.value)
        self.assertEqual(seen["x-session-state"], "valid")
        self.assertEqual(json.loads(seen["x-session-data"]), {"cart": ["cup"], "city": "東京"})

    def test_a_login_through_the_filter_is_seen_by_django_and_flask_and_back(self) -> None:
        reply, set_cookie = through_proxy("/login?user=alice")
        self.assertEqual(reply, {"logged_in": "alice"})
        assert set_cookie is not None, "the filter set the session cookie"
        token = set_cookie.split(";")[0].split("=", 1)[1]

        store = SessionStore(token)
        self.assertEqual(store.load(), {"user": "alice"})
        self.assertEqual(store.bound_user, "alice")
        self.assertEqual(store.session_key, token, "the filter's token is Django's session key")
        flask_client = make_app().test_client()
        flask_client.set_cookie(support.cookie_name(), token)
        self.assertEqual(flask_client.get("/").json, {"user": "alice"})

        # Django writes; the filter shows it to the legacy app.
        store["cart"] = ["lamp"]
        store.save()
        seen = eventually(
            lambda: json.loads(app_saw(token)["x-session-data"]), {"user": "alice", "cart": ["lamp"]}, cache_window()
        )
        self.assertEqual(seen, {"user": "alice", "cart": ["lamp"]})
        # The legacy app writes through the filter; Django reads it.
        through_proxy("/set?key=color&value=blue", token)
        self.assertEqual(SessionStore(token).load(), {"user": "alice", "cart": ["lamp"], "color": "blue"})
        # Django logs out; the filter no longer finds the session.
        SessionStore(token).flush()
        state = eventually(lambda: app_saw(token)["x-session-state"], "expired", cache_window())
        self.assertEqual(state, "expired")


if __name__ == "__main__":
    unittest.main()
