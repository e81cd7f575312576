"""django-mongo-sessions' documents, read and deleted for the move to edge-session.

An app that used `django-mongo-sessions`_ 0.0.4 (``SESSION_ENGINE = "mongo_sessions.session"``)
names it as its legacy engine::

    EDGE_SESSION = {
        ...,
        "LEGACY": {
            "ENGINE": "mongo_sessions.session",    # this module takes its place
            "COOKIE_NAME": "sessionid",            # the app's SESSION_COOKIE_NAME until now
            "MONGODB_URI": "mongodb://db.internal:27017",   # MONGO_HOST, MONGO_PORT, user, password
            "DATABASE": "test",                    # MONGO_DB_NAME
            "COLLECTION": "mongo_sessions",        # MONGO_SESSIONS_COLLECTION
            "TTL": 1209600,                        # MONGO_SESSIONS_TTL (the old SESSION_COOKIE_AGE)
        },
    }

The package itself cannot do this: ``mongo_sessions/session.py`` imports
``django.utils.encoding.force_text``, which Django 4.0 removed; it calls pymongo's
``Collection.update``, ``remove`` and ``ensure_index``, which pymongo 4 removed; and importing
``mongo_sessions/settings.py`` connects to MongoDB and may drop and rebuild the TTL index. This
engine reads the same documents with none of that.

A document is ``{session_key, session_data, creation_date}`` (``SessionStore.save`` in
``mongo_sessions/session.py``): ``session_data`` is Django's own encoding, signed with
``SECRET_KEY`` under the salt of a class named ``SessionStore`` (this class keeps that name so
its salt is the same), or, for sessions saved before Django 3.1 or with
``DEFAULT_HASHING_ALGORITHM = "sha1"``, the older ``base64(hash:json)`` form, which Django 4.0
stopped reading and this engine still reads. A session lives ``TTL`` seconds from
``creation_date``, which every save moved; the TTL index on ``creation_date`` removes it within
a minute after that, so reads check the age themselves as the package did.

.. _django-mongo-sessions: https://github.com/hellysmile/django-mongo-sessions
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, cast

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.core import signing
from django.core.exceptions import ImproperlyConfigured
from django.utils.crypto import constant_time_compare, salted_hmac
from pymongo.collection import Collection

from . import mongo
from .migration import LegacyRecord, moved_marker

__all__ = ["SessionStore"]

# What Django's session keys are made of (lowercase letters and digits, 32 of them; hex md5 in
# very old versions): anything else in the cookie is never looked up.
_KEY = re.compile(r"[a-z0-9]{8,64}")


def _legacy_settings() -> Mapping[str, Any]:
    conf = getattr(settings, "EDGE_SESSION", {}).get("LEGACY")
    if not isinstance(conf, Mapping):
        raise ImproperlyConfigured('EDGE_SESSION["LEGACY"] must be a dict naming the legacy ENGINE')
    return conf


def _collection() -> Collection[dict[str, Any]]:
    conf = _legacy_settings()
    timeout = conf.get("TIMEOUT", 5.0)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise ImproperlyConfigured('EDGE_SESSION["LEGACY"]["TIMEOUT"] must be a positive number of seconds')
    names = {}
    for name, default in (
        ("MONGODB_URI", "mongodb://localhost:27017"),
        ("DATABASE", "test"),
        ("COLLECTION", "mongo_sessions"),
    ):
        value = conf.get(name, default)
        if not isinstance(value, str) or not value:
            raise ImproperlyConfigured(f'EDGE_SESSION["LEGACY"]["{name}"] must be a non-empty string')
        names[name] = value
    client = mongo.client(names["MONGODB_URI"], int(timeout * 1000))
    return client[names["DATABASE"]][names["COLLECTION"]]


def _ttl() -> timedelta:
    ttl = _legacy_settings().get("TTL", settings.SESSION_COOKIE_AGE)
    if type(ttl) is not int or ttl <= 0:
        raise ImproperlyConfigured('EDGE_SESSION["LEGACY"]["TTL"] must be a positive number of seconds')
    return timedelta(seconds=ttl)


def _live_since() -> datetime:
    """Documents created (last saved) after this are live."""
    return datetime.now(timezone.utc) - _ttl()


class SessionStore(SessionBase):
    """Reads and deletes django-mongo-sessions' documents; it never writes a session."""

    def _validate_session_key(self, key: str | None) -> bool:
        return bool(key) and isinstance(key, str) and _KEY.fullmatch(key) is not None

    def load(self) -> dict[str, Any]:
        key = self.session_key
        document = (
            _collection().find_one({"session_key": key, "creation_date": {"$gt": _live_since()}}) if key else None
        )
        if document is None:
            self._session_key = None
            return {}
        return self.decode(document.get("session_data"))

    def exists(self, session_key: str | None) -> bool:
        if not self._validate_session_key(session_key):
            return False
        live = {"session_key": session_key, "creation_date": {"$gt": _live_since()}}
        return _collection().count_documents(live, limit=1) > 0

    def delete(self, session_key: str | None = None) -> None:
        key = self.session_key if session_key is None else session_key
        if self._validate_session_key(key):
            _collection().delete_one({"session_key": key})

    def create(self) -> None:
        raise NotImplementedError("the legacy engine is read-only: edge-session makes new sessions")

    def save(self, must_create: bool = False) -> None:
        raise NotImplementedError("the legacy engine is read-only: edge-session makes new sessions")

    @classmethod
    def clear_expired(cls) -> None:
        """Nothing to do: the legacy TTL index removes expired documents."""

    def decode(self, session_data: object) -> dict[str, Any]:
        """Django's current encoding, else the pre-3.1 one; {} for anything that does not verify."""
        if not isinstance(session_data, str):
            return {}
        try:
            decoded: dict[str, Any] = signing.loads(session_data, salt=self.key_salt, serializer=self.serializer)
            return decoded
        except signing.BadSignature:
            return self._decode_before_django_3_1(session_data)
        except ValueError:
            return {}

    def _decode_before_django_3_1(self, session_data: str) -> dict[str, Any]:
        # base64(hexdigest ":" serialized), the hash a SHA-1 salted HMAC under the class name
        # (Django 3.2's SessionBase._legacy_decode), with the current key or any fallback.
        try:
            raw = base64.b64decode(session_data.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            return {}
        mac, separator, serialized = raw.partition(b":")
        if not separator:
            return {}
        salt = "django.contrib.sessions" + self.__class__.__name__
        for secret in [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]:
            expected = salted_hmac(salt, serialized, secret=secret).hexdigest()
            if constant_time_compare(mac.decode("ascii", "replace"), expected):
                try:
                    data = self.serializer().loads(serialized)
                except ValueError:
                    return {}
                return data if isinstance(data, dict) else {}
        return {}

    @classmethod
    def batch_source(cls) -> MongoSessionsBatch:
        return MongoSessionsBatch(cls)


class MongoSessionsBatch:
    """Every live django-mongo-sessions document, for ``manage.py edge_session_import``."""

    def __init__(self, store: type[SessionStore]) -> None:
        self._store = store
        conf = _legacy_settings()
        self.description = (
            f"the collection {conf.get('COLLECTION', 'mongo_sessions')!r} of the database"
            f" {conf.get('DATABASE', 'test')!r} (django-mongo-sessions)"
        )
        self._since = _live_since()

    def count(self) -> int:
        return _collection().count_documents({"creation_date": {"$gt": self._since}})

    def records(self) -> Iterator[LegacyRecord]:
        ttl, decoder = _ttl(), self._store()
        for document in _collection().find({"creation_date": {"$gt": self._since}}):
            key, data, created = document.get("session_key"), document.get("session_data"), document["creation_date"]
            if not isinstance(key, str) or not decoder._validate_session_key(key):
                continue
            yield LegacyRecord(key, decoder.decode(data), created + ttl, version=(document["_id"], data))

    def mark_moved(self, record: LegacyRecord, token: str) -> bool:
        document_id, data = cast(tuple[Any, Any], record.version)
        marker = self._store().encode(moved_marker(token))
        # creation_date stays: the legacy TTL index removes the marker when the cookie expires.
        done = _collection().update_one({"_id": document_id, "session_data": data}, {"$set": {"session_data": marker}})
        return done.matched_count == 1
