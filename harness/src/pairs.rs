//! The proxy-wasm header-map serialization, as proxy-wasm-cpp-host's `pairs_util` reads and
//! writes it: little-endian `u32` count, then `(u32 key_len, u32 value_len)` per pair, then
//! each key and value followed by a NUL byte.

/// Envoy (through proxy-wasm-cpp-host `limits.h`) refuses serialized maps larger than this.
pub const MAX_PAIRS_BYTES: usize = 1 << 20;
/// ... or with more pairs than this.
pub const MAX_PAIRS_COUNT: usize = 1024;

/// Why a serialized map could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairsError {
    #[error("serialized map of {0} bytes is over the {MAX_PAIRS_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("serialized map claims {0} pairs, over the {MAX_PAIRS_COUNT}-pair limit")]
    TooManyPairs(usize),
    #[error("serialized map is truncated")]
    Truncated,
    #[error("serialized map entry {0} is not NUL-terminated")]
    MissingTerminator(usize),
    #[error("serialized map has {0} trailing bytes")]
    TrailingBytes(usize),
}

/// Serializes `pairs`. An empty map becomes an empty buffer, as cpp-host returns it.
pub fn serialize<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Vec<u8> {
    if pairs.is_empty() {
        return Vec::new();
    }
    let size = 4 + pairs
        .iter()
        .map(|(k, v)| 10 + k.as_ref().len() + v.as_ref().len())
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&len_u32(pairs.len()).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&len_u32(k.as_ref().len()).to_le_bytes());
        out.extend_from_slice(&len_u32(v.as_ref().len()).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_ref());
        out.push(0);
        out.extend_from_slice(v.as_ref());
        out.push(0);
    }
    out
}

