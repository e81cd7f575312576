"""The app's previous Django session engine, as a source of sessions to move into edge-session
(the rules are in :mod:`edge_session.migration`)::

    EDGE_SESSION = {
        ...,
        "LEGACY": {
            "ENGINE": "django.contrib.sessions.backends.db",   # the app's SESSION_ENGINE until now
            "COOKIE_NAME": "sessionid",     # its SESSION_COOKIE_NAME until now (Django's default)
            "COOKIE_PATH": "/",             # its SESSION_COOKIE_PATH, to clear the cookie
            "COOKIE_DOMAIN": None,          # its SESSION_COOKIE_DOMAIN, to clear the cookie
        },
    }

Any Django session engine works for the lazy move, read through its own ``SessionStore`` with
the app's ``SECRET_KEY`` and ``SECRET_KEY_FALLBACKS`` and ``SESSION_SERIALIZER``, exactly as the
app read it: ``db``, ``cached_db``, ``cache``, ``file``, ``signed_cookies`` or a third-party one.
``mongo_sessions.session`` (django-mongo-sessions) is read by
:mod:`edge_session.django_mongo_sessions`, which takes its settings from ``LEGACY`` too.

The batch import needs a store that can list its sessions: the ``db`` and ``cached_db``
engines (any engine with ``get_model_class``) and django-mongo-sessions. The others (``cache``,
``file``, ``signed_cookies``) move lazily only, as their browsers come back.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib import import_module
from typing import Any

from django.contrib.sessions.backends.base import SessionBase
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponseBase
from django.utils import timezone

from .migration import MAX_LEGACY_COOKIE, BatchSource, LegacyRecord, LegacySession, moved_marker, read_legacy

__all__ = ["LegacyEngine"]

logger = logging.getLogger("edge_session.migration")

# Engines whose own module cannot run on the Django and pymongo versions edge-session supports,
# and the module that reads their sessions in its place.
_READERS = {"mongo_sessions.session": "edge_session.django_mongo_sessions"}
# RFC 6265 cookie-name characters (a token): what Django could ever have set.
_COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_SOURCE = 'EDGE_SESSION["LEGACY"]'


@dataclass(frozen=True)
class LegacyEngine:
    """The legacy engine and its cookie."""

    engine: str
    cookie_name: str = "sessionid"
    cookie_path: str = "/"
    cookie_domain: str | None = None

    @classmethod
    def from_config(cls, conf: object, session_cookie_name: str) -> LegacyEngine | None:
        """From ``EDGE_SESSION["LEGACY"]`` (None: no legacy engine). ``session_cookie_name`` is
        edge-session's cookie, which the legacy cookie must not share a name with."""
        if conf is None:
            return None
        if not isinstance(conf, Mapping):
            raise ImproperlyConfigured(f"{_SOURCE} must be a dict with the legacy ENGINE")
        engine = conf.get("ENGINE")
        if not isinstance(engine, str) or not engine:
            raise ImproperlyConfigured(f'{_SOURCE}["ENGINE"] must name the app\'s previous SESSION_ENGINE')
        name = conf.get("COOKIE_NAME", cls.cookie_name)
        if not isinstance(name, str) or not _COOKIE_NAME.fullmatch(name):
            raise ImproperlyConfigured(f'{_SOURCE}["COOKIE_NAME"] must be a cookie name')
        if name == session_cookie_name:
            # The filter answers a cookie that is not its token by clearing it, before the app
            # could read it: the legacy cookie needs a name of its own.
            raise ImproperlyConfigured(
                f'{_SOURCE}["COOKIE_NAME"] is {name!r}, the same as SESSION_COOKIE_NAME: the legacy cookie'
                " and edge-session's must have different names"
            )
        path = conf.get("COOKIE_PATH", cls.cookie_path)
        domain = conf.get("COOKIE_DOMAIN", cls.cookie_domain)
        if not isinstance(path, str) or not (domain is None or isinstance(domain, str)):
            raise ImproperlyConfigured(f'{_SOURCE}["COOKIE_PATH"] must be a string, ["COOKIE_DOMAIN"] a string or None')
        legacy = cls(_READERS.get(engine, engine), name, path, domain or None)
        legacy.store_class  # noqa: B018 - a wrong engine fails at start, not at the first request
        return legacy

    @property
    def store_class(self) -> type[SessionBase]:
        try:
            store = import_module(self.engine).SessionStore
        except (ImportError, AttributeError) as error:
            raise ImproperlyConfigured(
                f'{_SOURCE}["ENGINE"] {self.engine!r} is not a session engine: {error}'
            ) from None
        if not (isinstance(store, type) and issubclass(store, SessionBase)):
            raise ImproperlyConfigured(f'{_SOURCE}["ENGINE"] {self.engine!r} has no SessionStore')
        return store

    def read(self, key: str) -> LegacySession | None:
        """The legacy session a cookie value names, as its engine loads it (None: no session)."""
        if not key or len(key) > MAX_LEGACY_COOKIE:
            return None
        return read_legacy(self.store_class(key).load())

    def retire(self, key: str) -> None:
        """Deletes the legacy record once the browser holds its edge-session cookie. A failure is
        logged, not raised: the response already moved the browser, and the record expires."""
        try:
            self.store_class(key).delete(key)
        except Exception:  # noqa: BLE001 - whatever the legacy store raises, the move stands
            logger.warning("edge-session: could not delete a moved legacy session", exc_info=True)

    def clear_cookie(self, response: HttpResponseBase) -> None:
        response.delete_cookie(self.cookie_name, path=self.cookie_path, domain=self.cookie_domain)

    def batch_source(self) -> BatchSource:
        """The engine's live sessions for the batch import; ImproperlyConfigured for an engine
        that keeps no list of them."""
        store = self.store_class
        own: Callable[[], BatchSource] | None = getattr(store, "batch_source", None)
        if own is not None:
            return own()
        if hasattr(store, "get_model_class"):
            return _ModelSessions(store)
        raise ImproperlyConfigured(
            f"{self.engine} keeps no list of its sessions to import ahead of time: its sessions move"
            " as their browsers come back (the lazy path needs no command)"
        )


class _ModelSessions:
    """The live rows of a database-backed engine (``db``, ``cached_db``, ``AbstractBaseSession``)."""

    def __init__(self, store: type[SessionBase]) -> None:
        self._store = store
        self._model: Any = store.get_model_class()
        self.description = f"the table {self._model._meta.db_table!r} ({store.__module__})"
        self._now = timezone.now()

    def _live(self) -> Any:
        return self._model.objects.filter(expire_date__gt=self._now)

    def count(self) -> int:
        return int(self._live().count())

    def records(self) -> Iterator[LegacyRecord]:
        decoder = self._store()
        for row in self._live().order_by("session_key").iterator():
            expires: datetime = row.expire_date
            if timezone.is_naive(expires):
                expires = timezone.make_aware(expires)
            yield LegacyRecord(row.session_key, decoder.decode(row.session_data), expires, version=row.session_data)

    def mark_moved(self, record: LegacyRecord, token: str) -> bool:
        store = self._store(record.key)
        rows = self._live().filter(session_key=record.key, session_data=record.version)
        # expire_date stays: the marker lasts as long as the legacy cookie would have.
        if rows.update(session_data=store.encode(moved_marker(token))) != 1:
            return False
        # cached_db would otherwise keep serving the old data from its cache.
        cache, cache_key = getattr(store, "_cache", None), getattr(store, "cache_key", None)
        if cache is not None and cache_key is not None:
            cache.delete(cache_key)
        return True
