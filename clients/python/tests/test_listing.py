"""The user listing's shape: handles computed as the companion does, summaries checked."""

from __future__ import annotations

import unittest

from edge_session.companion import CompanionUnavailable, SessionSummary, session_handle

# proto's pinned value (proto/src/session_handle.rs): the id of the bytes 0..32.
ID = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
HANDLE = "vc86YyI-rc7uZbuCD_I65w"

SUMMARY = {
    "handle": HANDLE,
    "created_at": "2026-01-01T00:00:00Z",
    "last_seen_at": "2026-01-01T00:05:00Z",
    "expires_at": "2026-01-02T00:00:00Z",
    "browser_session": False,
    "user_agent": "Mozilla/5.0",
    "client_address": "203.0.113.7",
}


class ListingTests(unittest.TestCase):
    def test_the_handle_of_an_id_is_the_companions(self) -> None:
        self.assertEqual(session_handle(ID), HANDLE)
        self.assertEqual(len(session_handle(ID)), 22)
        self.assertNotIn(ID, session_handle(ID))

    def test_a_summary_is_read_with_its_optional_origin(self) -> None:
        summary = SessionSummary.from_json(SUMMARY)
        self.assertEqual((summary.handle, summary.user_agent, summary.client_address), (HANDLE, "Mozilla/5.0", "203.0.113.7"))
        bare = {k: v for k, v in SUMMARY.items() if k not in ("user_agent", "client_address")}
        self.assertEqual(SessionSummary.from_json(bare).user_agent, None)

    def test_anything_else_is_not_a_summary(self) -> None:
        for body in [
            None,
            [],
            "x",
            {k: v for k, v in SUMMARY.items() if k != "handle"},
            {**SUMMARY, "handle": ID},
            {**SUMMARY, "handle": HANDLE[:-1]},
            {**SUMMARY, "handle": HANDLE[:-1] + "+"},
            {**SUMMARY, "handle": 5},
        ]:
            with self.subTest(body=body), self.assertRaises(CompanionUnavailable):
                SessionSummary.from_json(body)


if __name__ == "__main__":
    unittest.main()
