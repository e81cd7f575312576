"""A Django session engine on the companion, and the middleware that hands it the session cookie
as the filter reads it::

    SESSION_ENGINE = "edge_session.django"
    MIDDLEWARE = [
        ...,
        "edge_session.django.SessionMiddleware",  # instead of django.contrib.sessions' one
        ...,
    ]

The session key Django keeps in its cookie is the filter's signed token (``<kid>.<id>.<mac>``),
so a session made here is the session the proxy injects into every other app, and back. Each
token is verified with the configured keys before any call; unsigned or forged keys never reach
the companion. Settings (``EDGE_SESSION``)::

    EDGE_SESSION = {
        "COMPANION_URL": "http://127.0.0.1:8081",
        "COMPANION_TOKEN": "<the companion's bearer token>",
        "KEYS": [{"id": "2026a", "secret": "<base64 of 32+ bytes>"}],  # as in the filter
        "TIMEOUT": 1.0,                   # seconds per companion call
        "USER_KEY": "_auth_user_id",      # data key bound as the session's user; None: never
        "ALLOW_DEVELOPMENT_SECRETS": False,  # True accepts weak keys and tokens, with a warning
        "COOKIE": {"secure": True},       # the filter's cookie object (its defaults if left out)
        "ABSOLUTE_TTL_SECONDS": None,     # a cap on a session's whole life, sent on create
        "LEGACY": None,                   # the engine to move sessions from (edge_session.django_legacy)
        "ASSERTION_KEYS": None,           # the filter's assertion.keys: trust the edge (below)
        "ASSERTION_HEADER": "x-session-assertion",
    }

With ``ASSERTION_KEYS`` (the filter's ``assertion.keys``), a request whose signed assertion
(:mod:`edge_session.assertion`) verifies for its ``Host`` and names the cookie's session is
loaded from the assertion, without reading the companion; an absent, forged, expired or foreign
one falls back to the companion. An assertion older than this process's last write to its
session (or naming a session it deleted) is not taken either (read-your-writes).

The session cookie's attributes come from the filter's configuration: the engine refuses to
run (``ImproperlyConfigured``, naming the setting) when ``SESSION_COOKIE_NAME``, ``_PATH``,
``_DOMAIN``, ``_SECURE``, ``_HTTPONLY`` or ``_SAMESITE`` differ from ``COOKIE`` (the
filter's defaults: ``sid``, ``/``, no domain, secure, HttpOnly, ``Lax``). Django's defaults
differ (``SESSION_COOKIE_SECURE = False``); re-issuing the cookie with weaker attributes
would overwrite the filter's.

The keys and the token are held to the filter's and the companion's rules
(:mod:`edge_session.secret_rules`): a placeholder (``REPLACE-ME``) is always refused, a weak
key or token only with ``ALLOW_DEVELOPMENT_SECRETS`` (never in production), which warns.

Saving sends only the keys that changed since the session was loaded (one atomic
``$set``/``$unset``), with the lifetime from ``get_expiry_age()`` and
``get_expire_at_browser_close()``. The companion expires sessions itself, so
``clear_expired`` does nothing. A companion that cannot answer raises: ``CreateError`` when a
session cannot be made, ``UpdateError`` (``SessionInterrupted`` in the middleware) when one
cannot be saved, :class:`~edge_session.companion.CompanionUnavailable` when one cannot be read
or deleted. A failed read never looks like an empty session that a save would then write back.

:class:`SessionMiddleware` is Django's, except for a request that carries the session cookie's
name more than once with different values (a cookie planted next to the user's own): Django
would silently use the last one; this one opens no session, looks nothing up and leaves the
cookies alone, as the filter does. The engine refuses to run under Django's own middleware.
With ``LEGACY``, the middleware also moves sessions from the app's previous engine as their
browsers come back, and :func:`import_legacy_sessions` (``manage.py edge_session_import``) moves
them ahead of time (:mod:`edge_session.migration`). Values go through ``SESSION_SERIALIZER``
(:mod:`edge_session.django_values`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponseBase

from .assertion import DEFAULT_HEADER, AssertionVerifier, WriteLog, header_meta_key
from .companion import CompanionClient, CompanionError, Session, snapshot, user_of
from .cookies import CookieSettings, same_site_attribute, session_cookie
from .django_legacy import LegacyEngine
from .django_values import Values, serializer_class, values
from .migration import ImportReport, LegacyRecord, remaining_seconds, run_import
from .secret_rules import SecretPolicy
from .token import ConfigError, Keyring

__all__ = ["SessionMiddleware", "SessionStore", "companion_client", "import_legacy_sessions"]


@dataclass(frozen=True)
class _Settings:
    """``EDGE_SESSION``, parsed once per value."""

    client: CompanionClient
    keyring: Keyring
    user_key: str | None
    absolute_ttl_seconds: int | None
    legacy: LegacyEngine | None
    assertion: AssertionVerifier | None = None
    assertion_meta: str = header_meta_key(DEFAULT_HEADER)


_writes = WriteLog()
_configured: dict[str, _Settings] = {}
_DJANGO_MIDDLEWARE = "django.contrib.sessions.middleware.SessionMiddleware"
_COOKIE_SOURCE = 'EDGE_SESSION["COOKIE"]'


def _connection() -> _Settings:
    """The client, keys and options for the current ``EDGE_SESSION`` setting (built once per value)."""
    if _DJANGO_MIDDLEWARE in getattr(settings, "MIDDLEWARE", ()):
        raise ImproperlyConfigured(
            f"MIDDLEWARE lists {_DJANGO_MIDDLEWARE}: with SESSION_ENGINE {__name__!r} use"
            f" {__name__}.SessionMiddleware in its place (it refuses a request carrying two different"
            " session cookies instead of using the last one, as the filter does)"
        )
    conf = getattr(settings, "EDGE_SESSION", None)
    if not isinstance(conf, Mapping):
        raise ImproperlyConfigured("EDGE_SESSION must be a dict with COMPANION_URL, COMPANION_TOKEN and KEYS")
    app_cookie = _app_cookie()
    cache_key = json.dumps([conf, app_cookie], sort_keys=True, default=str)
    if cache_key not in _configured:
        development = conf.get("ALLOW_DEVELOPMENT_SECRETS", False)
        if not isinstance(development, bool):
            raise ImproperlyConfigured("EDGE_SESSION ALLOW_DEVELOPMENT_SECRETS must be True or False")
        policy = SecretPolicy(development, 'EDGE_SESSION["ALLOW_DEVELOPMENT_SECRETS"]')
        try:
            client = CompanionClient(
                str(conf["COMPANION_URL"]), str(conf["COMPANION_TOKEN"]), float(conf.get("TIMEOUT", 1.0)), policy
            )
            keyring = Keyring.from_config(conf["KEYS"], policy)
        except KeyError as missing:
            raise ImproperlyConfigured(f"EDGE_SESSION needs {missing.args[0]}") from None
        except (ConfigError, ValueError) as error:
            raise ImproperlyConfigured(f"EDGE_SESSION: {error}") from None
        try:
            cookie = CookieSettings.from_config(conf.get("COOKIE"), _COOKIE_SOURCE)
            cookie.refuse_differences(app_cookie, _COOKIE_SOURCE)
        except ConfigError as error:
            raise ImproperlyConfigured(str(error)) from None
        user_key = conf.get("USER_KEY", "_auth_user_id")
        absolute = conf.get("ABSOLUTE_TTL_SECONDS")
        if absolute is not None and (type(absolute) is not int or absolute <= 0):
            raise ImproperlyConfigured(
                'EDGE_SESSION["ABSOLUTE_TTL_SECONDS"] must be a positive number of seconds or None'
            )
        legacy = LegacyEngine.from_config(conf.get("LEGACY"), settings.SESSION_COOKIE_NAME)
        assertion_keys = conf.get("ASSERTION_KEYS")
        try:
            verifier = None if assertion_keys is None else AssertionVerifier.from_config(assertion_keys, policy)
        except ConfigError as error:
            raise ImproperlyConfigured(f'EDGE_SESSION["ASSERTION_KEYS"]: {error}') from None
        header = conf.get("ASSERTION_HEADER", DEFAULT_HEADER)
        if not isinstance(header, str) or not header:
            raise ImproperlyConfigured('EDGE_SESSION["ASSERTION_HEADER"] must be a header name')
        _configured[cache_key] = _Settings(
            client,
            keyring,
            None if user_key is None else str(user_key),
            absolute,
            legacy,
            verifier,
            header_meta_key(header),
        )
    values(serializer_class(settings.SESSION_SERIALIZER))  # refused at start when not JSON
    return _configured[cache_key]


def _app_cookie() -> dict[str, tuple[str, object]]:
    """The attributes Django's SessionMiddleware gives the session cookie, by the filter's
    field names, with the setting each comes from."""
    return {
        "name": ("SESSION_COOKIE_NAME", settings.SESSION_COOKIE_NAME),
        "path": ("SESSION_COOKIE_PATH", settings.SESSION_COOKIE_PATH),
        "domain": ("SESSION_COOKIE_DOMAIN", settings.SESSION_COOKIE_DOMAIN or None),
        "secure": ("SESSION_COOKIE_SECURE", bool(settings.SESSION_COOKIE_SECURE)),
        "http_only": ("SESSION_COOKIE_HTTPONLY", bool(settings.SESSION_COOKIE_HTTPONLY)),
        "same_site": ("SESSION_COOKIE_SAMESITE", same_site_attribute(settings.SESSION_COOKIE_SAMESITE)),
    }


class SessionStore(SessionBase):
    """Django's ``SessionBase`` over the companion's ``/v1`` API."""

    _session_key: str | None  # SessionBase's property, declared for the type checker

    def __init__(self, session_key: str | None = None) -> None:
        super().__init__(session_key)
        # The data as the companion last showed it: what a save compares against.
        self._stored: dict[str, Any] | None = None
        self._bound_user: str | None = None
        # The request's assertion and Host, offered by the middleware.
        self._offered: tuple[str | None, str | None] | None = None
        self.loaded_from_assertion = False

    def offer_assertion(self, token: str | None, host: str | None) -> None:
        """The request's signed assertion and ``Host``: :meth:`load` takes the session from
        it when it verifies, names this session and is not older than our last write."""
        self._offered = (token, host)

    def _asserted(self, session_id: str) -> Session | None:
        verifier = _connection().assertion
        if verifier is None or self._offered is None:
            return None
        asserted = verifier.verify(self._offered[0], audience=self._offered[1])
        if asserted is None or asserted.session_id != session_id or not _writes.allows(asserted):
            return None
        return asserted.session()

    @property
    def bound_user(self) -> str | None:
        """The user the session is bound to in the companion ("log out everywhere"), once loaded."""
        return self._bound_user

    def _session_id(self, session_key: str | None) -> str | None:
        """The companion id a session key carries, if a configured key signed it."""
        if not session_key:
            return None
        return _connection().keyring.verify(session_key)

    @property
    def _codec(self) -> Values:
        return values(self.serializer)

    def _remember(self, session: Session) -> None:
        self._session_key = _connection().keyring.sign(session.id)
        self._stored = snapshot(session.data)
        self._bound_user = session.user

    def load(self) -> dict[str, Any]:
        session_id = self._session_id(self.session_key)
        session = self._asserted(session_id) if session_id else None
        self.loaded_from_assertion = session is not None
        if session is None and session_id:
            session = _connection().client.get(session_id)
        if session is None:
            # Unknown, expired or forged: a new session, never created on load.
            self._session_key = None
            self._stored = None
            return {}
        self._remember(session)
        return self._codec.from_stored(session.data)

    def exists(self, session_key: str | None) -> bool:
        session_id = self._session_id(session_key)
        return session_id is not None and _connection().client.get(session_id) is not None

    def create(self) -> None:
        self.save(must_create=True)
        self.modified = True

    def _lifetime(self) -> tuple[int, bool]:
        return self.get_expiry_age(), self.get_expire_at_browser_close()

    def save(self, must_create: bool = False) -> None:
        data = self._get_session(no_load=must_create)
        stored_form = self._codec.to_stored(data)
        ttl, browser = self._lifetime()
        conf = _connection()
        client = conf.client
        session_id = None if must_create else self._session_id(self.session_key)
        if ttl <= 0:
            # Already expired (set_expiry in the past): what Django would store is a session
            # nobody can load, so nothing is stored and any stored copy goes.
            if session_id is not None:
                try:
                    self._delete_id(session_id)
                except CompanionError as error:
                    raise UpdateError(str(error)) from error
            return
        if session_id is None:
            try:
                created = client.create(
                    stored_form,
                    user=user_of(data, conf.user_key),
                    ttl_seconds=ttl,
                    browser_session=browser,
                    absolute_ttl_seconds=conf.absolute_ttl_seconds,
                )
            except CompanionError as error:
                raise CreateError(str(error)) from error
            _writes.record(created)
            self._remember(created)
            return
        stored = self._stored if self._stored is not None else self._stored_data(session_id)
        try:
            updated = client.write(
                session_id,
                stored,
                stored_form,
                user=user_of(data, conf.user_key),
                bound_user=self._bound_user,
                ttl_seconds=ttl,
                browser_session=browser,
            )
        except CompanionError as error:
            raise UpdateError(str(error)) from error
        if updated is None:
            # Deleted meanwhile (a logout in another request): never resurrect it.
            raise UpdateError("the session no longer exists")
        _writes.record(updated)
        self._stored = snapshot(updated.data)
        self._bound_user = updated.user

    def _stored_data(self, session_id: str) -> dict[str, Any]:
        try:
            session = _connection().client.get(session_id)
        except CompanionError as error:
            raise UpdateError(str(error)) from error
        if session is None:
            raise UpdateError("the session no longer exists")
        return snapshot(session.data)

    def _delete_id(self, session_id: str) -> None:
        _connection().client.delete(session_id)
        _writes.record_deletion(session_id)
        if self._session_id(self.session_key) == session_id:
            self._stored = None

    def delete(self, session_key: str | None = None) -> None:
        session_id = self._session_id(self.session_key if session_key is None else session_key)
        if session_id is not None:
            self._delete_id(session_id)

    def cycle_key(self) -> None:
        """A new id for the same data through the companion's cycle: the old id is gone at once."""
        data = self._session
        session_id = self._session_id(self.session_key)
        try:
            cycled = _connection().client.cycle(session_id) if session_id else None
        except CompanionError as error:
            raise CreateError(str(error)) from error
        if session_id is not None:
            _writes.record_deletion(session_id)
        if cycled is None:
            self.create()
        else:
            _writes.record(cycled)
            self._remember(cycled)
            self.modified = True
        self._session_cache = data

    async def acycle_key(self) -> None:
        await sync_to_async(self.cycle_key)()

    @classmethod
    def clear_expired(cls) -> None:
        """Nothing to do: the companion's TTL index removes expired sessions."""


