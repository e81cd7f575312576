"""A Flask session interface on the companion, with the filter's cookie format.

    from edge_session.flask import init_app
    app.config.update(
        SESSION_COOKIE_NAME="sid",                      # the filter's cookie name
        EDGE_SESSION_COMPANION_URL="http://127.0.0.1:8081",
        EDGE_SESSION_COMPANION_TOKEN="<the companion's bearer token>",
        EDGE_SESSION_KEYS=[{"id": "2026a", "secret": "<base64 of 32+ bytes>"}],
        EDGE_SESSION_TIMEOUT=1.0,                       # seconds per companion call
        EDGE_SESSION_USER_KEY="_user_id",               # data key bound as the user (Flask-Login's)
        EDGE_SESSION_ALLOW_DEVELOPMENT_SECRETS=False,   # True accepts weak keys and tokens, warning
        EDGE_SESSION_COOKIE={"secure": True},           # the filter's cookie object (its defaults)
        SESSION_COOKIE_SECURE=True,                     # as the filter's cookie: Flask's
        SESSION_COOKIE_SAMESITE="Lax",                  # defaults differ
        EDGE_SESSION_ASSERTION_KEYS=None,               # the filter's assertion.keys: trust the edge
        EDGE_SESSION_ASSERTION_HEADER="x-session-assertion",
    )
    init_app(app)

With ``EDGE_SESSION_ASSERTION_KEYS``, a request whose signed assertion
(:mod:`edge_session.assertion`) verifies for its ``Host`` and names the cookie's session is
opened from the assertion without reading the companion; an absent, forged, expired or foreign
one falls back to the companion, and so does one older than this process's last write to its
session or naming a session it deleted (read-your-writes).

The session cookie's attributes come from the filter's configuration: ``init_app`` raises
:class:`ConfigError` (naming the setting) when ``SESSION_COOKIE_NAME``, ``_PATH``, ``_DOMAIN``,
``_SECURE``, ``_HTTPONLY`` or ``_SAMESITE`` differ from ``EDGE_SESSION_COOKIE`` (the filter's
defaults: ``sid``, ``/``, no domain, secure, HttpOnly, ``Lax``), or the cookie is partitioned:
re-issuing the cookie with weaker attributes would overwrite the filter's.

The keys and the token are held to the filter's and the companion's rules
(:mod:`edge_session.secret_rules`): a placeholder (``REPLACE-ME``) is always refused, a weak
key or token only with ``EDGE_SESSION_ALLOW_DEVELOPMENT_SECRETS`` (never in production), which
warns.

A request carrying the session cookie's name more than once with different values (a cookie
planted next to the user's own) has no session, and its cookies are not cleared, as in the
filter. The session is a dict as with Flask's own sessions; ``session.cycle()`` gives it a new id at
the end of the request (do it at login), ``session.clear()`` deletes it (logout). Only changed
keys are written, so concurrent requests changing different keys lose nothing. A permanent
session's cookie has an expiry (``PERMANENT_SESSION_LIFETIME``); any other is a browser-session
cookie, and the companion keeps it for ``PERMANENT_SESSION_LIFETIME`` too. A companion that
cannot answer raises (Flask answers 500): a failed read never shows up as an empty session.

Values are what Flask's own cookie session carries (``datetime``, ``UUID``, ``bytes``,
``tuple``, ``Markup``), each stored as Flask's tagged JSON, which an app behind the filter sees
in ``x-session-data``. With ``EDGE_SESSION_LEGACY_SOURCE``, sessions move from the app's previous
store (:mod:`edge_session.flask_legacy`) as their browsers come back, and ``flask edge-session
import`` moves them ahead of time (:mod:`edge_session.migration`); ``init_app`` adds the
``flask edge-session`` commands (:mod:`edge_session.flask_cli`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, Request, Response
from flask.json.tag import TaggedJSONSerializer
from flask.sessions import SessionInterface, SessionMixin, session_json_serializer
from werkzeug.datastructures import CallbackDict

from .assertion import DEFAULT_HEADER, AssertionVerifier, WriteLog
from .companion import CompanionClient, CompanionError, JsonObject, Session, snapshot, user_of
from .cookies import CookieSettings, same_site_attribute, session_cookie
from .flask_legacy import LegacySource, legacy_source
from .migration import ImportReport, LegacyRecord, Unmovable, remaining_seconds, run_import
from .secret_rules import SecretPolicy
from .token import ConfigError, Keyring

__all__ = ["EdgeSession", "EdgeSessionInterface", "FilterCookieInterface", "SessionInterrupted", "init_app"]

logger = logging.getLogger("edge_session.migration")


class SessionInterrupted(CompanionError):
    """The session was deleted (a logout elsewhere) while this request changed it."""


class EdgeSession(CallbackDict[str, Any], SessionMixin):
    """The session of one request."""

    def __init__(
        self,
        stored: Session | None = None,
        data: Mapping[str, Any] | None = None,
        *,
        stale_cookie: bool = False,
        from_assertion: bool = False,
    ) -> None:
        """``stored`` as the companion answered it, ``data`` its values as the app sees them."""

        def on_update(session: EdgeSession) -> None:
            session.modified = True
            session.accessed = True

        super().__init__(dict(data) if data else None, on_update)
        self.session_id = stored.id if stored else None
        # The data as the companion showed it: what a save compares against.
        self.stored = snapshot(stored.data) if stored else None
        self.user = stored.user if stored else None
        self.stale_cookie = stale_cookie
        self.from_assertion = from_assertion
        """Opened from the request's verified assertion, without reading the companion."""
        self.modified = False
        self.accessed = False
        self.cycle_requested = False
        self.legacy_cookie: str | None = None
        """A legacy cookie this request carries, retired when the response goes out."""

    def cycle(self) -> None:
        """Give the session a new id when the response goes out, dropping the old one (login)."""
        self.cycle_requested = True
        self.modified = True


