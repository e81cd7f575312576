"""The token matches the filter's byte for byte (filter/src/token.rs known answer) and refuses
every token the filter refuses."""

from __future__ import annotations

import unittest

from edge_session.token import ConfigError, Keyring, SigningKey

from . import support

# filter/src/token.rs: key `k1` with secret bytes 0x00..0x1f signs the id of bytes 0x00..0x1f.
ID = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
KNOWN_TOKEN = "k1.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8.D9s66XiaoFpkcvRsMEKi9H53berk1bcERXTsFJo--EI"


def key(kid: str, fill: int) -> SigningKey:
    return SigningKey(kid, bytes((i + fill) % 256 for i in range(32)))


def flip(text: str, at: int) -> str:
    return text[:at] + ("B" if text[at] == "A" else "A") + text[at + 1 :]


class TokenTests(unittest.TestCase):
    def test_signs_the_filters_known_answer(self) -> None:
        ring = Keyring([key("k1", 0)])
        self.assertEqual(ring.sign(ID), KNOWN_TOKEN)
        self.assertEqual(ring.verify(KNOWN_TOKEN), ID)

    def test_first_key_signs_and_every_key_verifies(self) -> None:
        old = Keyring([key("old", 7)])
        rotated = Keyring([key("new", 9), key("old", 7)])
        self.assertEqual(rotated.verify(old.sign(ID)), ID, "tokens of the old key still verify")
        new_token = rotated.sign(ID)
        self.assertTrue(new_token.startswith("new."))
        self.assertIsNone(old.verify(new_token), "an unknown key id verifies nothing")

    def test_refuses_every_malformed_or_forged_token(self) -> None:
        ring = Keyring([key("k1", 0)])
        mac = KNOWN_TOKEN.rsplit(".", 1)[1]
        cases = {
            "empty": "",
            "garbage": "hello world",
            "two parts": f"k1.{ID}",
            "four parts": f"{KNOWN_TOKEN}.x",
            "truncated mac": KNOWN_TOKEN[:-1],
            "truncated id": f"k1.{ID[:42]}.{mac}",
            "oversize": "a" * 257,
            "empty kid": f".{ID}.{mac}",
            "kid too long": f"{'k' * 17}.{ID}.{mac}",
            "unknown kid": f"k2.{ID}.{mac}",
            "wrong mac": f"k1.{ID}.{flip(mac, 5)}",
            "other id": f"k1.{flip(ID, 3)}.{mac}",
            "non-base64 mac": f"k1.{ID}.{'*' * 43}",
            "standard alphabet id": f"k1.{ID.replace('A', '+', 1)}.{mac}",
            "padded mac": f"k1.{ID}.{mac[:42]}=",
            "non-canonical last char of the mac": f"k1.{ID}.{mac[:42]}J",
            "non-ascii": f"k1.{ID[:42]}é.{mac}",
            "nul": f"k1\0.{ID}.{mac}",
        }
        for name, token in cases.items():
            with self.subTest(name):
                self.assertIsNone(ring.verify(token))

    def test_keys_from_the_filter_configuration(self) -> None:
        secret = support.secret("unit_signing")  # bytes 0x00..0x1f
        ring = Keyring.from_config([{"id": "k1", "secret": secret}])
        self.assertEqual(ring.sign(ID), KNOWN_TOKEN)
        self.assertNotIn("AAEC", repr(ring), "secrets never show")

    def test_bad_key_configuration_is_refused_with_the_entry_named(self) -> None:
        for keys, message in [
            ([], "at least one key"),
            ([{"id": "a"}], "keys[0] needs"),
            ([{"id": "a", "secret": "not base64!"}], "keys[0].secret"),
            ([{"id": "a", "secret": "c2hvcnQ="}], "decodes to 5 bytes; at least 32"),
            ([{"id": "has.dot", "secret": support.secret("unit_signing")}], "key id"),
        ]:
            with self.subTest(message), self.assertRaisesRegex(ConfigError, message.replace("[", r"\[")):
                Keyring.from_config(keys)


if __name__ == "__main__":
    unittest.main()