class SessionMiddleware(DjangoSessionMiddleware):
    """Django's ``SessionMiddleware``, reading the session cookie as the filter does, and moving
    sessions from the legacy engine (``EDGE_SESSION["LEGACY"]``) as their browsers come back.

    Django's ``request.COOKIES`` keeps the last of several cookies of one name. When the
    session cookie's name comes with different values, this opens an empty session without
    looking anything up, and removes the name from ``request.COOKIES`` so that Django's
    ``process_response`` does not clear it (that would delete the user's own cookie and leave
    the planted one). The same value repeated is one cookie. The legacy cookie follows the same
    rule.
    """

    def __init__(self, get_response: Any) -> None:
        super().__init__(get_response)
        if self.SessionStore is SessionStore:
            _connection()  # a bad configuration fails at start, not at the first request

    def process_request(self, request: HttpRequest) -> None:
        name = settings.SESSION_COOKIE_NAME
        header = request.META.get("HTTP_COOKIE")
        found = session_cookie(header, name)
        if found.conflicting:
            request.COOKIES.pop(name, None)
        request.session = self.SessionStore(found.value)
        if isinstance(request.session, SessionStore) and not found.conflicting:
            conf = _connection()
            if conf.assertion is not None:
                request.session.offer_assertion(request.META.get(conf.assertion_meta), request.META.get("HTTP_HOST"))
            self._move_legacy(request, header)

    @staticmethod
    def _move_legacy(request: HttpRequest, header: str | None) -> None:
        """With a legacy cookie and no valid edge-session session, the legacy session's data
        (or the session a batch import moved it to) becomes this request's session."""
        legacy = _connection().legacy
        cookie = session_cookie(header, legacy.cookie_name) if legacy else None
        if legacy is None or cookie is None or cookie.value is None:
            return
        current = request.session
        current._get_session()  # loads: a valid token keeps its session key
        if current.session_key is None:
            moved = legacy.read(cookie.value)
            if moved is None:
                # Unknown, expired or unreadable (a missing SECRET_KEY_FALLBACKS entry, a wrong
                # DATABASE): left as it is, so fixing the settings still moves it.
                return
            if moved.moved_to is not None:
                target = SessionStore(moved.moved_to)
                target._get_session()
                if target.session_key is not None:
                    target.modified = True  # the response carries its cookie
                    request.session = target
            else:
                fresh = SessionStore()
                fresh.update(moved.data)  # saved by process_response, bound to its user
                request.session = fresh
        # Retired once the response is decided; a 5xx leaves the legacy session for a retry.
        request._edge_session_legacy = (legacy, cookie.value)

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        response = super().process_response(request, response)
        pending: tuple[LegacyEngine, str] | None = getattr(request, "_edge_session_legacy", None)
        if pending is not None and response.status_code < 500:
            legacy, key = pending
            legacy.retire(key)
            legacy.clear_cookie(response)
        return response


