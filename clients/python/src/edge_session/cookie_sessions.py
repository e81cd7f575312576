"""Sessions kept whole in the cookie, as the filter's cookie store mode keeps them: what the
Django engine (:mod:`edge_session.django_cookie`) and the Flask interface
(:mod:`edge_session.flask_cookie`) share.

The cookie's value is the codec's (:mod:`edge_session.cookie_store`; docs/architecture.md,
"Cookie store"): the filter, a Django app and a Flask app open each other's cookies with the
same ``cookie_store.keys``. Opening refuses anything the filter refuses (another version, an
unknown or removed key, a changed byte, a payload past its ``expires_at`` or
``absolute_expires_at`` whatever ``Max-Age`` the client kept). Sealing follows the filter's
lifetime rules:

- a new session (and a cycled one) gets a new id: 32 bytes from :mod:`secrets`, in the 43
  characters of unpadded base64url the filter's ids have;
- ``created_at`` and ``absolute_expires_at`` survive every write and cycle, so the absolute
  limit holds however active the session is;
- ``expires_at`` is the write's time plus the lifetime, never after ``absolute_expires_at``;
- a cookie whose ``name=value`` pair would pass 4096 bytes is refused
  (:class:`~edge_session.cookie_store.SessionTooLarge`), as the filter refuses it; nothing is
  split over several cookies.

There is no server-side record: a copy of a cookie taken before a logout or a cycle stays
valid for these apps until its ``expires_at``. The filter refuses replays of the ids it ended
itself (docs/security.md, "Cookie store").
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .cookie_store import CookieError, CookieKeyring, CookiePayload
from .secret_rules import ConfigError, SecretPolicy
from .token import decode_secret

__all__ = ["CookieSessions", "new_session_id", "now"]

SESSION_ID_BYTES = 32


def now() -> int:
    """The time in Unix seconds (a payload's unit: a cookie's ``Max-Age`` has no finer one)."""
    return int(time.time())


def new_session_id() -> str:
    """A fresh session id from the operating system's CSPRNG, shaped as the filter's."""
    return base64.urlsafe_b64encode(secrets.token_bytes(SESSION_ID_BYTES)).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class CookieSessions:
    """The key ring, the cookie's name and the absolute limit: everything a seal or an open
    needs besides the session."""

    keyring: CookieKeyring
    cookie_name: str
    absolute_ttl_seconds: int | None = None

    @classmethod
    def from_config(
        cls,
        keys: object,
        policy: SecretPolicy,
        cookie_name: str,
        absolute_ttl_seconds: int | None = None,
        *,
        source: str,
        other_keys: Iterable[tuple[str, object]] = (),
    ) -> CookieSessions:
        """From the filter's ``cookie_store.keys`` (``source`` names the setting in errors) and
        an absolute lifetime the caller checked.
        ``other_keys`` are the app's other key lists (setting name, list): a cookie key whose
        secret is also one of theirs is refused, as the filter refuses it (one secret, one use)."""
        if not isinstance(keys, list | tuple):
            raise ConfigError(f"{source} must be a list of {{'id': ..., 'secret': <base64>}}, as cookie_store.keys")
        try:
            keyring = CookieKeyring.from_config(keys, policy)
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None
        used_elsewhere = {
            (setting, secret) for setting, entries in other_keys for secret in _secrets_of(entries) if secret is not None
        }
        for index, key in enumerate(keyring.keys):
            for setting, secret in used_elsewhere:
                if secrets.compare_digest(key.secret, secret):
                    raise ConfigError(
                        f"{source}[{index}].secret is also a secret of {setting}: the cookie store needs keys of its own"
                    )
        return cls(keyring, cookie_name, absolute_ttl_seconds)

    def open(self, value: str | None) -> CookiePayload | None:
        """The live session a cookie value holds; None for no cookie, or one the filter would
        refuse (``invalid`` or ``expired``)."""
        if not value:
            return None
        try:
            return self.keyring.open(value, now())
        except CookieError:
            return None

    def seal(
        self,
        previous: CookiePayload | None,
        data: Mapping[str, Any],
        *,
        user: str | None,
        ttl_seconds: int,
        browser_session: bool,
        new_id: bool = False,
    ) -> tuple[str, CookiePayload]:
        """The cookie value for ``data`` written now, and its payload. ``previous`` is the
        session as opened (None: a new session); ``new_id`` cycles it. A lifetime of 0 or less
        seals a payload that is already expired, which no opener accepts. Raises
        :class:`~edge_session.cookie_store.SessionTooLarge` when the cookie would not fit."""
        written = now()
        if previous is None:
            created_at = written
            absolute = None if self.absolute_ttl_seconds is None else written + self.absolute_ttl_seconds
        else:
            created_at, absolute = previous.created_at, previous.absolute_expires_at
        expires_at = written + ttl_seconds
        if absolute is not None:
            expires_at = min(expires_at, absolute)
        payload = CookiePayload(
            id=new_session_id() if previous is None or new_id else previous.id,
            data=dict(data),
            user=user,
            created_at=created_at,
            issued_at=written,
            expires_at=expires_at,
            ttl_seconds=max(ttl_seconds, 0),
            browser_session=browser_session,
            absolute_expires_at=absolute,
        )
        return self.keyring.seal(self.cookie_name, payload), payload


def _secrets_of(entries: object) -> Iterable[bytes | None]:
    """The decoded secrets of a key list as configured (malformed entries are the other
    setting's own parser's business)."""
    if not isinstance(entries, list | tuple):
        return
    for entry in entries:
        secret = entry.get("secret") if isinstance(entry, Mapping) else None
        yield decode_secret(secret) if isinstance(secret, str) else None


def bound_user(previous: CookiePayload | None, loaded: str | None, now: str | None) -> str | None:
    """The user a save seals: the framework's own (``now``, from its data key) when it changed
    since the cookie was read (a login or a logout through the framework), else the user the
    cookie already carried, which the filter or another app may have bound. Sealing the
    framework's key on every save would unbind a user the legacy app logged in."""
    if previous is None or now != loaded:
        return now
    return previous.user
