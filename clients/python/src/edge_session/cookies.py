"""The session cookie as the filter reads it from a request.

Pairs are split at ``;`` (RFC 6265) and trimmed, a quoted value is unquoted, and pairs without
``=`` or a name are skipped. A request may carry the session cookie's name more than once: a
sibling subdomain, or a path-scoped cookie, can plant a second ``sid`` next to the user's own.
Then, as in the filter, there is no usable session when the values differ (nothing is looked
up, and the cookie is not cleared: clearing would delete the user's own cookie and leave the
planted one to take over); the same value repeated counts as one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# ``,`` separates pairs too: WSGI servers (wsgiref, Werkzeug's, gunicorn) join several Cookie
# headers into HTTP_COOKIE with a comma, and RFC 6265 cookie values never hold one.
_SEPARATOR = re.compile(r"[;,]")
# What Rust's trim_ascii (the filter) trims; str.strip() would trim non-ASCII spaces too.
_ASCII_WHITESPACE = " \t\n\r\x0c"


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
