"""Session handles: the non-secret names the companion gives sessions in listings and revocations.

A handle is unpadded base64url of the first 16 bytes of SHA-256(``"edge-session/handle/v1|"``
id), 22 characters, computed exactly as the companion computes it. Nobody can get from a handle
back to the id, so a handle can be shown to operators and users and typed into commands; the id
is a bearer credential and never is. Knowing the handle of the session a request carries lets an
app mark "this device" in a listing, or end every session but this one.
"""

from __future__ import annotations

import base64
import hashlib
import re

__all__ = ["HANDLE_LENGTH", "handle_of", "is_handle"]

HANDLE_LENGTH = 22
_DOMAIN = b"edge-session/handle/v1|"
_HANDLE = re.compile(r"[A-Za-z0-9_-]{22}")


def handle_of(session_id: str) -> str:
    """The handle of a session id (the id itself never leaves the caller)."""
    digest = hashlib.sha256(_DOMAIN + session_id.encode("ascii")).digest()[:16]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def is_handle(text: str) -> bool:
    """Whether ``text`` is a well-formed handle: 22 base64url characters encoding 16 bytes
    canonically (the last character carries four spare bits, which must be zero)."""
    if not _HANDLE.fullmatch(text):
        return False
    raw = base64.urlsafe_b64decode(text + "==")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") == text
