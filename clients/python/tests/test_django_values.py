"""Django session values: ``SESSION_SERIALIZER`` honoured when it writes JSON, refused otherwise."""

from __future__ import annotations

import datetime
import json
import pickle
from typing import Any

from django.contrib.sessions.serializers import JSONSerializer
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.test import SimpleTestCase, override_settings

from edge_session.companion import CompanionClient
from edge_session.django import SessionMiddleware, SessionStore
from edge_session.token import Keyring

from . import support


class DatesSerializer(JSONSerializer):  # type: ignore[misc]
    """A JSON serializer an app might use: dates as tagged objects, revived on the way in."""

    def dumps(self, obj: Any) -> bytes:
        def default(value: Any) -> Any:
            if isinstance(value, datetime.date):
                return {"__date__": value.isoformat()}
            raise TypeError(type(value).__name__)

        return json.dumps(obj, default=default, separators=(",", ":")).encode("latin-1")

    def loads(self, data: bytes) -> Any:
        def hook(value: dict[str, Any]) -> Any:
            return datetime.date.fromisoformat(value["__date__"]) if list(value) == ["__date__"] else value

        return json.loads(data.decode("latin-1"), object_hook=hook)


class PickleSerializer:
    """What Django removed in 5.0, and what some apps still carry."""

    def dumps(self, obj: Any) -> bytes:
        return pickle.dumps(obj)

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)  # noqa: S301 - the test's own data


class Utf8Serializer(JSONSerializer):  # type: ignore[misc]
    """Writes UTF-8 rather than Django's ASCII-escaped JSON."""

    def dumps(self, obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=False).encode("utf-8")

    def loads(self, data: bytes) -> Any:
        return json.loads(data.decode("utf-8"))


class SessionSerializerTests(SimpleTestCase):
    def setUp(self) -> None:
        self.companion = CompanionClient(support.companion_url(), support.companion_token())
        self.keyring = Keyring.from_config(support.keys())

    def saved(self, **data: Any) -> SessionStore:
        store = SessionStore()
        store.update(data)
        store.save()
        self.addCleanup(SessionStore().delete, store.session_key)
        return store

    def stored(self, store: SessionStore) -> Any:
        return self.companion.get(self.keyring.verify(store.session_key or "") or "")

    @override_settings(SESSION_SERIALIZER=f"{__name__}.DatesSerializer")
    def test_a_json_serializer_of_the_apps_own_is_honoured_both_ways(self) -> None:
        day = datetime.date(2024, 5, 1)
        store = self.saved(due=day, items=[day, "x"])
        self.assertEqual(
            self.stored(store).data, {"due": {"__date__": "2024-05-01"}, "items": [{"__date__": "2024-05-01"}, "x"]}
        )
        self.assertEqual(SessionStore(store.session_key).load(), {"due": day, "items": [day, "x"]})
        loaded = SessionStore(store.session_key)
        loaded["due"] = datetime.date(2024, 6, 1)
        loaded.save()
        self.assertEqual(self.stored(store).data["due"], {"__date__": "2024-06-01"}, "per-key writes of its form")

    @override_settings(SESSION_SERIALIZER=f"{__name__}.Utf8Serializer")
    def test_a_serializer_writing_utf8_json_is_honoured(self) -> None:
        store = self.saved(name="Zoë 東京")
        self.assertEqual(self.stored(store).data, {"name": "Zoë 東京"})
        self.assertEqual(SessionStore(store.session_key).load(), {"name": "Zoë 東京"})

    def test_the_default_serializer_keeps_values_as_django_does(self) -> None:
        store = self.saved(pair=(1, 2))
        self.assertEqual(SessionStore(store.session_key).load(), {"pair": [1, 2]}, "tuples come back as lists")
        with self.assertRaises(TypeError):
            self.saved(when=datetime.date(2024, 1, 1))

    def test_a_serializer_that_does_not_write_json_is_refused(self) -> None:
        for path in [f"{__name__}.PickleSerializer", "no.such.Serializer"]:
            with self.subTest(path=path), override_settings(SESSION_SERIALIZER=path):
                with self.assertRaisesRegex(ImproperlyConfigured, "SESSION_SERIALIZER"):
                    SessionMiddleware(lambda request: HttpResponse())  # at start
        with override_settings(SESSION_SERIALIZER=f"{__name__}.PickleSerializer"):
            with self.assertRaisesRegex(ImproperlyConfigured, "PickleSerializer does not write JSON"):
                SessionStore().exists("x")
