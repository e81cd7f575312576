"""The cookie store's codec (docs/architecture.md, "Cookie store"), byte for byte as the filter
seals and opens it (``filter/src/store/cookie.rs``).

``v1.<kid>.<base64url(nonce || ciphertext || tag)>``: AES-256-GCM-SIV under a key derived from
the secret of ``kid`` (HMAC-SHA256(secret, ``"edge-session/cookie/v1/aead"``)), with the
associated data ``"edge-session/cookie/v1|" kid``. The plaintext is the session as compact JSON.
The first key seals, every key opens. Needs the ``cryptography`` package (the ``cookie``
extra); the rest of ``edge_session`` stays standard library only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV

from .secret_rules import ConfigError, SecretPolicy
from .token import Keyring as _SigningKeyring
from .token import is_session_id

__all__ = [
    "MAX_COOKIE_PAIR_BYTES",
    "CookieError",
    "CookieKey",
    "CookieKeyring",
    "CookiePayload",
    "SessionTooLarge",
    "pair_bytes",
    "pair_fits",
]

MAX_COOKIE_PAIR_BYTES = 4096
VERSION = "v1"
NONCE_BYTES = 12
_TAG_BYTES = 16
_AAD_DOMAIN = b"edge-session/cookie/v1|"
_AEAD_LABEL = b"edge-session/cookie/v1/aead"
_FRESH_LABEL = b"edge-session/cookie/v1/fresh"
_NEW_ID_LABEL = b"new-id|"
_NONCE_LABEL = b"nonce|"
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,16}")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_FIELDS = (
    "id",
    "data",
    "user",
    "created_at",
    "issued_at",
    "expires_at",
    "ttl_seconds",
    "browser_session",
    "absolute_expires_at",
)


class CookieError(ValueError):
    """Why a cookie value was refused; ``reason`` is the filter's ``OpenError`` in snake case
    (``too_long``, ``unknown_version``, ``malformed``, ``unknown_key``, ``bad_base64``,
    ``bad_tag``, ``bad_payload``, ``expired``) or, when sealing, ``too_large``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SessionTooLarge(CookieError):
    """A session whose cookie would not fit: its ``name=value`` pair would take ``size`` bytes,
    over the 4096 browsers keep per cookie. The filter refuses such a write too; nothing is
    split over several cookies."""

    def __init__(self, cookie_name: str, size: int) -> None:
        super().__init__("too_large")
        self.size = size
        self.args = (
            f"the session cookie {cookie_name!r} would take {size} bytes, over the {MAX_COOKIE_PAIR_BYTES}"
            " a browser keeps: keep less in the session (the session was not saved)",
        )


def pair_bytes(name: str, value: str) -> int:
    """The bytes of the cookie pair ``name=value``."""
    return len(name.encode("utf-8")) + 1 + len(value.encode("utf-8"))


def pair_fits(name: str, value: str) -> bool:
    """Whether ``name=value`` fits in the 4096 bytes browsers keep per cookie."""
    return pair_bytes(name, value) <= MAX_COOKIE_PAIR_BYTES


