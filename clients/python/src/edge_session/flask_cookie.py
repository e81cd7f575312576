"""A Flask session interface on the filter's cookie store: the whole session in an encrypted
cookie, no companion::

    from edge_session.flask_cookie import init_app
    app.config.update(
        SESSION_COOKIE_NAME="sid",                      # the filter's cookie name
        SESSION_COOKIE_SECURE=True,                     # as the filter's cookie: Flask's
        SESSION_COOKIE_SAMESITE="Lax",                  # defaults differ
        EDGE_SESSION_COOKIE_STORE_KEYS=[{"id": "c2026", "secret": "<base64 of 32+ bytes>"}],
        EDGE_SESSION_COOKIE={"secure": True},           # the filter's cookie object (its defaults)
        EDGE_SESSION_USER_KEY="_user_id",               # data key carried as the user (Flask-Login's)
        EDGE_SESSION_ABSOLUTE_TTL_SECONDS=None,         # a cap on a session's whole life
        EDGE_SESSION_ALLOW_DEVELOPMENT_SECRETS=False,   # True accepts weak keys, warning
    )
    init_app(app)

The cookie is the filter's sealed value (``v1.<kid>.<body>``, :mod:`edge_session.cookie_sessions`),
so the filter in ``"store": "cookie"`` mode, a Django app on :mod:`edge_session.django_cookie`
and this app share one session. The first key seals, every key opens; a cookie of a removed
key, a changed one or one past the ``expires_at`` it carries (whatever ``Max-Age`` the client
kept) opens as a new, empty session and is cleared on the response. The keys, the cookie's
attributes and a request with two different session cookies are handled as in
:mod:`edge_session.flask`; a cookie key whose secret is also one of ``EDGE_SESSION_KEYS`` or
``EDGE_SESSION_ASSERTION_KEYS`` is refused.

``session`` behaves as Flask's own; ``session.cycle()`` gives it a new id at the end of the
request (login), ``session.clear()`` empties it and clears the cookie (logout). A session
whose cookie would pass 4096 bytes raises
:class:`~edge_session.cookie_store.SessionTooLarge` when the response is saved (Flask answers
500 and the browser keeps its previous cookie). Nothing is stored on the server: a copy of a
cookie taken before a logout opens here until its ``expires_at``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, Request, Response
from flask.sessions import SessionMixin
from werkzeug.datastructures import CallbackDict

from .companion import user_of
from .cookie_sessions import CookieSessions, bound_user
from .cookie_store import CookiePayload, SessionTooLarge
from .cookies import CookieSettings, session_cookie
from .flask import FilterCookieInterface
from .secret_rules import ConfigError, SecretPolicy

__all__ = ["CookieSession", "CookieSessionInterface", "SessionTooLarge", "init_app"]


class CookieSession(CallbackDict[str, Any], SessionMixin):
    """The session of one request."""

    def __init__(
        self,
        payload: CookiePayload | None = None,
        data: Mapping[str, Any] | None = None,
        *,
        stale_cookie: bool = False,
    ) -> None:
        """``payload`` as the cookie held it, ``data`` its values as the app sees them."""

        def on_update(session: CookieSession) -> None:
            session.modified = True
            session.accessed = True

        super().__init__(dict(data) if data else None, on_update)
        self.payload = payload
        self.stale_cookie = stale_cookie
        """The request carried a session cookie that opened to nothing: cleared on the response."""
        self.modified = False
        self.accessed = False
        self.cycle_requested = False

    @property
    def session_id(self) -> str | None:
        """The session's id (the filter's ``x-session-id``); None for a new session."""
        return self.payload.id if self.payload else None

    def cycle(self) -> None:
        """Give the session a new id when the response goes out (login)."""
        self.cycle_requested = True
        self.modified = True


class CookieSessionInterface(FilterCookieInterface):
    """Opens and seals :class:`CookieSession` in the cookie itself."""

    def __init__(
        self, sessions: CookieSessions, user_key: str | None = "_user_id", cookie: CookieSettings | None = None
    ) -> None:
        self.sessions = sessions
        self.user_key = user_key
        self.cookie = cookie or CookieSettings()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> CookieSessionInterface:
        if "EDGE_SESSION_COOKIE_STORE_KEYS" not in config:
            raise ConfigError("Flask config needs EDGE_SESSION_COOKIE_STORE_KEYS (the filter's cookie_store.keys)")
        development = config.get("EDGE_SESSION_ALLOW_DEVELOPMENT_SECRETS", False)
        if not isinstance(development, bool):
            raise ConfigError("Flask config EDGE_SESSION_ALLOW_DEVELOPMENT_SECRETS must be True or False")
        absolute = config.get("EDGE_SESSION_ABSOLUTE_TTL_SECONDS")
        if absolute is not None and (type(absolute) is not int or absolute <= 0):
            raise ConfigError(
                "Flask config EDGE_SESSION_ABSOLUTE_TTL_SECONDS must be a positive number of seconds or None"
            )
        cookie = CookieSettings.from_config(config.get("EDGE_SESSION_COOKIE"), "EDGE_SESSION_COOKIE")
        sessions = CookieSessions.from_config(
            config["EDGE_SESSION_COOKIE_STORE_KEYS"],
            SecretPolicy(development, "EDGE_SESSION_ALLOW_DEVELOPMENT_SECRETS"),
            config.get("SESSION_COOKIE_NAME", "session"),
            absolute,
            source="Flask config EDGE_SESSION_COOKIE_STORE_KEYS",
            other_keys=[(name, config.get(name)) for name in ("EDGE_SESSION_KEYS", "EDGE_SESSION_ASSERTION_KEYS")],
        )
        return cls(sessions, config.get("EDGE_SESSION_USER_KEY", "_user_id"), cookie)

    def open_session(self, app: Flask, request: Request) -> CookieSession:
        found = session_cookie(request.headers.get("Cookie"), self.get_cookie_name(app))
        if found.conflicting:
            # request.cookies would pick one: no session, and the cookies are left as they are,
            # as the filter does.
            return CookieSession()
        payload = self.sessions.open(found.value)
        if payload is None:
            return CookieSession(stale_cookie=bool(found.value))
        return CookieSession(payload, self.from_stored(payload.data))

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if not isinstance(session, CookieSession):
            return  # open_session failed; Flask is answering with the error
        if session.accessed:
            response.vary.add("Cookie")
        if not session:
            if (session.modified and session.payload is not None) or session.stale_cookie:
                self._delete_cookie(app, response)  # logout, or a cookie that opened to nothing
            return
        if not self.should_set_cookie(app, session):
            return
        value, payload = self.sessions.seal(
            session.payload,
            self.to_stored(session),
            user=bound_user(
                session.payload,
                user_of(self.from_stored(session.payload.data), self.user_key) if session.payload else None,
                user_of(session, self.user_key),
            ),
            ttl_seconds=int(app.permanent_session_lifetime.total_seconds()),
            browser_session=not session.permanent,
            new_id=session.cycle_requested,
        )
        session.payload = payload
        response.set_cookie(
            self.get_cookie_name(app),
            value,
            expires=self.get_expiration_time(app, session),
            **self._cookie_attributes(app),
        )
        response.vary.add("Cookie")


def init_app(app: Flask) -> CookieSessionInterface:
    """Installs the interface configured by the app's ``EDGE_SESSION_*`` settings; raises
    :class:`ConfigError` for a weak key or cookie settings that differ from the filter's."""
    interface = CookieSessionInterface.from_config(app.config)
    interface.refuse_cookie_differences(app)
    app.session_interface = interface
    return interface
