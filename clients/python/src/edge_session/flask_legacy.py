"""The Flask app's previous session store, as a source of sessions to move into edge-session (the
rules are in :mod:`edge_session.migration`)::

    app.config.update(
        EDGE_SESSION_LEGACY_SOURCE="flask-mongo-sessions",   # or "flask-signed-cookie"
        EDGE_SESSION_LEGACY_COOKIE_NAME="session",   # the app's SESSION_COOKIE_NAME until now
        EDGE_SESSION_LEGACY_COOKIE_PATH="/",         # to clear it
        EDGE_SESSION_LEGACY_COOKIE_DOMAIN=None,
        # flask-mongo-sessions only:
        EDGE_SESSION_LEGACY_MONGODB_URI="mongodb://db.internal:27017",   # Flask-PyMongo's MONGO_URI
        EDGE_SESSION_LEGACY_DATABASE="app",          # the database of the `db` it was given
        EDGE_SESSION_LEGACY_COLLECTION="sessions",   # its `collection_name`
        EDGE_SESSION_LEGACY_UNPICKLE=True,           # its data is pickled: required, see below
    )

``flask-signed-cookie`` is Flask's default session: the data lives in the cookie, signed with
``SECRET_KEY`` (or one of ``SECRET_KEY_FALLBACKS``) and accepted for
``PERMANENT_SESSION_LIFETIME``, as Flask reads it, through Flask's tagged JSON; nothing is ever
unpickled from a cookie. There is no record to delete and no list to import from: such sessions
move lazily only. A copy of the cookie taken before the move still moves until it expires, as
it could always be replayed until then.

``flask-mongo-sessions`` (ivanyu/flask-mongo-sessions 0.2.1) stores documents
``{_id: <uuid4 hex>, d: Binary(pickle.dumps(dict(session))), exp: <datetime>}``
(``MongoDBSessionInterface.save_session`` and ``MongoDBSession.pack`` in its
``flask_mongo_sessions/__init__.py``), live while ``exp`` is in the future; it cannot run on
Flask 2.3 or later (it reads ``app.session_cookie_name``) nor read its own documents on Python 3
(``pickle.loads(str(initial))``). Its data is a pickle, so it is read only when
``EDGE_SESSION_LEGACY_UNPICKLE`` says so, only from that database, and through an unpickler that
builds nothing but the containers, strings and numbers pickle has opcodes for and the types
Flask's session serializer carries (``datetime``, ``UUID``, ``Markup``; ``bytes`` and ``tuple``
are opcodes): any other class in a document (a crafted one, or an app object) makes that session
unreadable instead of running its code. Python 2's pickles (what the package wrote in practice:
its read path only works there) are read too, their byte strings as UTF-8 text where they are.
A batch-moved document keeps ``exp`` and holds the new session's token in
``edge_session_moved_to``, its data replaced by an empty dict.
"""

from __future__ import annotations

import io
import logging
import pickle
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import BadSignature

from .migration import MAX_LEGACY_COOKIE, BatchSource, LegacyRecord, LegacySession, moved_marker, read_legacy
from .secret_rules import ConfigError

if TYPE_CHECKING:
    from pymongo.collection import Collection

__all__ = ["FlaskMongoSessions", "LegacyCookie", "LegacySource", "SignedCookieSessions", "legacy_source"]

logger = logging.getLogger("edge_session.migration")

MOVED_FIELD = "edge_session_moved_to"
SOURCES = ("flask-signed-cookie", "flask-mongo-sessions")
_SID = re.compile(r"[0-9a-f]{32}")  # uuid.uuid4().hex, the only ids the package made
_COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Classes a session pickle may name: the types Flask's session serializer carries, what they
# need to be rebuilt, and what Python 2's protocol 0 wrote for them (copy_reg, unicode).
_ALLOWED = frozenset(
    {
        ("datetime", "datetime"),
        ("datetime", "timezone"),
        ("datetime", "timedelta"),
        ("uuid", "UUID"),
        ("uuid", "SafeUUID"),
        ("markupsafe", "Markup"),
        ("copyreg", "_reconstructor"),
        ("builtins", "object"),
        ("builtins", "str"),
    }
)
# An empty dict as Python 2's pickle wrote it: what a moved document holds, so a legacy app
# instance still running reads an empty session rather than failing on a missing field.
_EMPTY_PICKLE = b"(dp0\n."