def _derive(secret: bytes, label: bytes) -> bytes:
    return hmac.new(secret, label, hashlib.sha256).digest()


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes | None:
    """Canonical unpadded base64url only, as the filter decodes it."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    return raw if _b64url(raw) == text else None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class CookiePayload:
    """What the cookie carries. Times are Unix seconds."""

    id: str
    data: dict[str, Any]
    user: str | None
    created_at: int
    issued_at: int
    expires_at: int
    ttl_seconds: int
    browser_session: bool
    absolute_expires_at: int | None = None

    def is_expired(self, now: int) -> bool:
        return self.expires_at <= now or (self.absolute_expires_at is not None and self.absolute_expires_at <= now)

    def to_json(self) -> bytes:
        """Compact JSON in the filter's order (fields as declared, object keys sorted), so the
        same payload seals to the same bytes on both sides."""

        def dump(value: object) -> str:
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True, allow_nan=False)

        body = ",".join(f"{dump(name)}:{dump(getattr(self, name))}" for name in _FIELDS)
        return ("{" + body + "}").encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes) -> CookiePayload:
        try:
            value = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise CookieError("bad_payload") from None
        if not isinstance(value, dict) or not set(value) <= set(_FIELDS):
            raise CookieError("bad_payload")
        value.setdefault("user", None)
        value.setdefault("absolute_expires_at", None)
        ok = (
            set(value) == set(_FIELDS)
            and isinstance(value["id"], str)
            and is_session_id(value["id"])
            and isinstance(value["data"], dict)
            and (value["user"] is None or isinstance(value["user"], str))
            and all(_is_int(value[name]) for name in ("created_at", "issued_at", "expires_at", "ttl_seconds"))
            and value["ttl_seconds"] >= 0
            and isinstance(value["browser_session"], bool)
            and (value["absolute_expires_at"] is None or _is_int(value["absolute_expires_at"]))
        )
        if not ok:
            raise CookieError("bad_payload")
        return cls(**value)


@dataclass(frozen=True)
class CookieKey:
    """A cookie key id and its secret. The secret never shows in ``repr``."""

    id: str
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not _KEY_ID.fullmatch(self.id):
            raise ConfigError(f"key id {self.id!r} must be 1 to 16 of A-Z a-z 0-9 _ -")

    def aead(self) -> AESGCMSIV:
        return AESGCMSIV(_derive(self.secret, _AEAD_LABEL))

    def aad(self) -> bytes:
        return _AAD_DOMAIN + self.id.encode("ascii")

    def fresh(self, label: bytes, request_id: bytes, now_nanos: int, counter: int) -> bytes:
        message = (
            label
            + len(request_id).to_bytes(4, "big")
            + request_id
            + now_nanos.to_bytes(16, "big", signed=True)
            + counter.to_bytes(8, "big")
        )
        return hmac.new(_derive(self.secret, _FRESH_LABEL), message, hashlib.sha256).digest()


class CookieKeyring:
    """The cookie store's keys (``cookie_store.keys``): the first seals, every one opens."""

    def __init__(self, keys: Iterable[CookieKey]) -> None:
        self._keys = tuple(keys)
        if not self._keys:
            raise ConfigError("at least one cookie key is required")
        self._by_id = {key.id: key for key in self._keys}
        if len(self._by_id) != len(self._keys):
            raise ConfigError("cookie key ids must be unique")

    @classmethod
    def from_config(cls, keys: Iterable[Mapping[str, str]], policy: SecretPolicy | None = None) -> CookieKeyring:
        """From the filter's ``cookie_store.keys``, held to the same secret rules as its
        signing keys under ``policy`` (placeholders always refused, weak keys only in
        development)."""
        signing = _SigningKeyring.from_config(keys, policy)
        return cls(CookieKey(key.id, key.secret) for key in signing._keys)

    @property
    def keys(self) -> tuple[CookieKey, ...]:
        """The keys, the sealing one first."""
        return self._keys

    def __repr__(self) -> str:
        return f"CookieKeyring({[key.id for key in self._keys]})"

    def new_id(self, request_id: bytes, now_nanos: int, counter: int) -> str:
        """The id the filter derives for these inputs (Python apps have a CSPRNG: use
        ``secrets.token_urlsafe(32)`` instead; this is here to check the filter's)."""
        return _b64url(self._keys[0].fresh(_NEW_ID_LABEL, request_id, now_nanos, counter))

    def seal(self, cookie_name: str, payload: CookiePayload, nonce: bytes | None = None) -> str:
        """The cookie value for ``payload`` under the first key; a random nonce unless given.
        Raises :class:`SessionTooLarge` (reason ``too_large``) when ``cookie_name=value`` would
        not fit."""
        nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
        if len(nonce) != NONCE_BYTES:
            raise ValueError(f"a nonce is {NONCE_BYTES} bytes")
        key = self._keys[0]
        sealed = key.aead().encrypt(nonce, payload.to_json(), key.aad())
        value = f"{VERSION}.{key.id}.{_b64url(nonce + sealed)}"
        if not pair_fits(cookie_name, value):
            raise SessionTooLarge(cookie_name, pair_bytes(cookie_name, value))
        return value

    def open(self, value: str, now: int) -> CookiePayload:
        """The payload of a cookie value, refusing one whose session ended at ``now``."""
        payload = self.open_any_time(value)
        if payload.is_expired(now):
            raise CookieError("expired")
        return payload

    def open_any_time(self, value: str) -> CookiePayload:
        raw = value.encode("utf-8", "surrogateescape")
        if len(raw) > MAX_COOKIE_PAIR_BYTES:
            raise CookieError("too_long")
        parts = value.split(".", 2)
        if len(parts) != 3:
            raise CookieError("malformed" if value == VERSION or value.startswith(VERSION + ".") else "unknown_version")
        version, kid, body = parts
        if version != VERSION:
            raise CookieError("unknown_version")
        if not kid or "." in body:
            raise CookieError("malformed")
        key = self._by_id.get(kid)
        if key is None:
            raise CookieError("unknown_key" if _KEY_ID.fullmatch(kid) else "malformed")
        sealed = _b64url_decode(body)
        if sealed is None:
            raise CookieError("bad_base64")
        if len(sealed) < NONCE_BYTES + _TAG_BYTES:
            raise CookieError("malformed")
        try:
            plaintext = key.aead().decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], key.aad())
        except InvalidTag:
            raise CookieError("bad_tag") from None
        return CookiePayload.from_json(plaintext)
