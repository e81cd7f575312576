"""The session cookie: its attributes as the filter sets them, and how the filter reads it
from a request.

The filter's ``cookie`` configuration (:class:`CookieSettings`) is the one source of the
cookie's attributes. The Django engine and the Flask interface set the same cookie, so they
refuse to start when the app's own cookie settings differ from it: a client that re-issued the
cookie without ``Secure`` or ``SameSite`` would overwrite the filter's stronger one, and one
with another ``Path`` or ``Domain`` would make a second cookie of the same name.

Pairs are split at ``;`` (RFC 6265) and trimmed, a quoted value is unquoted, and pairs without
``=`` or a name are skipped. A request may carry the session cookie's name more than once: a
sibling subdomain, or a path-scoped cookie, can plant a second ``sid`` next to the user's own.
Then, as in the filter, there is no usable session when the values differ (nothing is looked
up, and the cookie is not cleared: clearing would delete the user's own cookie and leave the
planted one to take over); the same value repeated counts as one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .secret_rules import ConfigError

# ``,`` separates pairs too: WSGI servers (wsgiref, Werkzeug's, gunicorn) join several Cookie
# headers into HTTP_COOKIE with a comma, and RFC 6265 cookie values never hold one.
_SEPARATOR = re.compile(r"[;,]")
# What Rust's trim_ascii (the filter) trims; str.strip() would trim non-ASCII spaces too.
_ASCII_WHITESPACE = " \t\n\r\x0c"


# The spellings the filter's configuration accepts, and the attribute each means.
_SAME_SITE = {"Strict": "Strict", "strict": "Strict", "Lax": "Lax", "lax": "Lax", "None": "None", "none": "None"}
_FIELDS = ("name", "path", "domain", "secure", "http_only", "same_site", "max_age_seconds")


@dataclass(frozen=True)
class CookieSettings:
    """The filter's ``cookie`` configuration, with the filter's defaults."""

    name: str = "sid"
    path: str = "/"
    domain: str | None = None
    secure: bool = True
    http_only: bool = True
    same_site: str = "Lax"
    """``Strict``, ``Lax`` or ``None`` (the attribute ``SameSite=None``)."""

    @classmethod
    def from_config(cls, config: object, source: str) -> CookieSettings:
        """From the filter's ``cookie`` object as written in its configuration (``None``: all
        defaults). ``source`` names the setting in errors."""
        if config is None:
            return cls()
        if not isinstance(config, Mapping):
            raise ConfigError(f"{source} must be the filter's cookie object, e.g. {{'secure': True}}")
        for field in config:
            if field not in _FIELDS:
                raise ConfigError(f"{source}: {field!r} is not one of the filter's cookie fields {_FIELDS}")
        values: dict[str, Any] = {**asdict(cls()), **config}
        # type(), not isinstance(): bool is an int in Python, the filter's JSON keeps them apart.
        for field, kind in (("name", str), ("path", str), ("secure", bool), ("http_only", bool)):
            if type(values[field]) is not kind:
                raise ConfigError(f"{source}: {field} must be a {kind.__name__}")
        if values["domain"] is not None and type(values["domain"]) is not str:
            raise ConfigError(f"{source}: domain must be a str or None")
        if values["same_site"] not in _SAME_SITE:
            raise ConfigError(f"{source}: same_site must be Strict, Lax or None")
        return cls(
            name=values["name"],
            path=values["path"],
            domain=values["domain"],
            secure=values["secure"],
            http_only=values["http_only"],
            same_site=_SAME_SITE[values["same_site"]],
        )

    def refuse_differences(self, app: Mapping[str, tuple[str, object]], source: str) -> None:
        """Raises :class:`ConfigError` naming the first app setting that differs from the
        filter's. ``app`` maps a field (``secure``) to the app's setting and its value as
        the attribute it gives (``("SESSION_COOKIE_SECURE", False)``; no ``SameSite``
        attribute is ``None``)."""
        for field, (setting, value) in app.items():
            wanted = getattr(self, field)
            if value != wanted:
                raise ConfigError(
                    f"{setting} is {value!r}, but the filter's cookie.{field} is {wanted!r}: set"
                    f" {setting} = {wanted!r} (the session cookie's attributes come from the filter's"
                    f" configuration; if it says otherwise, copy its cookie object into {source})"
                )


def same_site_attribute(value: object) -> str | None:
    """What an app's ``SameSite`` setting sends: ``Strict``, ``Lax``, ``None``, or no attribute
    (``None``) for an empty or false setting."""
    return str(value).capitalize() if value else None


@dataclass(frozen=True)
class RequestCookie:
    """What a request's ``Cookie`` header says about the session cookie."""

    value: str | None
    """The session cookie's value when the request carries exactly one (possibly repeated)."""
    conflicting: bool = False
    """The name came with different values: no usable session, and the cookie is left alone."""


def session_cookie(header: str | None, name: str) -> RequestCookie:
    """The session cookie called ``name`` in a ``Cookie`` header (several joined by ``,`` or
    ``;`` are one header here)."""
    values: set[str] = set()
    for pair in _SEPARATOR.split(header or ""):
        pair_name, equals, value = pair.partition("=")
        if not equals or pair_name.strip(_ASCII_WHITESPACE) != name:
            continue
        value = value.strip(_ASCII_WHITESPACE)
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        values.add(value)
    if len(values) > 1:
        return RequestCookie(None, conflicting=True)
    return RequestCookie(next(iter(values), None))
