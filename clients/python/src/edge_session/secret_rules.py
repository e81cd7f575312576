"""The rules the filter and the companion apply to their secrets, applied here to the same
cookie keys and companion token, so a Python app refuses what they refuse.

A placeholder (a value holding ``REPLACE-ME``, in any case, as the shipped templates do) is
always refused: it is a template someone forgot to fill in. A weak value is refused unless
the app turns on its development switch (Django ``EDGE_SESSION["ALLOW_DEVELOPMENT_SECRETS"]``,
Flask ``EDGE_SESSION_ALLOW_DEVELOPMENT_SECRETS``), which then warns loudly
(:class:`DevelopmentSecretWarning`) naming each weak secret, never its value:

- a key (at least 32 bytes, always) holding fewer than 16 distinct byte values, or only
  printable ASCII (a passphrase, not random bytes);
- a token shorter than 32 characters or holding fewer than 6 distinct characters.

Each limit is far from what a real random secret hits (32 random bytes hold about 30
distinct values; ``openssl rand -hex 16`` is exactly 32 characters).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

PLACEHOLDER_MARKER = "REPLACE-ME"
MIN_KEY_BYTES = 32
MIN_KEY_DISTINCT_BYTES = 16
MIN_TOKEN_CHARS = 32
MIN_TOKEN_DISTINCT_CHARS = 6


class ConfigError(ValueError):
    """A configuration that must not be used; the message names the entry, never a secret."""


class DevelopmentSecretWarning(UserWarning):
    """A weak secret was accepted because the development switch is on."""


@dataclass(frozen=True)
class Weakness:
    """Why a secret is refused, as words that follow the secret's name."""

    reason: str
    allowed_in_development: bool = True

    def __str__(self) -> str:
        return self.reason


PLACEHOLDER = Weakness(
    f"is the template's placeholder ({PLACEHOLDER_MARKER}...): put a real secret there",
    allowed_in_development=False,
)


@dataclass(frozen=True)
class SecretPolicy:
    """Whether weak secrets are accepted, and the name of the setting that says so (errors
    and warnings name it)."""

    allow_development_secrets: bool = False
    switch: str = "allow_development_secrets"

    def check(self, name: str, weakness: Weakness | None) -> None:
        """Raises :class:`ConfigError` for a refused secret; warns for one accepted as weak."""
        if weakness is None:
            return
        if self.allow_development_secrets and weakness.allowed_in_development:
            warnings.warn(
                f"edge-session: {name} {weakness}; accepted only because {self.switch} is on."
                " Never run production like this.",
                DevelopmentSecretWarning,
                stacklevel=3,
            )
            return
        hint = f" ({self.switch} accepts it for development only)" if weakness.allowed_in_development else ""
        raise ConfigError(f"{name} {weakness}{hint}")


def is_placeholder(value: bytes) -> bool:
    """Whether ``value`` holds the placeholder marker, in any ASCII case."""
    return PLACEHOLDER_MARKER.lower().encode("ascii") in value.lower()


def key_weakness(written: str, decoded: bytes) -> Weakness | None:
    """Checks a cookie key: ``written`` as configured (base64), ``decoded`` its bytes. (The
    filter and :meth:`~edge_session.token.Keyring.from_config` refuse a key shorter than
    :data:`MIN_KEY_BYTES` even in development.)"""
    if is_placeholder(written.encode("utf-8", "replace")) or is_placeholder(decoded):
        return PLACEHOLDER
    if len(decoded) < MIN_KEY_BYTES:
        return Weakness(f"is shorter than {MIN_KEY_BYTES} bytes")
    if len(set(decoded)) < MIN_KEY_DISTINCT_BYTES:
        return Weakness(f"has fewer than {MIN_KEY_DISTINCT_BYTES} distinct values: not random")
    if all(0x20 <= byte < 0x7F for byte in decoded):
        return Weakness("is printable text, not random bytes (use the base64 of `openssl rand 32`)")
    return None


def token_weakness(token: str) -> Weakness | None:
    """Checks the companion's bearer token."""
    if is_placeholder(token.encode("utf-8", "replace")):
        return PLACEHOLDER
    if len(token) < MIN_TOKEN_CHARS:
        return Weakness(f"is shorter than {MIN_TOKEN_CHARS} characters (use `openssl rand -hex 24`)")
    if len(set(token.encode("utf-8", "replace"))) < MIN_TOKEN_DISTINCT_CHARS:
        return Weakness(f"has fewer than {MIN_TOKEN_DISTINCT_CHARS} distinct characters: not random")
    return None
