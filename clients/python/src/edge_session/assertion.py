"""Verifying the filter's signed session assertion (docs/architecture.md, "Injected headers";
the reasoning in docs/security.md, "Session assertion"). Standard library only.

The filter sends ``x-session-assertion`` for a request with a valid session: a compact JWS
(HS256) whose header names the key (``kid``) and whose claims are the injected session
(``sid``, ``user``, ``data``, ``expires``, ``browser``, ``ttl_seconds``, ``updated_at``,
``state`` ``"valid"``), the issuer ``"edge-session"``, the request's authority (``aud``), ``iat`` and
a short ``exp``::

    verifier = AssertionVerifier.from_config([{"id": "a2", "secret": "<base64>"}])
    asserted = verifier.verify(request.headers.get("x-session-assertion"), audience=request.host)
    if asserted is not None:
        ...  # asserted.session_id, asserted.user, asserted.data

Anything that does not verify gives ``None``, never an exception: a forged, expired, truncated
or foreign assertion is as good as none. Keys rotate as the filter's ``assertion.keys`` do: list
the new key and the old ones; each assertion names its key.

:class:`WriteLog` keeps a process's own writes so that an engine never takes an assertion older
than a write it made (read-your-writes).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .companion import Session
from .secret_rules import SecretPolicy
from .token import Keyring, is_session_id

__all__ = ["Assertion", "AssertionVerifier", "WriteLog", "DEFAULT_HEADER", "ISSUER"]

DEFAULT_HEADER = "x-session-assertion"
ISSUER = "edge-session"
#: The filter never sends a header over 64 KiB (``max_header_bytes``).
MAX_ASSERTION_LEN = 65536
#: Clock difference allowed between the proxy and the app, in seconds.
LEEWAY_SECONDS = 5
_DELETED = 1 << 126
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_RFC3339 = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})")


def _decode(segment: str) -> bytes | None:
    """Unpadded base64url, canonical only (no stray bits), else None."""
    if not _SEGMENT.fullmatch(segment) or len(segment) % 4 == 1:
        return None
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        return None
    return raw if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") == segment else None


def _json_object(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def instant(text: str) -> int | None:
    """An RFC 3339 time as nanoseconds since the epoch (sub-microsecond digits kept), or None."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    whole, fraction, offset = match.groups()
    try:
        seconds = datetime.fromisoformat(whole + ("+00:00" if offset == "Z" else offset)).timestamp()
    except ValueError:
        return None
    return int(seconds) * 1_000_000_000 + int((fraction or "").ljust(9, "0"))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Assertion:
    """A verified assertion: the session as the filter injected it for this request."""

    session_id: str
    user: str | None
    data: dict[str, Any]
    expires: str
    browser: bool
    ttl_seconds: int
    updated_at: str
    audience: str
    issued_at: int
    expires_at: int
    key_id: str

    def session(self) -> Session:
        """The session as the companion would have answered it."""
        return Session(
            id=self.session_id,
            data=self.data,
            user=self.user,
            ttl_seconds=self.ttl_seconds,
            browser_session=self.browser,
            expires_at=self.expires,
            updated_at=self.updated_at,
        )

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any], key_id: str) -> Assertion | None:
        """The claims, type-checked, or None."""
        sid, user, data = claims.get("sid"), claims.get("user"), claims.get("data")
        expires, updated, aud = claims.get("expires"), claims.get("updated_at"), claims.get("aud")
        iat, exp, ttl, browser = claims.get("iat"), claims.get("exp"), claims.get("ttl_seconds"), claims.get("browser")
        if not (
            claims.get("iss") == ISSUER
            and claims.get("state") == "valid"
            and isinstance(sid, str)
            and is_session_id(sid)
            and (user is None or isinstance(user, str))
            and isinstance(data, dict)
            and isinstance(expires, str)
            and isinstance(updated, str)
            and instant(updated) is not None
            and isinstance(aud, str)
            and isinstance(browser, bool)
            and _is_int(iat)
            and _is_int(exp)
            and _is_int(ttl)
        ):
            return None
        assert isinstance(iat, int) and isinstance(exp, int) and isinstance(ttl, int)  # for mypy
        return cls(sid, user, data, expires, browser, ttl, updated, aud, iat, exp, key_id)


