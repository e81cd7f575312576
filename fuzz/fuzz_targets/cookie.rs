//! The cookie parser (`filter::cookie`): whatever bytes arrive in `cookie` headers, finding
//! and removing the session cookie never panics, removal leaves no session cookie behind and
//! is idempotent, and whatever value `find` returns came from one of the headers.
#![no_main]

use filter::cookie;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Several `cookie` headers, one per line (Envoy never passes a newline inside a value).
    let headers: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    let found = cookie::find(headers.iter().copied(), "sid");
    if let cookie::Found::One(value) = found {
        let within = |h: &&[u8]| {
            let (start, end) = (h.as_ptr() as usize, h.as_ptr() as usize + h.len());
            let at = value.as_ptr() as usize;
            start <= at && at + value.len() <= end
        };
        assert!(
            headers.iter().any(within),
            "find returned bytes from nowhere"
        );
        assert!(
            headers
                .iter()
                .any(|h| cookie::without(h, "sid").as_deref() != Some(*h)),
            "a session cookie was found that removal does not remove"
        );
    }
    for header in &headers {
        let Some(rest) = cookie::without(header, "sid") else {
            continue;
        };
        assert!(rest.len() <= header.len() + header.len() / 2 + 2);
        assert_eq!(
            cookie::find([rest.as_slice()], "sid"),
            cookie::Found::None,
            "removal left a session cookie"
        );
        assert_eq!(
            cookie::without(&rest, "sid").as_deref(),
            Some(rest.as_slice()),
            "removal is not idempotent"
        );
    }
});
