"""Django session data through the app's ``SESSION_SERIALIZER``, kept as the JSON it writes.

Every Django engine stores what the serializer writes; edge-session stores it as a JSON object
in the companion, where the filter injects it, other apps read it, and single keys are written
on their own. So the serializer must write JSON: Django's ``JSONSerializer``, or one of the
app's own (a subclass with its own encoder or object hook), whose values then come back as it
reads them. Anything else (pickle) is refused with ``ImproperlyConfigured``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from .companion import JsonObject

__all__ = ["Values", "serializer_class", "values"]


def serializer_class(path: object) -> type[Any]:
    """The class ``SESSION_SERIALIZER`` names."""
    try:
        serializer: type[Any] = import_string(str(path))
    except ImportError as error:
        raise ImproperlyConfigured(f"SESSION_SERIALIZER {path!r} cannot be imported: {error}") from None
    return serializer


class Values:
    """One serializer, checked once to write and read JSON."""

    _PROBE = {"edge-session": ["probe", 1, 2.5, None, True, {"k": "v"}]}

    def __init__(self, serializer: type[Any]) -> None:
        self._serializer = serializer()
        name = f"{serializer.__module__}.{serializer.__qualname__}"
        try:
            written = self._serializer.dumps(self._PROBE)
            readable = self._json(written) == self._PROBE and self._serializer.loads(written) == self._PROBE
        except Exception:  # noqa: BLE001 - any failure means the serializer cannot be used
            readable = False
        if not readable:
            raise ImproperlyConfigured(
                f"SESSION_SERIALIZER {name} does not write JSON: edge-session keeps sessions as JSON"
                " in the companion, shared with the filter and the apps behind it; use a JSONSerializer"
            )

    @staticmethod
    def _json(written: object) -> Any:
        text = written.decode("utf-8") if isinstance(written, bytes) else written
        if not isinstance(text, str):
            raise ValueError("the serializer wrote neither bytes nor text")
        return json.loads(text)

    def to_stored(self, data: Mapping[str, Any]) -> JsonObject:
        """The JSON object the serializer writes for ``data``."""
        stored = self._json(self._serializer.dumps(dict(data)))
        if not isinstance(stored, dict):
            raise ValueError("SESSION_SERIALIZER wrote something that is not a JSON object")
        return stored

    def from_stored(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        """The session data the serializer reads from the stored JSON (ASCII JSON, which every
        JSON serializer reads whatever text encoding it expects)."""
        data: dict[str, Any] = self._serializer.loads(json.dumps(stored, separators=(",", ":")).encode("ascii"))
        return data


_by_serializer: dict[type[Any], Values] = {}


def values(serializer: type[Any]) -> Values:
    """The checked :class:`Values` of a serializer class (checked once per class)."""
    if serializer not in _by_serializer:
        _by_serializer[serializer] = Values(serializer)
    return _by_serializer[serializer]