def companion_client() -> CompanionClient:
    """The companion client ``EDGE_SESSION`` configures (the management commands use it)."""
    return _connection().client


def import_legacy_sessions(
    out: Callable[[str], None], *, dry_run: bool = False, progress_every: int = 1000
) -> ImportReport:
    """Moves every live session of the legacy engine ahead of time (``manage.py
    edge_session_import``): see :mod:`edge_session.migration`."""
    conf = _connection()
    if conf.legacy is None:
        raise ImproperlyConfigured('EDGE_SESSION["LEGACY"] names no legacy engine to import from')
    source = conf.legacy.batch_source()
    codec = values(serializer_class(settings.SESSION_SERIALIZER))

    def create(record: LegacyRecord) -> str:
        data = record.data or {}
        browser = data.get("_session_expiry") == 0 or bool(settings.SESSION_EXPIRE_AT_BROWSER_CLOSE)
        session = conf.client.create(
            codec.to_stored(data),
            user=user_of(data, conf.user_key),
            ttl_seconds=remaining_seconds(record.expires_at),
            browser_session=browser,
            absolute_ttl_seconds=conf.absolute_ttl_seconds,
        )
        return conf.keyring.sign(session.id)

    def discard(token: str) -> None:
        session_id = conf.keyring.verify(token)
        if session_id is not None:
            conf.client.delete(session_id)

    return run_import(source, create, discard, out, dry_run=dry_run, progress_every=progress_every)
