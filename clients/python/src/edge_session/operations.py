"""Listing and ending a user's sessions, for operators: the core of the Django management commands
(``edge_session_list``, ``edge_session_end``) and the Flask CLI (``flask edge-session list``,
``flask edge-session end``).

Sessions are named by their handles (:mod:`edge_session.handles`), never by their ids: a
listing can be pasted into a ticket, and a handle typed into a command ends a session without
anyone holding its credential. What the companion lists about a session (the client's user
agent and address as the filter saw them) came from the network: it is printed escaped, so a
crafted user agent cannot move the cursor or recolour an operator's terminal.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .companion import CompanionClient
from .handles import is_handle

__all__ = ["OperatorError", "end_sessions", "session_table"]

_COLUMNS = ("handle", "created_at", "last_seen_at", "expires_at", "browser_session", "client_address", "user_agent")
_NEEDS_HANDLES = (
    "the companion lists sessions without handles: ending sessions by handle needs a companion with"
    " the handle API (GET /v1/users/{user}/sessions listing handles)"
)


class OperatorError(Exception):
    """A command that cannot do what it was asked; the message says why, for the operator."""


def printable(value: object) -> str:
    """``value`` as text with every non-printable character escaped (``\\x1b``, ``\\u202e``)."""
    text = "" if value is None else str(value)
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)


def _listing(client: CompanionClient, user: str) -> list[dict[str, str]]:
    rows = []
    for item in client.user_session_listing(user):
        row = {column: item.get(column) for column in _COLUMNS}
        if not isinstance(row["handle"], str) or not is_handle(row["handle"]):
            raise OperatorError(_NEEDS_HANDLES)
        kind = "browser" if row["browser_session"] else "persistent"
        rows.append({**{column: printable(row[column]) for column in _COLUMNS}, "browser_session": kind})
    return rows


def session_table(client: CompanionClient, user: str, current: str | None = None) -> list[str]:
    """The lines listing ``user``'s live sessions, one per session, oldest first; ``current``
    (a handle) is marked with ``*``."""
    rows = sorted(_listing(client, user), key=lambda row: row["created_at"])
    if not rows:
        return [f"user {printable(user)!r} has no live sessions"]
    titles = {
        "handle": "HANDLE",
        "created_at": "CREATED",
        "last_seen_at": "LAST SEEN",
        "expires_at": "EXPIRES",
        "browser_session": "COOKIE",
        "client_address": "ADDRESS",
        "user_agent": "USER AGENT",
    }
    widths = {column: max(len(titles[column]), *(len(row[column]) for row in rows)) for column in _COLUMNS}

    def line(cells: dict[str, str], mark: str) -> str:
        return (mark + " " + "  ".join(cells[column].ljust(widths[column]) for column in _COLUMNS)).rstrip()

    lines = [line(titles, " ")]
    lines += [line(row, "*" if row["handle"] == current else " ") for row in rows]
    lines.append(f"{len(rows)} live session{'s' if len(rows) != 1 else ''} of user {printable(user)!r}")
    return lines


def _handle(value: str) -> str:
    if not is_handle(value):
        raise OperatorError(f"{printable(value)!r} is not a session handle (22 characters, as the listing shows)")
    return value


def end_sessions(
    client: CompanionClient,
    user: str,
    *,
    handle: str | None = None,
    all_except: str | None = None,
    everything: bool = False,
) -> str:
    """Ends one session of ``user`` (``handle``), all but one (``all_except``) or all of them
    (``everything``); exactly one must be given. The message says what was done."""
    if sum((handle is not None, all_except is not None, everything)) != 1:
        raise OperatorError("give exactly one of: a handle, all but one handle, or all")
    who = f"user {printable(user)!r}"
    if handle is not None:
        if not client.end_user_session(user, _handle(handle)):
            raise OperatorError(f"{who} has no session {handle}: nothing ended")
        return f"ended session {handle} of {who}"
    if all_except is not None:
        kept = _handle(all_except)
        # Only a session the companion lists can be kept: a typo, or a companion from before
        # the handle API (which would ignore ``except`` and end them all), ends nothing.
        if kept not in _handles(_listing(client, user)):
            raise OperatorError(f"{who} has no session {kept}: nothing ended")
        ended = client.end_user_sessions_except(user, kept)
        return f"ended {ended} session{'s' if ended != 1 else ''} of {who}, kept {kept}"
    ended = client.delete_user_sessions(user)
    return f"ended {ended} session{'s' if ended != 1 else ''} of {who}"


def _handles(rows: Iterable[dict[str, Any]]) -> set[str]:
    return {str(row["handle"]) for row in rows}
