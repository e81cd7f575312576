"""Moving sessions from an app's previous session store into edge-session, framework-free.

Two paths, both keeping users logged in:

- **Lazily**, per request: a request that carries the legacy cookie and no valid edge-session
  token has its legacy session read, created in the companion with the same data (and user),
  and gets the edge-session cookie; the legacy cookie is cleared and the legacy record deleted
  once the response carrying the move goes out (never on a 5xx: the next request tries again).
- **Ahead of time**, by a batch import (``manage.py edge_session_import``, ``flask edge-session
  import``): every live legacy session is created in the companion, and its legacy record is
  rewritten to hold only a *moved marker*, the signed edge-session token of its new session,
  in place of its data. The record keeps its expiry, so the marker lives exactly as long as the
  legacy cookie would have; a browser that comes back with the legacy cookie meanwhile lands in
  its new session (the lazy path follows the marker), and the marker then goes as any legacy
  record does. Records already holding a marker are skipped, so the import is idempotent and
  can be run again after an interruption.

The marker is the token, not the raw id: reading it back verifies it with the cookie keys, so a
record someone rewrote cannot point a legacy cookie at another session.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

__all__ = [
    "MOVED_KEY",
    "BatchSource",
    "ImportReport",
    "LegacyRecord",
    "LegacySession",
    "Unmovable",
    "moved_marker",
    "read_legacy",
    "remaining_seconds",
    "run_import",
]

MOVED_KEY = "_edge_session_moved_to"
"""The one key of a legacy record's data once a batch import moved it: the new session's token."""

# A legacy cookie value longer than any browser keeps (4096 bytes per cookie) is no cookie.
MAX_LEGACY_COOKIE = 4096


class Unmovable(Exception):
    """A legacy session whose data edge-session cannot carry (a value JSON, or Flask's tagged
    JSON, has no form for); it is left where it is."""


@dataclass(frozen=True)
class LegacySession:
    """What a legacy cookie leads to: the session's data, or the token it was moved to."""

    data: dict[str, Any]
    moved_to: str | None = None


def moved_marker(token: str) -> dict[str, str]:
    """The data a moved legacy record holds in place of its own."""
    return {MOVED_KEY: token}


def read_legacy(data: Mapping[str, Any] | None) -> LegacySession | None:
    """A legacy record's decoded data as a :class:`LegacySession`: None for no session (unknown,
    expired, unreadable or empty), the marker's token for a moved one."""
    if not data:
        return None
    moved = data.get(MOVED_KEY)
    if len(data) == 1 and isinstance(moved, str):
        return LegacySession({}, moved_to=moved)
    return LegacySession(dict(data))


def remaining_seconds(expires_at: datetime, now: datetime | None = None) -> int:
    """Whole seconds until ``expires_at`` (aware), at least 1: a batch move keeps the legacy
    session's remaining life, never a fresh one."""
    now = now or datetime.now(timezone.utc)
    return max(1, int((expires_at - now).total_seconds()))


@dataclass(frozen=True)
class LegacyRecord:
    """One live legacy session as a batch source lists it."""

    key: str
    data: dict[str, Any] | None
    """The decoded data; None or empty when it cannot be read (bad signature, corrupt data, a
    type the source refuses)."""
    expires_at: datetime
    version: object = field(repr=False, default=None)
    """What :meth:`BatchSource.mark_moved` compares against, so a record changed meanwhile (by
    a lazy move or the legacy app) is never overwritten."""


class BatchSource(Protocol):
    """A legacy store that can list its live sessions and mark one moved."""

    description: str

    def count(self) -> int:
        """How many live records there are (for progress output)."""

    def records(self) -> Iterator[LegacyRecord]:
        """Every live record, once."""

    def mark_moved(self, record: LegacyRecord, token: str) -> bool:
        """Replaces the record's data with :func:`moved_marker` ``(token)``, keeping its expiry,
        only if it is still as listed; False when it changed or went meanwhile."""


@dataclass
class ImportReport:
    """What a batch import did (or, in a dry run, would do)."""

    seen: int = 0
    moved: int = 0
    already_moved: int = 0
    unreadable: int = 0
    changed_meanwhile: int = 0

    def summary(self, dry_run: bool) -> str:
        verb = "would move" if dry_run else "moved"
        return (
            f"{verb} {self.moved}, already moved {self.already_moved}, empty or unreadable {self.unreadable}"
            f" (left as they are), changed meanwhile {self.changed_meanwhile} (left for the lazy path)"
            f" of {_sessions(self.seen)}" + (" (dry run: nothing written)" if dry_run else "")
        )


def _sessions(count: int) -> str:
    return f"{count} live legacy session{'' if count == 1 else 's'}"


def run_import(
    source: BatchSource,
    create: Callable[[LegacyRecord], str],
    discard: Callable[[str], None],
    out: Callable[[str], None],
    *,
    dry_run: bool = False,
    progress_every: int = 1000,
) -> ImportReport:
    """Moves every live session of ``source``: ``create`` makes its edge-session session and
    returns the signed token (or raises :class:`Unmovable`); ``discard`` deletes such a session
    again when its record changed meanwhile. Prints progress through ``out`` every
    ``progress_every`` records and a summary.

    A companion failure raises (after reporting what was done): records moved so far keep their
    marker, and running the import again continues where it stopped. A failure between the
    create and the marker leaves one session in the companion that no cookie names; it expires
    with its lifetime.
    """
    total = source.count()
    out(f"{_sessions(total)} in {source.description}" + (" (dry run)" if dry_run else ""))
    report = ImportReport()
    started = time.monotonic()

    def summary() -> str:
        return report.summary(dry_run) + f" in {time.monotonic() - started:.1f} s"

    try:
        for record in source.records():
            report.seen += 1
            _move(source, record, create, discard, report, dry_run)
            if report.seen % progress_every == 0:
                out(f"... {report.seen}/{total} ({time.monotonic() - started:.1f} s)")
    except Exception:
        out("stopped by the error below; run the import again to continue: " + summary())
        raise
    out(summary())
    return report


def _move(
    source: BatchSource,
    record: LegacyRecord,
    create: Callable[[LegacyRecord], str],
    discard: Callable[[str], None],
    report: ImportReport,
    dry_run: bool,
) -> None:
    found = read_legacy(record.data)
    if found is None:
        report.unreadable += 1
    elif found.moved_to is not None:
        report.already_moved += 1
    elif dry_run:
        report.moved += 1
    else:
        try:
            token = create(record)
        except Unmovable:
            report.unreadable += 1
            return
        if source.mark_moved(record, token):
            report.moved += 1
        else:
            discard(token)
            report.changed_meanwhile += 1