class FilterCookieInterface(SessionInterface):
    """What the companion interface and the cookie store's (:mod:`edge_session.flask_cookie`)
    share: the filter's cookie, and values as Flask's own session serializer writes them.

    Values go through Flask's own session serializer (``serializer``, the tagged JSON of
    ``SecureCookieSessionInterface``), one key at a time: what Flask's cookie session
    round-trips (``datetime``, ``UUID``, ``bytes``, ``tuple``, ``Markup``, tags registered on
    it) round-trips here, and each key is still a JSON value the companion writes on its own
    and the filter injects. A header-only app behind the filter sees those tagged forms in
    ``x-session-data`` (``{"when": {" d": "Wed, 01 May 2024 12:00:00 GMT"}}``).
    """

    serializer: TaggedJSONSerializer = session_json_serializer
    cookie: CookieSettings

    def to_stored(self, data: Mapping[str, Any]) -> JsonObject:
        """Each value as Flask's session serializer writes it, as JSON."""
        return {key: json.loads(self.serializer.dumps(value)) for key, value in data.items()}

    def from_stored(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        """Each stored value as Flask's session serializer reads it back."""
        return {key: self.serializer.loads(json.dumps(value)) for key, value in stored.items()}

    def refuse_cookie_differences(self, app: Flask) -> None:
        """Raises :class:`ConfigError` naming the first ``SESSION_COOKIE_*`` setting that gives
        the cookie other attributes than the filter's (``EDGE_SESSION_COOKIE``)."""
        # Flask 3.1 added partitioned cookies: another jar, so a second cookie of the same name.
        if getattr(self, "get_cookie_partitioned", lambda app: False)(app):
            raise ConfigError(
                "SESSION_COOKIE_PARTITIONED is True, but the filter's cookie is not partitioned:"
                " set SESSION_COOKIE_PARTITIONED = False"
            )
        self.cookie.refuse_differences(
            {
                "name": ("SESSION_COOKIE_NAME", self.get_cookie_name(app)),
                "path": ("SESSION_COOKIE_PATH", self.get_cookie_path(app)),
                "domain": ("SESSION_COOKIE_DOMAIN", self.get_cookie_domain(app) or None),
                "secure": ("SESSION_COOKIE_SECURE", bool(self.get_cookie_secure(app))),
                "http_only": ("SESSION_COOKIE_HTTPONLY", bool(self.get_cookie_httponly(app))),
                "same_site": ("SESSION_COOKIE_SAMESITE", same_site_attribute(self.get_cookie_samesite(app))),
            },
            "EDGE_SESSION_COOKIE",
        )

    def _cookie_attributes(self, app: Flask) -> dict[str, Any]:
        return {
            "domain": self.get_cookie_domain(app),
            "path": self.get_cookie_path(app),
            "secure": self.get_cookie_secure(app),
            "samesite": self.get_cookie_samesite(app),
            "httponly": self.get_cookie_httponly(app),
        }

    def _delete_cookie(self, app: Flask, response: Response) -> None:
        response.delete_cookie(self.get_cookie_name(app), **self._cookie_attributes(app))
        response.vary.add("Cookie")


class EdgeSessionInterface(FilterCookieInterface):
    """Opens and saves :class:`EdgeSession` through the companion."""

    def __init__(
        self,
        companion: CompanionClient,
        keyring: Keyring,
        user_key: str | None = "_user_id",
        cookie: CookieSettings | None = None,
        absolute_ttl_seconds: int | None = None,
        legacy: LegacySource | None = None,
        assertion: AssertionVerifier | None = None,
        assertion_header: str = DEFAULT_HEADER,
    ) -> None:
        self.companion = companion
        self.keyring = keyring
        self.user_key = user_key
        self.cookie = cookie or CookieSettings()
        self.absolute_ttl_seconds = absolute_ttl_seconds
        self.legacy = legacy
        self.assertion = assertion
        self.assertion_header = assertion_header
        self.writes = WriteLog()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> EdgeSessionInterface:
        try:
            url, token, keys = (config[f"EDGE_SESSION_{name}"] for name in ("COMPANION_URL", "COMPANION_TOKEN", "KEYS"))
        except KeyError as missing:
            raise ConfigError(f"Flask config needs {missing.args[0]}") from None
        development = config.get("EDGE_SESSION_ALLOW_DEVELOPMENT_SECRETS", False)
        if not isinstance(development, bool):
            raise ConfigError("Flask config EDGE_SESSION_ALLOW_DEVELOPMENT_SECRETS must be True or False")
        policy = SecretPolicy(development, "EDGE_SESSION_ALLOW_DEVELOPMENT_SECRETS")
        try:
            companion = CompanionClient(url, token, float(config.get("EDGE_SESSION_TIMEOUT", 1.0)), policy)
        except ConfigError as error:
            raise ConfigError(f"Flask config EDGE_SESSION_COMPANION_TOKEN: {error}") from None
        try:
            keyring = Keyring.from_config(keys, policy)
        except ConfigError as error:
            raise ConfigError(f"Flask config EDGE_SESSION_KEYS: {error}") from None
        cookie = CookieSettings.from_config(config.get("EDGE_SESSION_COOKIE"), "EDGE_SESSION_COOKIE")
        absolute = config.get("EDGE_SESSION_ABSOLUTE_TTL_SECONDS")
        if absolute is not None and (type(absolute) is not int or absolute <= 0):
            raise ConfigError(
                "Flask config EDGE_SESSION_ABSOLUTE_TTL_SECONDS must be a positive number of seconds or None"
            )
        legacy = legacy_source(config, config.get("SESSION_COOKIE_NAME", "session"))
        assertion_keys = config.get("EDGE_SESSION_ASSERTION_KEYS")
        try:
            verifier = None if assertion_keys is None else AssertionVerifier.from_config(assertion_keys, policy)
        except ConfigError as error:
            raise ConfigError(f"Flask config EDGE_SESSION_ASSERTION_KEYS: {error}") from None
        header = config.get("EDGE_SESSION_ASSERTION_HEADER", DEFAULT_HEADER)
        if not isinstance(header, str) or not header:
            raise ConfigError("Flask config EDGE_SESSION_ASSERTION_HEADER must be a header name")
        return cls(
            companion,
            keyring,
            config.get("EDGE_SESSION_USER_KEY", "_user_id"),
            cookie,
            absolute,
            legacy,
            verifier,
            header,
        )

    def open_session(self, app: Flask, request: Request) -> EdgeSession:
        header = request.headers.get("Cookie")
        found = session_cookie(header, self.get_cookie_name(app))
        if found.conflicting:
            # request.cookies would pick one: no session, and the cookies are left as they are,
            # as the filter does.
            return EdgeSession()
        session = self._open(found.value, self._asserted(request))
        if self.legacy is not None:
            legacy = session_cookie(header, self.legacy.cookie.name)
            if legacy.value is not None:
                session = self._move_legacy(app, session, self.legacy, legacy.value)
        return session

    def _asserted(self, request: Request) -> Session | None:
        """The session the request's verified assertion carries, unless older than our last
        write to it (or naming one we deleted)."""
        if self.assertion is None:
            return None
        asserted = self.assertion.verify(request.headers.get(self.assertion_header), audience=request.host)
        return asserted.session() if asserted is not None and self.writes.allows(asserted) else None

    def _open(self, token: str | None, asserted: Session | None = None) -> EdgeSession:
        if not token:
            return EdgeSession()
        session_id = self.keyring.verify(token)
        if asserted is not None and session_id == asserted.id:
            return EdgeSession(asserted, self.from_stored(asserted.data), from_assertion=True)
        # An outage raises here (Flask answers 500) rather than open an empty session.
        stored = self.companion.get(session_id) if session_id else None
        return EdgeSession(stored, self.from_stored(stored.data)) if stored else EdgeSession(stale_cookie=True)

    def _move_legacy(self, app: Flask, session: EdgeSession, legacy: LegacySource, value: str) -> EdgeSession:
        """With no valid edge-session session, the legacy session's data (or the session a batch
        import moved it to) becomes this request's session; the legacy cookie is retired when
        the response goes out either way."""
        if session.session_id is None:
            found = legacy.read(app, value)
            if found is None:
                # Unknown, expired or unreadable (a missing SECRET_KEY_FALLBACKS entry, a wrong
                # database): left as it is, so fixing the settings still moves it.
                return session
            if found.moved_to is not None:
                target = self._open(found.moved_to)
                if target.session_id is not None:
                    target.modified = True  # the response carries its cookie
                    session = target
            else:
                try:
                    # As every later request will see it (a naive datetime comes back in UTC).
                    data = self.from_stored(self.to_stored(found.data))
                except (TypeError, ValueError):
                    # Left where it is, cookie and all: the user logs in again here, and a
                    # later request with a valid session retires it.
                    logger.warning("edge-session: a legacy session holds values Flask's session JSON cannot carry")
                    return session
                fresh = EdgeSession(stale_cookie=session.stale_cookie)
                fresh.update(data)
                session = fresh
        session.legacy_cookie = value
        return session

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if not isinstance(session, EdgeSession):
            return  # open_session failed; Flask is answering with the error
        if session.legacy_cookie is not None and response.status_code >= 500:
            return  # nothing moves on a failed response: the next request tries again
        self._save(app, session, response)
        if self.legacy is not None and session.legacy_cookie is not None:
            self.legacy.retire(session.legacy_cookie)
            cookie = self.legacy.cookie
            response.delete_cookie(cookie.name, path=cookie.path, domain=cookie.domain)

    def _save(self, app: Flask, session: EdgeSession, response: Response) -> None:
        if session.accessed:
            response.vary.add("Cookie")
        if not session:
            if session.modified and session.session_id:
                self.companion.delete(session.session_id)  # logout
                self.writes.record_deletion(session.session_id)
            if (session.modified and session.session_id) or session.stale_cookie:
                self._delete_cookie(app, response)
            return
        if not self.should_set_cookie(app, session):
            return
        written = self._write(app, session)
        if written is None:
            self._delete_cookie(app, response)
            raise SessionInterrupted("the session was deleted before the request completed")
        self.writes.record(written)
        response.set_cookie(
            self.get_cookie_name(app),
            self.keyring.sign(written.id),
            expires=self.get_expiration_time(app, session),
            **self._cookie_attributes(app),
        )
        response.vary.add("Cookie")

    def _write(self, app: Flask, session: EdgeSession) -> Session | None:
        """Stores the session; None if it was deleted meanwhile (never resurrected)."""
        ttl = int(app.permanent_session_lifetime.total_seconds())
        browser = not session.permanent
        user = user_of(session, self.user_key)
        data = self.to_stored(session)
        if session.session_id is None:
            return self.companion.create(
                data,
                user=user,
                ttl_seconds=ttl,
                browser_session=browser,
                absolute_ttl_seconds=self.absolute_ttl_seconds,
            )
        session_id, stored = session.session_id, session.stored or {}
        if session.cycle_requested:
            cycled = self.companion.cycle(session_id)
            self.writes.record_deletion(session_id)
            if cycled is None:
                return None
            session_id, stored = cycled.id, cycled.data
        return self.companion.write(
            session_id, stored, data, user=user, bound_user=session.user, ttl_seconds=ttl, browser_session=browser
        )

    def import_legacy(
        self, out: Callable[[str], None], *, dry_run: bool = False, progress_every: int = 1000
    ) -> ImportReport:
        """Moves every live session of the legacy store ahead of time (``flask edge-session
        import``): see :mod:`edge_session.migration`. Needs an app context (Flask's JSON)."""
        if self.legacy is None:
            raise ConfigError("EDGE_SESSION_LEGACY_SOURCE names no legacy store to import from")
        source = self.legacy.batch_source()

        def create(record: LegacyRecord) -> str:
            data = record.data or {}
            try:
                stored = self.to_stored(data)
            except (TypeError, ValueError) as error:
                raise Unmovable(str(error)) from error
            session = self.companion.create(
                stored,
                user=user_of(data, self.user_key),
                ttl_seconds=remaining_seconds(record.expires_at),
                browser_session=not data.get("_permanent", False),
                absolute_ttl_seconds=self.absolute_ttl_seconds,
            )
            return self.keyring.sign(session.id)

        def discard(token: str) -> None:
            session_id = self.keyring.verify(token)
            if session_id is not None:
                self.companion.delete(session_id)

        return run_import(source, create, discard, out, dry_run=dry_run, progress_every=progress_every)


def init_app(app: Flask) -> EdgeSessionInterface:
    """Installs the interface configured by the app's ``EDGE_SESSION_*`` settings; raises
    :class:`ConfigError` for a weak secret or cookie settings that differ from the filter's."""
    from .flask_cli import cli

    interface = EdgeSessionInterface.from_config(app.config)
    interface.refuse_cookie_differences(app)
    app.session_interface = interface
    if cli.name not in app.cli.commands:
        app.cli.add_command(cli)
    return interface
