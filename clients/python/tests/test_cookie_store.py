"""The cookie store codec matches the filter's byte for byte: the shared known answers
(testdata/cookie_store_vectors.json, which filter/src/store/cookie.rs reads too), every refusal
by name, rotation, expiry and the 4096-byte pair limit."""

from __future__ import annotations

import base64
import json
import unittest
from dataclasses import replace
from pathlib import Path
from typing import Any

from edge_session.cookie_store import (
    MAX_COOKIE_PAIR_BYTES,
    CookieError,
    CookieKey,
    CookieKeyring,
    CookiePayload,
    pair_fits,
)
from edge_session.token import ConfigError

from . import support

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[3] / "testdata" / "cookie_store_vectors.json").read_text("utf-8")
)
ID = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
T = 1767225600


# The vectors' keys, in order: c1 seals, c0 still opens.
KEYS = [{"id": kid, "secret": support.secret(f"cookie_store_{kid}")} for kid in ("c1", "c0")]


def ring(*kids: str) -> CookieKeyring:
    keys = {k["id"]: base64.b64decode(k["secret"]) for k in KEYS}
    return CookieKeyring(CookieKey(kid, keys[kid]) for kid in kids)


def payload(**changes: Any) -> CookiePayload:
    base = CookiePayload(ID, {"k": 1}, "42", T, T, T + 3600, 3600, False, None)
    return replace(base, **changes)


class CookieStoreTests(unittest.TestCase):
    def test_seals_and_opens_the_filters_known_answers(self) -> None:
        both = ring("c1", "c0")
        for vector in VECTORS["vectors"]:
            with self.subTest(vector["name"]):
                parsed = CookiePayload.from_json(vector["plaintext"].encode("utf-8"))
                self.assertEqual(parsed.to_json().decode("utf-8"), vector["plaintext"])
                sealed = ring(vector["kid"]).seal(VECTORS["cookie_name"], parsed, bytes.fromhex(vector["nonce"]))
                self.assertEqual(sealed, vector["cookie"])
                self.assertEqual(both.open(vector["cookie"], VECTORS["now"]), parsed)

    def test_refuses_each_invalid_value_with_the_filters_error(self) -> None:
        both = ring("c1", "c0")
        for case in VECTORS["invalid"]:
            with self.subTest(case["name"]):
                with self.assertRaises(CookieError) as caught:
                    both.open(case["cookie"], VECTORS["now"])
                self.assertEqual(caught.exception.reason, case["error"])

    def test_derives_the_filters_new_ids(self) -> None:
        sealer = ring("c1", "c0")
        for case in VECTORS["new_ids"]:
            got = sealer.new_id(case["request_id"].encode("utf-8"), case["now_nanos"], case["counter"])
            self.assertEqual(got, case["id"])

    def test_first_key_seals_every_key_opens_and_a_removed_key_is_invalid(self) -> None:
        old_cookie = ring("c0").seal("sid", payload())
        self.assertEqual(ring("c1", "c0").open(old_cookie, T), payload())
        self.assertTrue(ring("c1", "c0").seal("sid", payload()).startswith("v1.c1."))
        with self.assertRaises(CookieError) as caught:
            ring("c1").open(old_cookie, T)
        self.assertEqual(caught.exception.reason, "unknown_key")

    def test_expiry_and_the_absolute_limit_are_enforced_to_the_second(self) -> None:
        sealer = ring("c1")
        cookie = sealer.seal("sid", payload(absolute_expires_at=T + 1800))
        self.assertEqual(sealer.open(cookie, T + 1799).id, ID)
        for now, value in ((T + 1800, cookie), (T + 3600, sealer.seal("sid", payload()))):
            with self.assertRaises(CookieError) as caught:
                sealer.open(value, now)
            self.assertEqual(caught.exception.reason, "expired")
        self.assertEqual(sealer.open_any_time(cookie).id, ID)

    def test_the_pair_limit_holds_exactly_at_4096_and_one_past(self) -> None:
        sealer = ring("c1")
        big = payload(data={"blob": "x" * 2800})
        probe = sealer.seal("s", big, bytes(12))
        name = "s" * (MAX_COOKIE_PAIR_BYTES - 1 - len(probe))
        at_limit = sealer.seal(name, big, bytes(12))
        self.assertEqual(len(name) + 1 + len(at_limit), MAX_COOKIE_PAIR_BYTES)
        self.assertTrue(pair_fits(name, at_limit))
        self.assertFalse(pair_fits(name + "s", at_limit))
        with self.assertRaises(CookieError) as caught:
            sealer.seal(name + "s", big, bytes(12))
        self.assertEqual(caught.exception.reason, "too_large")

    def test_random_nonces_differ_and_both_open(self) -> None:
        sealer = ring("c1")
        first, second = sealer.seal("sid", payload()), sealer.seal("sid", payload())
        self.assertNotEqual(first, second)
        self.assertEqual(sealer.open(first, T), sealer.open(second, T))

    def test_keys_follow_the_filters_secret_rules(self) -> None:
        good = [dict(k) for k in KEYS]
        self.assertEqual(repr(CookieKeyring.from_config(good)), "CookieKeyring(['c1', 'c0'])")
        for bad in (
            [],
            [{"id": "c1", "secret": base64.b64encode(bytes(31) + b"x").decode()}],
            [{"id": "c1", "secret": base64.b64encode(b"REPLACE-ME: 32+ random bytes, base64").decode()}],
            [{"id": "has.dot", "secret": good[0]["secret"]}],
            [good[0], good[0]],
        ):
            with self.assertRaises(ConfigError):
                CookieKeyring.from_config(bad)

    def test_authentic_payloads_of_the_wrong_shape_are_refused(self) -> None:
        for raw in (
            b"{}",
            b"[]",
            b"\xff",
            payload().to_json().replace(b'"ttl_seconds":3600', b'"ttl_seconds":-1'),
            payload().to_json().replace(b'"created_at":1767225600', b'"created_at":1.5'),
            payload().to_json().replace(b'"browser_session":false', b'"browser_session":0'),
            payload().to_json().replace(b"{", b'{"extra":1,', 1),
        ):
            with self.subTest(raw=raw), self.assertRaises(CookieError) as caught:
                CookiePayload.from_json(raw)
            self.assertEqual(caught.exception.reason, "bad_payload")


if __name__ == "__main__":
    unittest.main()