@dataclass(frozen=True)
class LegacyCookie:
    name: str = "session"
    path: str = "/"
    domain: str | None = None


class LegacySource(Protocol):
    cookie: LegacyCookie

    def read(self, app: Flask, value: str) -> LegacySession | None:
        """The legacy session a cookie value names (None: no session)."""

    def retire(self, value: str) -> None:
        """Deletes the legacy record, if the source keeps one."""

    def batch_source(self) -> BatchSource:
        """Every live record, for the batch import; ConfigError when the source keeps none."""


class SignedCookieSessions:
    """Flask's default session: signed data in the cookie itself."""

    def __init__(self, cookie: LegacyCookie) -> None:
        self.cookie = cookie

    def read(self, app: Flask, value: str) -> LegacySession | None:
        serializer = SecureCookieSessionInterface().get_signing_serializer(app)
        if serializer is None or len(value) > MAX_LEGACY_COOKIE:
            return None
        try:
            data = serializer.loads(value, max_age=int(app.permanent_session_lifetime.total_seconds()))
        except BadSignature:
            return None
        return read_legacy(data) if isinstance(data, dict) else None

    def retire(self, value: str) -> None:
        """Nothing is stored: clearing the cookie is all there is."""

    def batch_source(self) -> BatchSource:
        raise ConfigError(
            "flask-signed-cookie sessions live in their browsers: there is nothing to import ahead of time;"
            " they move as their browsers come back"
        )


class _SessionUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"a session pickle may not build {module}.{name}")
        return super().find_class(module, name)


def _text(value: Any) -> Any:
    """Python 2's byte strings as text where they are UTF-8, inside containers too."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    if isinstance(value, dict):
        return {_text(key): _text(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_text(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_text(item) for item in value)
    return value


def unpickle_session(raw: bytes) -> dict[str, Any] | None:
    """A flask-mongo-sessions document's data; None when it is not a dict of allowed types."""
    python3 = len(raw) >= 2 and raw[0] == pickle.PROTO[0] and raw[1] >= 3
    try:
        # Python 2 wrote byte strings (protocol 0-2): read them as bytes (datetime's state is
        # binary), then as text where they are UTF-8.
        data = _SessionUnpickler(io.BytesIO(raw), encoding="bytes" if not python3 else "ASCII").load()
    except Exception:  # noqa: BLE001 - pickle raises many kinds for a bad or refused document
        logger.warning("edge-session: a legacy session's pickle was refused or unreadable", exc_info=True)
        return None
    data = data if python3 else _text(data)
    if not isinstance(data, dict) or not all(isinstance(key, str) for key in data):
        return None
    return data


class FlaskMongoSessions:
    """flask-mongo-sessions' collection."""

    def __init__(self, cookie: LegacyCookie, uri: str, database: str, collection: str, timeout: float) -> None:
        self.cookie = cookie
        self._where = (uri, database, collection, int(timeout * 1000))
        self.description = f"the collection {collection!r} of the database {database!r} (flask-mongo-sessions)"

    @property
    def _collection(self) -> Collection[dict[str, Any]]:
        from . import mongo  # pymongo is needed only with this source

        uri, database, collection, timeout_ms = self._where
        return mongo.client(uri, timeout_ms)[database][collection]

    def _found(self, document: Mapping[str, Any]) -> LegacySession | None:
        moved = document.get(MOVED_FIELD)
        if isinstance(moved, str):
            return LegacySession({}, moved_to=moved)
        raw = document.get("d")
        return read_legacy(unpickle_session(bytes(raw))) if isinstance(raw, bytes) else None

    def read(self, app: Flask, value: str) -> LegacySession | None:
        if not _SID.fullmatch(value):
            return None
        document = self._collection.find_one({"_id": value, "exp": {"$gt": datetime.now(timezone.utc)}})
        return None if document is None else self._found(document)

    def retire(self, value: str) -> None:
        if not _SID.fullmatch(value):
            return
        try:
            self._collection.delete_one({"_id": value})
        except Exception:  # noqa: BLE001 - the move stands; the record has its own expiry
            logger.warning("edge-session: could not delete a moved legacy session", exc_info=True)

    def batch_source(self) -> BatchSource:
        return self

    def count(self) -> int:
        return self._collection.count_documents({"exp": {"$gt": datetime.now(timezone.utc)}})

    def records(self) -> Iterator[LegacyRecord]:
        for document in self._collection.find({"exp": {"$gt": datetime.now(timezone.utc)}}):
            key, expires = document.get("_id"), document.get("exp")
            if not isinstance(key, str) or not _SID.fullmatch(key) or not isinstance(expires, datetime):
                continue
            found = self._found(document)
            if found is None:
                data = None
            elif found.moved_to is not None:
                data = moved_marker(found.moved_to)  # the batch import's own form: skipped
            else:
                data = found.data
            yield LegacyRecord(key, data, expires, version=document.get("d"))

    def mark_moved(self, record: LegacyRecord, token: str) -> bool:
        from bson.binary import Binary

        done = self._collection.update_one(
            {"_id": record.key, "d": record.version, MOVED_FIELD: {"$exists": False}},
            # exp stays: the marker lives as long as the legacy cookie would have.
            {"$set": {MOVED_FIELD: token, "d": Binary(_EMPTY_PICKLE)}},
        )
        return done.matched_count == 1


