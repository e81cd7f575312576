"""The cookie store's test keys and settings: the keys of the shared known answers
(testdata/cookie_store_vectors.json, which the filter's codec tests read too), so a cookie the
filter sealed there opens here."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from . import support


@cache
def vectors() -> dict[str, Any]:
    path = Path(__file__).resolve().parents[3] / "testdata" / "cookie_store_vectors.json"
    loaded: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return loaded


def keys(*kids: str) -> list[dict[str, str]]:
    """The vectors' keys as ``cookie_store.keys`` lists them (all, newest first, by default),
    from testdata/test_keys.json (``cookie_store_<kid>``), where every test key lives."""
    return [{"id": kid, "secret": support.secret(f"cookie_store_{kid}")} for kid in kids or ("c1", "c0")]


def edge_session(**changes: Any) -> dict[str, Any]:
    """``EDGE_SESSION`` for the Django cookie engine."""
    return {"COOKIE_STORE_KEYS": keys(), "COOKIE": support.cookie_config(), **changes}


def django_settings(**changes: Any) -> dict[str, Any]:
    """The settings the Django cookie engine's tests run under."""
    return {"SESSION_ENGINE": "edge_session.django_cookie", "EDGE_SESSION": edge_session(**changes)}
