"""The MongoDB clients the legacy readers share: one per URI and timeout, as pymongo wants
(a client holds a connection pool and monitors the servers), closed when the process exits."""

from __future__ import annotations

import atexit
from functools import cache
from typing import Any

from pymongo import MongoClient

__all__ = ["client"]


@cache
def client(uri: str, timeout_ms: int) -> MongoClient[dict[str, Any]]:
    """A client that connects lazily, with ``timeout_ms`` for server selection and each socket
    operation, and reads dates as UTC-aware ``datetime`` values."""
    made: MongoClient[dict[str, Any]] = MongoClient(
        uri, tz_aware=True, serverSelectionTimeoutMS=timeout_ms, socketTimeoutMS=timeout_ms
    )
    atexit.register(made.close)
    return made