def legacy_source(config: Mapping[str, Any], session_cookie_name: str) -> LegacySource | None:
    """The source ``EDGE_SESSION_LEGACY_*`` configures (None: no legacy store)."""
    kind = config.get("EDGE_SESSION_LEGACY_SOURCE")
    if kind is None:
        return None
    if kind not in SOURCES:
        raise ConfigError(f"EDGE_SESSION_LEGACY_SOURCE must be one of {SOURCES} or None, not {kind!r}")
    cookie = LegacyCookie(
        config.get("EDGE_SESSION_LEGACY_COOKIE_NAME", "session"),
        config.get("EDGE_SESSION_LEGACY_COOKIE_PATH", "/"),
        config.get("EDGE_SESSION_LEGACY_COOKIE_DOMAIN") or None,
    )
    if not isinstance(cookie.name, str) or not _COOKIE_NAME.fullmatch(cookie.name):
        raise ConfigError("EDGE_SESSION_LEGACY_COOKIE_NAME must be a cookie name")
    if cookie.name == session_cookie_name:
        # The filter answers a cookie that is not its token by clearing it, before the app
        # could read it: the legacy cookie needs a name of its own.
        raise ConfigError(
            f"EDGE_SESSION_LEGACY_COOKIE_NAME is {cookie.name!r}, the same as SESSION_COOKIE_NAME: the legacy"
            " cookie and edge-session's must have different names"
        )
    if not isinstance(cookie.path, str) or not (cookie.domain is None or isinstance(cookie.domain, str)):
        raise ConfigError("EDGE_SESSION_LEGACY_COOKIE_PATH must be a string, _DOMAIN a string or None")
    if kind == "flask-signed-cookie":
        return SignedCookieSessions(cookie)
    if config.get("EDGE_SESSION_LEGACY_UNPICKLE") is not True:
        raise ConfigError(
            "flask-mongo-sessions stores sessions as pickles: set EDGE_SESSION_LEGACY_UNPICKLE = True to read"
            " them (only from its database, never from a cookie, and only the types a session holds)"
        )
    names = {}
    for name in ("MONGODB_URI", "DATABASE", "COLLECTION"):
        value = config.get(
            f"EDGE_SESSION_LEGACY_{name}", "mongodb://localhost:27017" if name == "MONGODB_URI" else None
        )
        if not isinstance(value, str) or not value:
            raise ConfigError(
                f"EDGE_SESSION_LEGACY_{name} must name flask-mongo-sessions' {name.lower().replace('_', ' ')}"
            )
        names[name] = value
    timeout = config.get("EDGE_SESSION_LEGACY_TIMEOUT", 5.0)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise ConfigError("EDGE_SESSION_LEGACY_TIMEOUT must be a positive number of seconds")
    return FlaskMongoSessions(cookie, names["MONGODB_URI"], names["DATABASE"], names["COLLECTION"], float(timeout))
