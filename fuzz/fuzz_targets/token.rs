//! The token verifier (`filter::token::Keyring::verify`): arbitrary bytes never panic, and
//! only a token a configured key signed verifies. Round trip: an id signed by the ring
//! verifies to the same id, and any single-byte change, deletion or insertion fails.
#![no_main]

use edge_session_fuzz::{SECRET_K2, config, rotated};
use filter::config::Config;
use libfuzzer_sys::fuzz_target;
use proto::SessionId;
use std::sync::OnceLock;

/// `k2` alone, to re-sign what the ring verified under `k2`.
fn old_key() -> &'static Config {
    static OLD: OnceLock<Config> = OnceLock::new();
    OLD.get_or_init(|| config(&[("k2", SECRET_K2)]))
}

fuzz_target!(|data: &[u8]| {
    let keys = &rotated().keys;
    // Arbitrary input: a token that verifies is exactly what its key signs for that id.
    if let Ok(id) = keys.verify(data) {
        let resigned = if data.starts_with(b"k2.") {
            old_key().keys.sign(&id)
        } else {
            keys.sign(&id)
        };
        assert_eq!(
            resigned.as_bytes(),
            data,
            "a token verified that no key signed"
        );
    }
    // Round trip with an id made from the input.
    let Some((id_bytes, rest)) = data.split_first_chunk::<32>() else {
        return;
    };
    let id = SessionId::from_bytes(id_bytes);
    let token = keys.sign(&id).into_bytes();
    assert_eq!(
        keys.verify(&token),
        Ok(id.clone()),
        "a signed token does not verify"
    );
    let (at, with) = match rest {
        [a, b, ..] => (usize::from(*a) % token.len(), *b),
        [a] => (usize::from(*a) % token.len(), 0),
        [] => (0, 0),
    };
    let mut changed = token.clone();
    changed[at] ^= with.max(1);
    assert!(
        keys.verify(&changed).is_err(),
        "a changed byte still verifies"
    );
    let mut shorter = token.clone();
    shorter.remove(at);
    assert!(
        keys.verify(&shorter).is_err(),
        "a deleted byte still verifies"
    );
    let mut longer = token;
    longer.insert(at, with);
    assert!(
        keys.verify(&longer).is_err(),
        "an inserted byte still verifies"
    );
});
