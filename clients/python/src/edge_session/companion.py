"""A small client of the companion's ``/v1`` API (docs/architecture.md, "Companion API"), on the
standard library.

Every call has a timeout. A session that does not exist is ``None``; a companion that cannot
answer raises :class:`CompanionUnavailable`; a request it refuses raises :class:`CompanionRefused`.
Nothing here ever turns a failure into an empty session.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .handles import is_handle
from .secret_rules import ConfigError, SecretPolicy, token_weakness
from .token import is_session_id

JsonObject = dict[str, Any]


class CompanionError(Exception):
    """The companion did not do what was asked."""


class CompanionUnavailable(CompanionError):
    """No usable answer: connection refused or reset, timeout, 5xx, or a body that is not a session."""


class CompanionRefused(CompanionError):
    """The companion refused the request (400, 401, 413): a client or configuration error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"companion answered {status} {code}: {message}")
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Session:
    """A session as the companion returns it."""

    id: str
    data: JsonObject
    user: str | None
    ttl_seconds: int
    browser_session: bool
    expires_at: str
    #: When it was last written (RFC 3339), to order it against a signed assertion.
    updated_at: str | None = None

    @classmethod
    def from_json(cls, body: Any) -> Session:
        try:
            session = cls(
                id=body["id"],
                data=body["data"],
                user=body["user"],
                ttl_seconds=body["ttl_seconds"],
                browser_session=body["browser_session"],
                expires_at=body["expires_at"],
                updated_at=body.get("updated_at"),
            )
        except (KeyError, TypeError):
            raise CompanionUnavailable("the companion answered something that is not a session") from None
        if not (isinstance(session.id, str) and is_session_id(session.id) and isinstance(session.data, dict)):
            raise CompanionUnavailable("the companion answered something that is not a session")
        return session