fn len_u32(len: usize) -> u32 {
    // Guest memory is 32-bit, so nothing that came from or goes to a guest is longer.
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Reads a serialized map. Accepts the three empty forms seen in the wild: no bytes, a single
/// NUL byte (allowed by the spec) and a zero count (what the Rust SDK sends).
/// The pairs point into `bytes`: nothing is copied.
pub fn deserialize(bytes: &[u8]) -> Result<Vec<(&[u8], &[u8])>, PairsError> {
    if bytes.len() > MAX_PAIRS_BYTES {
        return Err(PairsError::TooLarge(bytes.len()));
    }
    if bytes.is_empty() || bytes == [0] {
        return Ok(Vec::new());
    }
    let count = read_u32(bytes, 0)? as usize;
    if count > MAX_PAIRS_COUNT {
        return Err(PairsError::TooManyPairs(count));
    }
    let mut data = 4 + count * 8;
    if data > bytes.len() {
        return Err(PairsError::Truncated);
    }
    let mut pairs = Vec::with_capacity(count);
    for i in 0..count {
        let key_len = read_u32(bytes, 4 + i * 8)? as usize;
        let value_len = read_u32(bytes, 8 + i * 8)? as usize;
        let key = take_terminated(bytes, &mut data, key_len, i)?;
        let value = take_terminated(bytes, &mut data, value_len, i)?;
        pairs.push((key, value));
    }
    if data != bytes.len() {
        return Err(PairsError::TrailingBytes(bytes.len() - data));
    }
    Ok(pairs)
}

/// Reads a serialized map the way Envoy does for the maps a module hands it
/// (`proxy_set_header_map_pairs`, a local reply's or a callout's headers): one over the limits
/// reads as empty (cpp-host `PairsUtil::toPairs`), so `set_header_map_pairs` then removes
/// every header and answers OK. A malformed map is still an error, where cpp-host reads it as
/// empty too: refusing it surfaces the bug instead.
pub fn deserialize_within_limits(bytes: &[u8]) -> Result<Vec<(&[u8], &[u8])>, PairsError> {
    match deserialize(bytes) {
        Err(PairsError::TooLarge(_) | PairsError::TooManyPairs(_)) => Ok(Vec::new()),
        other => other,
    }
}

fn read_u32(bytes: &[u8], at: usize) -> Result<u32, PairsError> {
    let raw = bytes.get(at..at + 4).ok_or(PairsError::Truncated)?;
    let mut word = [0u8; 4];
    word.copy_from_slice(raw);
    Ok(u32::from_le_bytes(word))
}

fn take_terminated<'a>(
    bytes: &'a [u8],
    at: &mut usize,
    len: usize,
    entry: usize,
) -> Result<&'a [u8], PairsError> {
    let end = at.checked_add(len).ok_or(PairsError::Truncated)?;
    let slice = bytes.get(*at..end).ok_or(PairsError::Truncated)?;
    match bytes.get(end) {
        Some(0) => {}
        Some(_) => return Err(PairsError::MissingTerminator(entry)),
        None => return Err(PairsError::Truncated),
    }
    *at = end + 1;
    Ok(slice)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        list.iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn serializes_the_spec_example_byte_for_byte() {
        let bytes = serialize(&pairs(&[("a", "1"), ("b", "22")]));
        let expected: Vec<u8> = vec![
            2, 0, 0, 0, // count
            1, 0, 0, 0, 1, 0, 0, 0, // a, 1
            1, 0, 0, 0, 2, 0, 0, 0, // b, 22
            b'a', 0, b'1', 0, b'b', 0, b'2', b'2', 0,
        ];
        assert_eq!(bytes, expected);
    }

    #[test]
    fn round_trips_binary_values_and_empty_strings() {
        let original = vec![
            (b"x-bin".to_vec(), vec![0xff, 0x80, 0x7f]),
            (b"empty".to_vec(), Vec::new()),
            (Vec::new(), b"no name".to_vec()),
        ];
        let bytes = serialize(&original);
        let borrowed: Vec<(&[u8], &[u8])> = original
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
            .collect();
        assert_eq!(deserialize(&bytes), Ok(borrowed));
    }

    #[test]
    fn accepts_every_empty_form() {
        assert_eq!(deserialize(&[]), Ok(vec![]));
        assert_eq!(deserialize(&[0]), Ok(vec![]));
        assert_eq!(deserialize(&[0, 0, 0, 0]), Ok(vec![]));
        assert!(serialize::<&[u8], &[u8]>(&[]).is_empty());
    }

    #[test]
    fn refuses_malformed_maps() {
        let good = serialize(&pairs(&[("k", "v")]));
        assert_eq!(
            deserialize(&good[..good.len() - 1]),
            Err(PairsError::Truncated)
        );
        let mut unterminated = good.clone();
        let last = unterminated.len() - 1;
        unterminated[last] = b'x';
        assert_eq!(
            deserialize(&unterminated),
            Err(PairsError::MissingTerminator(0))
        );
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(deserialize(&trailing), Err(PairsError::TrailingBytes(1)));
        assert_eq!(deserialize(&[5, 0, 0, 0]), Err(PairsError::Truncated));
        assert_eq!(deserialize(&[1, 0]), Err(PairsError::Truncated));
        let huge_len: Vec<u8> = [1u32, u32::MAX, 0]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        assert_eq!(deserialize(&huge_len), Err(PairsError::Truncated));
    }

    #[test]
    fn enforces_envoy_limits() {
        let many = (MAX_PAIRS_COUNT as u32 + 1).to_le_bytes();
        assert_eq!(
            deserialize(&many),
            Err(PairsError::TooManyPairs(MAX_PAIRS_COUNT + 1))
        );
        let big = vec![0u8; MAX_PAIRS_BYTES + 1];
        assert_eq!(
            deserialize(&big),
            Err(PairsError::TooLarge(MAX_PAIRS_BYTES + 1))
        );
        assert_eq!(deserialize_within_limits(&many), Ok(vec![]));
        assert_eq!(deserialize_within_limits(&big), Ok(vec![]));
        assert_eq!(
            deserialize_within_limits(&[1, 0]),
            Err(PairsError::Truncated),
            "malformed is not a limit"
        );
    }
}
