"""The cookie token (docs/architecture.md, "Cookie token"), byte for byte as the filter makes and
checks it.

``<kid>.<id>.<mac>``: ``id`` is the companion's session id (32 bytes, unpadded base64url),
``kid`` names the signing key and ``mac`` is unpadded base64url of
HMAC-SHA256(secret(kid), ``"edge-session/v1|" kid "|" id``). The first key signs, every key
verifies, so keys rotate without logging anyone out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .secret_rules import MIN_KEY_BYTES, PLACEHOLDER, ConfigError, SecretPolicy, is_placeholder, key_weakness

__all__ = ["ConfigError", "Keyring", "SigningKey", "is_session_id"]

MAX_TOKEN_LEN = 256
MIN_SECRET_BYTES = MIN_KEY_BYTES
_DOMAIN = b"edge-session/v1|"
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,16}")
_B64_43 = re.compile(r"[A-Za-z0-9_-]{43}")
_STANDARD = re.compile(r"[A-Za-z0-9+/]*")
_URL_SAFE = re.compile(r"[A-Za-z0-9_-]*")


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode_32(text: str) -> bytes | None:
    """The 32 bytes of a canonical 43-character unpadded base64url string, else None."""
    if not _B64_43.fullmatch(text):
        return None
    raw = base64.urlsafe_b64decode(text + "=")
    # The last character carries two spare bits; only the canonical encoding is accepted,
    # as the filter and the companion do.
    return raw if len(raw) == 32 and _b64url(raw) == text else None


def decode_secret(text: str) -> bytes | None:
    """A key's secret as the filter reads it: base64 in the standard or the URL-safe alphabet
    (not both), padding optional but canonical when present, surrounding whitespace ignored.
    None for anything else."""
    text = text.strip()
    body = text.rstrip("=")
    if len(text) != len(body) and len(text) != len(body) + (-len(body) % 4):
        return None
    for alphabet, altchars in ((_STANDARD, None), (_URL_SAFE, b"-_")):
        if not alphabet.fullmatch(body):
            continue
        try:
            raw = base64.b64decode(body + "=" * (-len(body) % 4), altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            return None
        # Only the canonical encoding (no stray bits in the last character), as the filter.
        again = base64.b64encode(raw, altchars=altchars).rstrip(b"=").decode("ascii")
        return raw if again == body else None
    return None


def is_session_id(text: str) -> bool:
    """Whether ``text`` is a well-formed session id (the companion makes them)."""
    return _decode_32(text) is not None


@dataclass(frozen=True)
class SigningKey:
    """A key id and its secret. The secret never shows in ``repr``."""

    id: str
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not _KEY_ID.fullmatch(self.id):
            raise ConfigError(f"key id {self.id!r} must be 1 to 16 of A-Z a-z 0-9 _ -")
        if len(self.secret) < MIN_SECRET_BYTES:
            raise ConfigError(f"key {self.id!r}: the secret must be at least {MIN_SECRET_BYTES} bytes")

    def mac(self, session_id: str) -> bytes:
        message = _DOMAIN + self.id.encode("ascii") + b"|" + session_id.encode("ascii")
        return hmac.new(self.secret, message, hashlib.sha256).digest()


class Keyring:
    """The configured keys: the first signs, every one verifies."""

    def __init__(self, keys: Iterable[SigningKey]) -> None:
        self._keys = tuple(keys)
        if not self._keys:
            raise ConfigError("at least one key is required")
        self._by_id = {key.id: key for key in self._keys}
        if len(self._by_id) != len(self._keys):
            raise ConfigError("key ids must be unique")

    @classmethod
    def from_config(cls, keys: Iterable[Mapping[str, str]], policy: SecretPolicy | None = None) -> Keyring:
        """From the filter's ``keys`` list: ``[{"id": ..., "secret": <base64>}]``, each secret
        held to the filter's rules (:mod:`edge_session.secret_rules`) under ``policy``."""
        policy = policy or SecretPolicy()
        parsed = []
        for index, entry in enumerate(keys):
            name = f"keys[{index}].secret"
            try:
                key_id, secret = entry["id"], entry["secret"]
            except (KeyError, TypeError):
                raise ConfigError(f"keys[{index}] needs an id and a secret") from None
            if not isinstance(key_id, str) or not isinstance(secret, str):
                raise ConfigError(f"keys[{index}]: the id and the secret are strings")
            raw = decode_secret(secret)
            if raw is None or len(raw) < MIN_KEY_BYTES:
                if is_placeholder(secret.encode("utf-8", "replace")) or (raw and is_placeholder(raw)):
                    policy.check(name, PLACEHOLDER)
                if raw is None:
                    raise ConfigError(f"{name} must be base64 (standard or URL-safe alphabet, padding optional)")
                raise ConfigError(f"{name} decodes to {len(raw)} bytes; at least {MIN_KEY_BYTES} are required")
            policy.check(name, key_weakness(secret, raw))
            parsed.append(SigningKey(key_id, raw))
        return cls(parsed)

    def __repr__(self) -> str:
        return f"Keyring({[key.id for key in self._keys]})"

    def key(self, key_id: str) -> SigningKey | None:
        """The listed key of that id, if any."""
        return self._by_id.get(key_id)

    def sign(self, session_id: str) -> str:
        """The cookie value for a session id, signed with the first key."""
        if not is_session_id(session_id):
            raise ValueError("not a session id")
        key = self._keys[0]
        return f"{key.id}.{session_id}.{_b64url(key.mac(session_id))}"

    def verify(self, token: str) -> str | None:
        """The session id a token carries, or None for anything not signed by a listed key."""
        if len(token) > MAX_TOKEN_LEN:
            return None
        parts = token.split(".")
        if len(parts) != 3:
            return None
        kid, session_id, tag = parts
        if not _KEY_ID.fullmatch(kid) or not is_session_id(session_id):
            return None
        mac = _decode_32(tag)
        key = self._by_id.get(kid)
        if mac is None or key is None:
            return None
        return session_id if hmac.compare_digest(key.mac(session_id), mac) else None
