//! New session ids: 32 bytes from the operating system's CSPRNG.

use proto::{SESSION_ID_BYTES, SessionId};

/// A fresh id. Fails only if the operating system cannot give randomness, in which case no
/// session may be created at all.
pub fn new_session_id() -> Result<SessionId, getrandom::Error> {
    let mut bytes = [0u8; SESSION_ID_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(SessionId::from_bytes(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_well_formed_and_distinct() {
        let a = new_session_id().unwrap();
        let b = new_session_id().unwrap();
        assert_ne!(a, b);
        assert!(SessionId::parse(a.as_str()).is_ok());
    }
}
