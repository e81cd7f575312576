"""Finding the session cookie in a request as the filter does (filter/src/cookie.rs), with the
rule for several cookies of one name: different values are no session, the same value is one."""

from __future__ import annotations

import unittest

from edge_session.cookies import RequestCookie, session_cookie


class SessionCookieTests(unittest.TestCase):
    def test_finds_the_cookie_as_the_filter_does(self) -> None:
        cases: list[tuple[str | None, str | None]] = [
            ("sid=abc", "abc"),
            ("a=1; sid=abc; b=2", "abc"),
            ("a=1;sid=abc", "abc"),
            ("  sid = abc  ;", "abc"),
            ('sid="abc"', "abc"),
            ("garbage; ;;=; sid=abc", "abc"),
            ("sidx=abc; xsid=def", None),
            ("SID=abc", None),
            ("sid", None),
            ("sid=", ""),
            ("", None),
            (None, None),
            ("a=\xff\xfe; sid=ok", "ok"),  # WSGI hands over bytes as Latin-1 text
            ("sid=a\xa0", "a\xa0"),  # only ASCII whitespace is trimmed, as Rust's trim_ascii
        ]
        for header, expected in cases:
            with self.subTest(header=header):
                self.assertEqual(session_cookie(header, "sid"), RequestCookie(expected))

    def test_different_values_of_the_name_are_no_session(self) -> None:
        for header in [
            "sid=first; sid=second",
            "sid=second; sid=first",
            "sid=planted; a=1; sid=mine",
            "sid=a,sid=b",  # two Cookie headers as WSGI servers join them
            "sid=a; b=1,sid=c",
            "sid=; sid=abc",  # an empty value is a value
            'sid="abc"; sid=abd',
            "sid=a; sid=a; sid=b",
        ]:
            with self.subTest(header=header):
                self.assertEqual(session_cookie(header, "sid"), RequestCookie(None, conflicting=True))

    def test_the_same_value_repeated_is_one_cookie(self) -> None:
        for header in [
            "sid=abc; sid=abc",
            "sid=abc,sid=abc",
            'sid="abc"; sid=abc',
            " sid=abc ;sid = abc",
            "sid=abc; x=1; sid=abc",
        ]:
            with self.subTest(header=header):
                self.assertEqual(session_cookie(header, "sid"), RequestCookie("abc"))

    def test_other_names_never_count(self) -> None:
        found = session_cookie("sid=abc; other=1; other=2; Sid=x; sid_=y", "sid")
        self.assertEqual(found, RequestCookie("abc"))
        self.assertEqual(session_cookie("__Host-sid=a; sid=b", "__Host-sid"), RequestCookie("a"))


if __name__ == "__main__":
    unittest.main()
