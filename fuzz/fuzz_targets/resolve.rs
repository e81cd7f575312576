//! The companion-reply parser (`filter::store::companion::resolution`) and what the filter injects from
//! the session it yields (`filter::inject`): whatever the companion (or anything answering in
//! its place) sends, classifying never panics; a session is accepted only when it is the one
//! asked for and still live; and every injected header is visible ASCII within the limit, with
//! the data header reading back as the session's data.
#![no_main]

use edge_session_fuzz::{EXPECTED_ID, NOW_NANOS, rotated};
use filter::inject;
use filter::store::Resolution;
use filter::store::companion;
use libfuzzer_sys::fuzz_target;
use proto::SessionId;
use serde_json::Value;

const MAX_HEADER_BYTES: usize = 512;

// Input: a byte choosing the status (no reply, 200, 404, or the next three bytes), the body.
fuzz_target!(|data: &[u8]| {
    let Some((pick, rest)) = data.split_first() else {
        return;
    };
    let (status, body): (Option<&[u8]>, &[u8]) = match pick % 4 {
        0 => (None, rest),
        1 => (Some(b"200"), rest),
        2 => (Some(b"404"), rest),
        _ => rest
            .split_at_checked(3)
            .map_or((Some(rest), &[][..]), |(s, b)| (Some(s), b)),
    };
    let Ok(expected) = SessionId::parse(EXPECTED_ID) else {
        panic!("EXPECTED_ID is not a session id");
    };
    let Resolution::Found(session) = companion::resolution(status, body, &expected, NOW_NANOS) else {
        return;
    };
    assert_eq!(
        status,
        Some(&b"200"[..]),
        "a session from a reply that is not a 200"
    );
    assert_eq!(session.id, expected, "another session accepted");
    assert!(
        session.expires_at.unix_nanos() > NOW_NANOS,
        "an expired session accepted"
    );
    let names = &rotated().headers;
    let injection = inject::for_session(names, &session, MAX_HEADER_BYTES);
    for (name, value) in &injection.headers {
        assert!(
            value.len() <= MAX_HEADER_BYTES,
            "{name} over the limit injected"
        );
        assert!(
            value
                .bytes()
                .all(|b| b == b'\t' || (0x20..0x7f).contains(&b)),
            "{name} carries a byte a header must not: {value:?}"
        );
    }
    if let Some((_, data)) = injection.headers.iter().find(|(n, _)| *n == names.data) {
        match serde_json::from_str::<Value>(data) {
            Ok(Value::Object(map)) => assert_eq!(map, session.data, "data reads back otherwise"),
            other => panic!("the data header is not the data: {other:?}"),
        }
    }
});
