//! The control-header parser (`filter::control`): whatever an app puts in its response
//! headers, parsing never panics; what it accepts holds only valid values within the limits;
//! what it refuses names a control header; and every plan's companion body serializes and
//! reads back as the same request.
#![no_main]

use edge_session_fuzz::rotated;
use filter::control::{self, WritePlan};
use libfuzzer_sys::fuzz_target;
use proto::{CreateSessionRequest, PatchSession, SessionId};

const NAMES: [&str; 8] = [
    "x-session-set",
    "x-session-user",
    "x-session-expiry",
    "x-session-cycle",
    "x-session-flush",
    "X-Session-Set",
    "content-type",
    "x-session-other",
];
const LIMITS: [usize; 4] = [0, 16, 512, 8192];
/// The proxy's clock for absolute expiries: 2026-01-01T00:00:00Z.
const NOW: i128 = 1_767_225_600_000_000_000;

// Input: one byte of options, then one header per line: a byte choosing the name, the value.
fuzz_target!(|data: &[u8]| {
    let Some((options, lines)) = data.split_first() else {
        return;
    };
    let max_bytes = LIMITS[usize::from(options & 3)];
    let current = (options & 4 != 0).then(|| SessionId::from_bytes(&[7; 32]));
    let headers: Vec<(String, Vec<u8>)> = lines
        .split(|b| *b == b'\n')
        .filter_map(|line| {
            let (pick, value) = line.split_first()?;
            Some((
                NAMES[usize::from(*pick) % NAMES.len()].to_string(),
                value.to_vec(),
            ))
        })
        .collect();
    let names = &rotated().headers;
    let is_control = |name: &str| {
        name.to_ascii_lowercase().starts_with("x-session-") && name != "x-session-other"
    };
    let controls = match control::parse(names, &headers, max_bytes, NOW) {
        Err(err) => {
            assert!(
                is_control(&err.header),
                "refused a header that is not a control: {err}"
            );
            return;
        }
        Ok(None) => {
            assert!(
                !headers.iter().any(|(n, _)| is_control(n)),
                "control headers ignored"
            );
            return;
        }
        Ok(Some(controls)) => controls,
    };
    for (name, value) in &headers {
        assert!(
            !is_control(name) || value.len() <= max_bytes,
            "{name} over the limit accepted"
        );
    }
    if let Some(set) = &controls.set {
        assert!(set.keys().all(|k| proto::valid_data_key(k)), "an empty key accepted");
        assert!(
            proto::data_within_depth(set),
            "data deeper than the companion stores accepted"
        );
    }
    if let Some(user) = &controls.user {
        assert!(proto::valid_user(user), "a user id the companion refuses accepted");
    }
    let flush = controls.flush;
    let plan = control::plan(controls, current.as_ref(), rotated());
    match plan {
        Some(WritePlan::Flush(id)) => assert!(flush && id == current),
        _ if flush => panic!("flush lost: {plan:?}"),
        Some(WritePlan::Create(create)) => {
            assert!(current.is_none());
            round_trip::<CreateSessionRequest>(&create);
        }
        Some(WritePlan::Patch(id, patch)) => {
            assert!(current.as_ref() == Some(&id));
            round_trip::<PatchSession>(&patch);
        }
        Some(WritePlan::Cycle(id, then)) => {
            assert!(current.as_ref() == Some(&id));
            if let Some(patch) = then {
                round_trip::<PatchSession>(&patch);
            }
        }
        None => {}
    }
});

/// The body the filter sends is read by the companion as the same request.
fn round_trip<T>(value: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let body = match serde_json::to_vec(value) {
        Ok(body) => body,
        Err(err) => panic!("a companion body does not serialize: {err}"),
    };
    match serde_json::from_slice::<T>(&body) {
        Ok(back) => assert_eq!(&back, value, "the companion would read another request"),
        Err(err) => panic!("the companion cannot read the body the filter sends: {err}"),
    }
}