def session_handle(session_id: str) -> str:
    """The non-secret handle that names a session in a user's listing (``proto::SessionId::handle``).

    The unpadded base64url of the first 16 bytes of SHA-256(``"edge-session/handle/v1|"`` + id):
    22 characters. One-way, so a listing shown to a user never carries an id that opens a session.
    """
    digest = hashlib.sha256(b"edge-session/handle/v1|" + session_id.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode("ascii")


def _is_handle(value: Any) -> bool:
    return (
        isinstance(value, str)
        and len(value) == 22
        and all(c.isascii() and (c.isalnum() or c in "-_") for c in value)
    )


@dataclass(frozen=True)
class SessionSummary:
    """One live session of a user as the listing shows it: a handle and metadata, never an id or data."""

    handle: str
    created_at: str
    last_seen_at: str
    expires_at: str
    browser_session: bool
    user_agent: str | None
    client_address: str | None

    @classmethod
    def from_json(cls, body: Any) -> SessionSummary:
        try:
            summary = cls(
                handle=body["handle"],
                created_at=body["created_at"],
                last_seen_at=body["last_seen_at"],
                expires_at=body["expires_at"],
                browser_session=body["browser_session"],
                user_agent=body.get("user_agent"),
                client_address=body.get("client_address"),
            )
        except (KeyError, TypeError, AttributeError):
            raise CompanionUnavailable("the companion answered something that is not a session summary") from None
        if not _is_handle(summary.handle):
            raise CompanionUnavailable("the companion answered something that is not a session summary")
        return summary


def snapshot(data: Mapping[str, Any]) -> JsonObject:
    """A deep copy of session data as JSON would carry it (tuples become lists)."""
    copied: JsonObject = json.loads(json.dumps(data))
    return copied


def changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[JsonObject, list[str]]:
    """The keys to set and to unset that turn ``before`` into ``after``.

    Only these go to the companion, as one atomic ``$set``/``$unset``: a writer never replaces
    keys it did not change, so concurrent requests changing different keys lose nothing.
    Values compare as JSON text, so ``1`` and ``True`` differ.
    """

    def text(value: Any) -> str:
        return json.dumps(value, sort_keys=True)

    set_ = {k: v for k, v in after.items() if k not in before or text(before[k]) != text(v)}
    unset = [k for k in before if k not in after]
    return set_, unset


def user_of(data: Mapping[str, Any], key: str | None) -> str | None:
    """The user a session's data names under ``key`` (e.g. Django's ``_auth_user_id``), as text."""
    value = data.get(key) if key else None
    return None if value is None else str(value)


class CompanionClient:
    """The ``/v1`` calls, with the bearer token and a timeout (seconds) on every one."""

    def __init__(self, url: str, token: str, timeout: float = 1.0, policy: SecretPolicy | None = None) -> None:
        """``token`` is held to the companion's rules (:mod:`edge_session.secret_rules`) under
        ``policy``: a placeholder or weak token raises :class:`ConfigError`."""
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"the companion URL must be http(s): {url!r}")
        if not token or not all("!" <= char <= "~" for char in token):
            raise ConfigError("the companion token must be non-empty visible ASCII without spaces")
        (policy or SecretPolicy()).check("the companion token", token_weakness(token))
        self.url = url.rstrip("/")
        self._token = token
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"CompanionClient({self.url!r}, timeout={self.timeout})"

    def get(self, session_id: str) -> Session | None:
        return self._session("GET", f"/v1/sessions/{session_id}")

    def create(
        self,
        data: Mapping[str, Any],
        *,
        user: str | None = None,
        ttl_seconds: int | None = None,
        browser_session: bool | None = None,
        absolute_ttl_seconds: int | None = None,
    ) -> Session:
        """A new session. ``absolute_ttl_seconds`` caps its whole life: no save or touch keeps it
        past ``created_at`` plus that (sent only when given: older companions refuse the field)."""
        body: JsonObject = {"data": dict(data)}
        for name, value in (
            ("user", user),
            ("ttl_seconds", ttl_seconds),
            ("browser_session", browser_session),
            ("absolute_ttl_seconds", absolute_ttl_seconds),
        ):
            if value is not None:
                body[name] = value
        session = self._session("POST", "/v1/sessions", body)
        if session is None:
            raise CompanionUnavailable("the companion answered 404 to a create")
        return session

    def patch(
        self,
        session_id: str,
        *,
        set: Mapping[str, Any] | None = None,  # noqa: A002 - the API's field name
        unset: list[str] | None = None,
        user: str | None = None,
        ttl_seconds: int | None = None,
        browser_session: bool | None = None,
        touch: bool = False,
    ) -> Session | None:
        body: JsonObject = {}
        for name, value in (
            ("set", dict(set) if set else None),
            ("unset", unset or None),
            ("user", user),
            ("ttl_seconds", ttl_seconds),
            ("browser_session", browser_session),
            ("touch", touch or None),
        ):
            if value is not None:
                body[name] = value
        return self._session("PATCH", f"/v1/sessions/{session_id}", body)

    def write(
        self,
        session_id: str,
        stored: Mapping[str, Any],
        data: Mapping[str, Any],
        *,
        user: str | None,
        bound_user: str | None,
        ttl_seconds: int,
        browser_session: bool,
    ) -> Session | None:
        """Saves ``data`` over what the companion ``stored``: only the changed keys, the user only
        when it changed, and the lifetime. None if the session is gone (never re-created)."""
        set_, unset = changes(stored, data)
        return self.patch(
            session_id,
            set=set_,
            unset=unset,
            user=user if user != bound_user else None,
            ttl_seconds=ttl_seconds,
            browser_session=browser_session,
        )

    def cycle(self, session_id: str) -> Session | None:
        """A new id for the same data; the old id is gone. None if there was no such session."""
        return self._session("POST", f"/v1/sessions/{session_id}/cycle")

    def delete(self, session_id: str) -> None:
        self._call("DELETE", f"/v1/sessions/{session_id}")

    def user_sessions(self, user: str) -> list[SessionSummary]:
        """The user's live sessions, most recently seen first, each named by its handle
        (:func:`session_handle` of the id tells which one is the current session)."""
        _, body = self._call("GET", f"/v1/users/{urllib.parse.quote(user, safe='')}/sessions")
        if not isinstance(body, list):
            raise CompanionUnavailable("the companion answered something that is not a list")
        return [SessionSummary.from_json(item) for item in body]

    def user_session_listing(self, user: str) -> list[JsonObject]:
        """The user's live sessions as the companion lists them, one JSON object each: with the
        handle API, ``{handle, created_at, last_seen_at, expires_at, browser_session, user_agent,
        client_address}`` and never an id. The operator commands read only those fields, so they
        print nothing secret whatever the companion's version lists."""
        _, body = self._call("GET", _user_path(user))
        if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
            raise CompanionUnavailable("the companion answered something that is not a list of sessions")
        return body

    def delete_user_sessions(self, user: str) -> int:
        _, body = self._call("DELETE", f"/v1/users/{urllib.parse.quote(user, safe='')}/sessions")
        return _deleted_count(body)

    def end_user_session(self, user: str, handle: str) -> bool:
        """Ends the session of ``user`` named by ``handle``; False when the user has no such
        session (already ended, expired, or another user's)."""
        status, _ = self._call("DELETE", f"{_user_path(user)}/{_checked_handle(handle)}")
        return status != 404

    def end_user_sessions_except(self, user: str, handle: str) -> int:
        """Ends every session of ``user`` but the one named by ``handle`` ("log out my other
        devices"); the number ended."""
        _, body = self._call("DELETE", f"{_user_path(user)}?except={_checked_handle(handle)}")
        return _deleted_count(body)

    def _session(self, method: str, path: str, body: JsonObject | None = None) -> Session | None:
        status, answer = self._call(method, path, body)
        return None if status == 404 else Session.from_json(answer)

    def _call(self, method: str, path: str, body: JsonObject | None = None) -> tuple[int, Any]:
        """``(status, parsed body)`` for 2xx and 404; raises for everything else."""
        payload = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        request = urllib.request.Request(self.url + path, data=payload, method=method)
        request.add_header("authorization", f"Bearer {self._token}")
        request.add_header("accept", "application/json")
        if payload is not None:
            request.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - http(s) only, checked above
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        except (OSError, ValueError, http.client.HTTPException) as error:  # refused, reset, timeout, bad reply
            raise CompanionUnavailable(f"the companion could not be reached ({method}): {error}") from error
        if status == 404 or status == 204:
            return status, None
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            raise CompanionUnavailable(f"the companion answered {status} with a body that is not JSON") from None
        if 200 <= status < 300:
            return status, parsed
        if status in (400, 401, 413):
            answer = parsed if isinstance(parsed, dict) else {}
            raise CompanionRefused(status, str(answer.get("error", "")), str(answer.get("message", "")))
        raise CompanionUnavailable(f"the companion answered {status}")


def _user_path(user: str) -> str:
    return f"/v1/users/{urllib.parse.quote(user, safe='')}/sessions"


def _checked_handle(handle: str) -> str:
    """A handle fit for a URL; anything else is refused before a call is made."""
    if not is_handle(handle):
        raise ValueError(f"not a session handle (22 base64url characters): {handle!r}")
    return handle


def _deleted_count(body: Any) -> int:
    count = body.get("deleted") if isinstance(body, dict) else None
    if type(count) is not int or count < 0:
        raise CompanionUnavailable("the companion answered something that is not a count")
    return count
