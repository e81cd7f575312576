"""The filter's and the companion's rules for secrets (proto/src/secrets.rs), held by the
clients: placeholders always refused, weak keys and tokens refused unless the development
switch is on, which warns; every limit at exactly the limit and one past."""

from __future__ import annotations

import base64
import unittest
import warnings

from edge_session.companion import CompanionClient
from edge_session.secret_rules import ConfigError, DevelopmentSecretWarning, SecretPolicy
from edge_session.token import Keyring, decode_secret

from . import support

STRICT = SecretPolicy()
DEVELOPMENT = SecretPolicy(True, "THE_SWITCH")
TEST_KEY = bytes(range(32))
ENVOY_DEV_KEY = "ZGV2LW9ubHktc2VjcmV0LWRvLW5vdC11c2UtaW4tcHJvZHVjdGlvbiE="  # envoy.yaml: text
GOOD_TOKEN = "0123456789abcdef0123456789abcdef"  # exactly 32 characters, 16 distinct


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def keyring(secret: str, policy: SecretPolicy = STRICT) -> Keyring:
    return Keyring.from_config([{"id": "k", "secret": secret}], policy)


def fifteen_distinct() -> bytes:
    return bytes(range(15)) + bytes(17)


def sixteen_distinct() -> bytes:
    return bytes(range(16)) + bytes([0x80]) * 16


class KeyRulesTests(unittest.TestCase):
    def assert_refused(self, secret: str, reason: str, *, even_in_development: bool) -> None:
        with self.assertRaisesRegex(ConfigError, reason) as refused:
            keyring(secret)
        message = str(refused.exception)
        self.assertIn("keys[0].secret", message)
        if len(secret) > 10:  # shorter ones are words of the message itself ("REPLACE-ME")
            self.assertNotIn(secret, message, "the secret never shows")
        if even_in_development:
            with self.assertRaisesRegex(ConfigError, reason):
                keyring(secret, DEVELOPMENT)
        else:
            self.assertIn("allow_development_secrets accepts it", message)
            with self.assertWarns(DevelopmentSecretWarning) as warned:
                keyring(secret, DEVELOPMENT)
            text = str(warned.warning)
            self.assertIn("keys[0].secret", text)
            self.assertIn("THE_SWITCH", text)
            self.assertNotIn(secret, text[text.index("keys[0]") :])

    def test_random_looking_keys_pass_without_a_warning(self) -> None:
        for raw in [TEST_KEY, sixteen_distinct(), bytes(range(200, 256))]:
            with self.subTest(raw=raw), warnings.catch_warnings():
                warnings.simplefilter("error")
                keyring(b64(raw))

    def test_placeholders_are_refused_written_or_decoded_in_any_case_even_in_development(self) -> None:
        for secret in [
            "REPLACE-ME",
            "REPLACE-ME-with-base64-of-32-random-bytes",
            "replace-me",
            b64(b"REPLACE-ME: 32+ random bytes, base64"),  # what .env.example ships
            b64(TEST_KEY + b"replace-me"),  # in the bytes, not text, lower case
        ]:
            with self.subTest(secret):
                self.assert_refused(secret, "placeholder", even_in_development=True)

    def test_a_key_under_32_bytes_is_refused_even_in_development(self) -> None:
        self.assert_refused(b64(TEST_KEY[:31]), "decodes to 31 bytes; at least 32", even_in_development=True)
        keyring(b64(TEST_KEY[:32]))

    def test_fewer_than_16_distinct_bytes_is_weak(self) -> None:
        self.assert_refused(b64(fifteen_distinct()), "fewer than 16 distinct", even_in_development=False)
        self.assert_refused(b64(bytes(32)), "fewer than 16 distinct", even_in_development=False)
        keyring(b64(sixteen_distinct()))

    def test_a_text_key_is_weak(self) -> None:
        self.assert_refused(ENVOY_DEV_KEY, "printable text", even_in_development=False)
        text = bytes(range(0x20, 0x7F))[:32]
        self.assert_refused(b64(text), "printable text", even_in_development=False)
        keyring(b64(text[:31] + b"\x7f"))  # one byte outside printable ASCII is not text

    def test_keys_decode_as_the_filter_decodes_them(self) -> None:
        raw = bytes(range(222, 256))  # 34 bytes: "==" padding; + and / (standard), - and _ (URL-safe)
        standard = base64.b64encode(raw).decode()
        url_safe = base64.urlsafe_b64encode(raw).decode()
        self.assertTrue(standard.endswith("==") and standard != url_safe)
        for text in [standard, standard.rstrip("="), url_safe, url_safe.rstrip("="), f"  {standard}\n"]:
            with self.subTest(text):
                self.assertEqual(decode_secret(text), raw)
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        last = alphabet[alphabet.index(standard[-3]) ^ 1]
        for text in [
            standard[:-1],  # one "=" where two belong
            standard + "=",
            standard[:10] + "=" + standard[10:],
            standard.replace("/", "_", 1),  # both alphabets at once
            standard[:-3] + last + "==",  # a stray bit in the last character
            "not base64!",
            "A",
        ]:
            with self.subTest(text):
                self.assertIsNone(decode_secret(text))
        self.assertEqual(decode_secret(""), b"", "empty is base64 of nothing, and too short")
        self.assert_refused("", "decodes to 0 bytes", even_in_development=True)