class AssertionVerifier:
    """The assertion keys (the filter's ``assertion.keys``): every listed key verifies."""

    def __init__(self, keys: Keyring) -> None:
        self._keys = keys

    @classmethod
    def from_config(cls, keys: Iterable[Mapping[str, str]], policy: SecretPolicy | None = None) -> AssertionVerifier:
        """From a list like the filter's ``assertion.keys``, held to the same secret rules."""
        return cls(Keyring.from_config(keys, policy))

    def __repr__(self) -> str:
        return f"AssertionVerifier({self._keys!r})"

    def verify(
        self, token: str | None, *, audience: str | None, now: float | None = None, leeway: int = LEEWAY_SECONDS
    ) -> Assertion | None:
        """The assertion if ``token`` is one the filter signed with a listed key for
        ``audience`` (the request's ``Host``) and it has not expired; None otherwise."""
        if not token or not audience or len(token) > MAX_ASSERTION_LEN:
            return None
        parts = token.split(".")
        if len(parts) != 3:
            return None
        header = _json_object(_decode(parts[0]))
        # Only HS256: an `alg` of "none" or an asymmetric name must never pick the check.
        if header is None or header.get("alg") != "HS256" or not isinstance(header.get("kid"), str):
            return None
        key = self._keys.key(header["kid"])
        signature = _decode(parts[2])
        if key is None or signature is None:
            return None
        expected = hmac.new(key.secret, f"{parts[0]}.{parts[1]}".encode("ascii"), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, signature):
            return None
        claims = _json_object(_decode(parts[1]))
        asserted = Assertion.from_claims(claims, key.id) if claims is not None else None
        if asserted is None or asserted.audience != audience:
            return None
        clock = time.time() if now is None else now
        if not (asserted.issued_at - leeway <= clock < asserted.expires_at + leeway):
            return None
        return asserted


class WriteLog:
    """The ``updated_at`` of this process's last write to each session, bounded: an assertion
    older than it is stale (it left the proxy's cache before the write reached it) and is not
    taken. A session pushed out of the log is taken on its assertion again, so the bound also
    bounds how many concurrently written sessions read their own writes from the assertion."""

    def __init__(self, max_sessions: int = 10_000) -> None:
        self._last: OrderedDict[str, int] = OrderedDict()
        self._max = max_sessions
        self._lock = threading.Lock()

    def record(self, session: Session) -> None:
        """Notes a session as this process just wrote it (create, save, cycle)."""
        at = instant(session.updated_at) if session.updated_at else None
        if at is None:
            return
        with self._lock:
            self._last[session.id] = max(at, self._last.get(session.id, at))
            self._last.move_to_end(session.id)
            while len(self._last) > self._max:
                self._last.popitem(last=False)

    def record_deletion(self, session_id: str) -> None:
        """Notes a session this process deleted (or cycled away): no assertion for it is taken
        again while the log holds it, so a logout is never undone by a proxy's cached copy."""
        with self._lock:
            self._last[session_id] = _DELETED
            self._last.move_to_end(session_id)
            while len(self._last) > self._max:
                self._last.popitem(last=False)

    def allows(self, asserted: Assertion) -> bool:
        """Whether the assertion is not older than this process's last write to its session."""
        at = instant(asserted.updated_at)
        with self._lock:
            last = self._last.get(asserted.session_id)
        return at is not None and (last is None or at >= last)


def header_meta_key(header: str) -> str:
    """The WSGI ``environ`` (Django ``META``) key of a request header."""
    return "HTTP_" + header.upper().replace("-", "_")
