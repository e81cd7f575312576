"""A Django session engine on the filter's cookie store: the whole session in an encrypted
cookie, no companion, no database::

    SESSION_ENGINE = "edge_session.django_cookie"
    MIDDLEWARE = [
        ...,
        "edge_session.django_cookie.SessionMiddleware",  # instead of django.contrib.sessions' one
        ...,
    ]
    EDGE_SESSION = {
        "COOKIE_STORE_KEYS": [{"id": "c2026", "secret": "<base64 of 32+ bytes>"}],  # as in the filter
        "COOKIE": {"secure": True},       # the filter's cookie object (its defaults if left out)
        "USER_KEY": "_auth_user_id",      # data key carried as the session's user; None: never
        "ABSOLUTE_TTL_SECONDS": None,     # a cap on a session's whole life
        "ALLOW_DEVELOPMENT_SECRETS": False,  # True accepts weak keys, with a warning
    }

The session key Django keeps in its cookie is the filter's sealed value
(``v1.<kid>.<body>``, :mod:`edge_session.cookie_sessions`): a session this engine writes is
the session the filter injects into every other app in its ``"store": "cookie"`` mode, and a
session the filter or a Flask app wrote opens here. The first key seals, every key opens; a
cookie of a removed key, a changed one, or one past the ``expires_at`` it carries (whatever
``Max-Age`` the client kept) opens as a new, empty session, and the middleware clears it.

The keys follow the filter's secret rules (:mod:`edge_session.secret_rules`: a placeholder is
always refused, a weak key only with ``ALLOW_DEVELOPMENT_SECRETS``); a cookie key whose secret
is also one of ``KEYS`` or ``ASSERTION_KEYS`` is refused (one secret, one use, as the filter).
The cookie's attributes are the filter's, checked as with :mod:`edge_session.django`.

Each save re-seals the whole session with ``get_expiry_age()`` as its lifetime and
``get_expire_at_browser_close()``; a save whose cookie would pass 4096 bytes raises
:class:`~edge_session.cookie_store.SessionTooLarge` (Django answers 500 and the browser keeps
its previous cookie). ``cycle_key()`` (``login()``) gives the session a new id and keeps its
data, creation time and absolute limit; ``flush()`` (``logout()``) clears the session and the
middleware clears the cookie.

Nothing is stored on the server, so there is nothing to look up, delete or expire: ``exists()``
answers False as Django's ``signed_cookies`` does, ``clear_expired()`` does nothing, and a copy
of a cookie taken before a logout or a cycle opens in these apps until its ``expires_at``
(docs/security.md, "Cookie store", says what the filter refuses beyond that).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.core.exceptions import ImproperlyConfigured

from . import django as _companion_engine
from .companion import user_of
from .cookie_sessions import bound_user
from .cookie_sessions import CookieSessions
from .cookie_store import CookiePayload, SessionTooLarge
from .cookies import CookieSettings
from .django_values import Values, serializer_class, values
from .secret_rules import ConfigError, SecretPolicy

__all__ = ["SessionMiddleware", "SessionStore", "SessionTooLarge"]

_DJANGO_MIDDLEWARE = "django.contrib.sessions.middleware.SessionMiddleware"
_COOKIE_SOURCE = 'EDGE_SESSION["COOKIE"]'
_KEYS_SOURCE = 'EDGE_SESSION["COOKIE_STORE_KEYS"]'


@dataclass(frozen=True)
class _Settings:
    """``EDGE_SESSION``, parsed once per value."""

    sessions: CookieSessions
    user_key: str | None


_configured: dict[str, _Settings] = {}


def _configuration() -> _Settings:
    """The keys and options of the current ``EDGE_SESSION`` setting (built once per value)."""
    if _DJANGO_MIDDLEWARE in getattr(settings, "MIDDLEWARE", ()):
        raise ImproperlyConfigured(
            f"MIDDLEWARE lists {_DJANGO_MIDDLEWARE}: with SESSION_ENGINE {__name__!r} use"
            f" {__name__}.SessionMiddleware in its place (it refuses a request carrying two different"
            " session cookies instead of using the last one, as the filter does)"
        )
    conf = getattr(settings, "EDGE_SESSION", None)
    if not isinstance(conf, Mapping) or "COOKIE_STORE_KEYS" not in conf:
        raise ImproperlyConfigured(
            "EDGE_SESSION must be a dict with COOKIE_STORE_KEYS (the filter's cookie_store.keys)"
        )
    app_cookie = _companion_engine._app_cookie()
    cache_key = json.dumps([conf, app_cookie], sort_keys=True, default=str)
    if cache_key not in _configured:
        development = conf.get("ALLOW_DEVELOPMENT_SECRETS", False)
        if not isinstance(development, bool):
            raise ImproperlyConfigured("EDGE_SESSION ALLOW_DEVELOPMENT_SECRETS must be True or False")
        policy = SecretPolicy(development, 'EDGE_SESSION["ALLOW_DEVELOPMENT_SECRETS"]')
        absolute = conf.get("ABSOLUTE_TTL_SECONDS")
        if absolute is not None and (type(absolute) is not int or absolute <= 0):
            raise ImproperlyConfigured(
                'EDGE_SESSION["ABSOLUTE_TTL_SECONDS"] must be a positive number of seconds or None'
            )
        try:
            cookie = CookieSettings.from_config(conf.get("COOKIE"), _COOKIE_SOURCE)
            cookie.refuse_differences(app_cookie, _COOKIE_SOURCE)
            sessions = CookieSessions.from_config(
                conf["COOKIE_STORE_KEYS"],
                policy,
                cookie.name,
                absolute,
                source=_KEYS_SOURCE,
                other_keys=[(f'EDGE_SESSION["{name}"]', conf.get(name)) for name in ("KEYS", "ASSERTION_KEYS")],
            )
        except ConfigError as error:
            raise ImproperlyConfigured(str(error)) from None
        user_key = conf.get("USER_KEY", "_auth_user_id")
        _configured[cache_key] = _Settings(sessions, None if user_key is None else str(user_key))
    values(serializer_class(settings.SESSION_SERIALIZER))  # refused at start when not JSON
    return _configured[cache_key]


class SessionStore(SessionBase):
    """Django's ``SessionBase`` over the filter's cookie store: the session key is the cookie."""

    _session_key: str | None  # SessionBase's attributes, declared for the type checker
    _session_cache: dict[str, Any]

    def __init__(self, session_key: str | None = None) -> None:
        super().__init__(session_key)
        # The session as it was opened or last sealed: its id, creation and absolute limit
        # carry over to the next seal. None: the next seal starts a new session.
        self._payload: CookiePayload | None = None

    @property
    def session_id(self) -> str | None:
        """The session's id (the filter's ``x-session-id``), once loaded or saved."""
        return self._payload.id if self._payload else None

    @property
    def _codec(self) -> Values:
        return values(self.serializer)

    def load(self) -> dict[str, Any]:
        payload = _configuration().sessions.open(self.session_key)
        if payload is None:
            # Forged, removed key, expired or malformed: a new session, and the middleware
            # clears the cookie the request carried.
            self._session_key = None
            self._payload = None
            return {}
        self._payload = payload
        return self._codec.from_stored(payload.data)

    def exists(self, session_key: str | None) -> bool:
        """False: the browser holds the session, nothing on the server exists or not."""
        return False

    def create(self) -> None:
        """A new session (new id) holding the current data, sealed at once."""
        self._payload = None
        self.save(must_create=True)
        self.modified = True

    def save(self, must_create: bool = False) -> None:
        data = self._get_session(no_load=must_create)
        conf = _configuration()
        previous = None if must_create else self._payload
        value, payload = conf.sessions.seal(
            previous,
            self._codec.to_stored(data),
            user=self._user(previous, data, conf.user_key),
            ttl_seconds=self.get_expiry_age(),
            browser_session=self.get_expire_at_browser_close(),
        )
        self._session_key = value
        self._payload = payload

    def delete(self, session_key: str | None = None) -> None:
        """Forgets this session (the middleware then clears the cookie). Another session's
        key names nothing stored, so there is nothing to do for it."""
        if session_key is None or session_key == self.session_key:
            self._session_key = None
            self._session_cache = {}
            self._payload = None
            self.modified = True

    def _user(self, previous: Any, data: Mapping[str, Any], key: str | None) -> str | None:
        loaded = user_of(self._codec.from_stored(previous.data), key) if previous is not None else None
        return bound_user(previous, loaded, user_of(data, key))

    def cycle_key(self) -> None:
        """A new id for the same data, creation time and absolute limit (the old cookie is
        replaced on the response)."""
        data = self._session
        conf = _configuration()
        value, payload = conf.sessions.seal(
            self._payload,
            self._codec.to_stored(data),
            user=self._user(self._payload, data, conf.user_key),
            ttl_seconds=self.get_expiry_age(),
            browser_session=self.get_expire_at_browser_close(),
            new_id=True,
        )
        self._session_key = value
        self._payload = payload
        self._session_cache = data
        self.modified = True

    # Nothing here waits on I/O: the async forms run in place rather than in a thread.
    async def aload(self) -> dict[str, Any]:
        return self.load()

    async def aexists(self, session_key: str | None) -> bool:
        return self.exists(session_key)

    async def acreate(self) -> None:
        self.create()

    async def asave(self, must_create: bool = False) -> None:
        self.save(must_create)

    async def adelete(self, session_key: str | None = None) -> None:
        self.delete(session_key)

    async def acycle_key(self) -> None:
        self.cycle_key()

    @classmethod
    def clear_expired(cls) -> None:
        """Nothing to do: expired sessions live only in browsers, which refuse them."""

    @classmethod
    async def aclear_expired(cls) -> None:
        """Nothing to do, as :meth:`clear_expired`."""


class SessionMiddleware(_companion_engine.SessionMiddleware):
    """:class:`edge_session.django.SessionMiddleware` (a request carrying the session cookie's
    name with different values has no session and its cookies are left alone, as in the
    filter), checking this engine's settings at start."""

    def __init__(self, get_response: Any) -> None:
        super().__init__(get_response)
        if self.SessionStore is SessionStore:
            _configuration()  # a bad configuration fails at start, not at the first request