class TokenRulesTests(unittest.TestCase):
    def client(self, token: str, policy: SecretPolicy = STRICT) -> CompanionClient:
        return CompanionClient("http://127.0.0.1:1", token, policy=policy)

    def assert_refused(self, token: str, reason: str, *, even_in_development: bool) -> None:
        with self.assertRaisesRegex(ConfigError, reason) as refused:
            self.client(token)
        self.assertIn("the companion token", str(refused.exception))
        if len(token) > 10:  # shorter ones are words of the message itself
            self.assertNotIn(token, str(refused.exception), "the token never shows")
        if even_in_development:
            with self.assertRaisesRegex(ConfigError, reason):
                self.client(token, DEVELOPMENT)
        else:
            with self.assertWarns(DevelopmentSecretWarning) as warned:
                self.client(token, DEVELOPMENT)
            self.assertIn("THE_SWITCH", str(warned.warning))
            if len(token) > 10:
                self.assertNotIn(token, str(warned.warning))

    def test_a_strong_token_passes_without_a_warning(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            self.client(GOOD_TOKEN)
            self.client("abcdef" * 6)  # exactly 6 distinct
            self.client(support.secret("companion_token"))

    def test_a_token_under_32_characters_is_weak(self) -> None:
        self.assert_refused(GOOD_TOKEN[:31], "shorter than 32", even_in_development=False)
        self.assert_refused("dev-token-change-me-0123456789", "shorter than 32", even_in_development=False)
        self.assert_refused("t", "shorter than 32", even_in_development=False)

    def test_a_token_of_fewer_than_6_distinct_characters_is_weak(self) -> None:
        self.assert_refused("abcde" * 8, "fewer than 6 distinct", even_in_development=False)

    def test_a_placeholder_token_is_refused_even_in_development(self) -> None:
        for token in ["REPLACE-ME-openssl-rand-hex-24-0123456789", "replace-me" * 4]:
            with self.subTest(token):
                self.assert_refused(token, "placeholder", even_in_development=True)

    def test_a_token_that_cannot_go_into_a_header_is_refused(self) -> None:
        for token in ["", GOOD_TOKEN + " x", GOOD_TOKEN + "\r\nx: y", GOOD_TOKEN + "é", GOOD_TOKEN + "\x00"]:
            with self.subTest(token=token), self.assertRaisesRegex(ConfigError, "visible ASCII"):
                self.client(token, DEVELOPMENT)


if __name__ == "__main__":
    unittest.main()
