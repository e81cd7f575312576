//! An HTTP header map with Envoy's semantics: names lowercased on the way in, order kept,
//! repeated names allowed, values as raw bytes.

use std::fmt;

/// Headers of a request, response or callout, as Envoy holds them.
///
/// Every name and value lives in one byte buffer, and the entries are spans of it: building,
/// copying and dropping a map are two allocations each, not two per header (the harness does
/// this for every request, on the path the benchmarks time). A removed header's bytes stay in
/// the buffer until it is mostly garbage.
#[derive(Clone, Default)]
pub struct HeaderMap {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
}

/// One header: its name is `bytes[start..middle]` of the buffer, its value `bytes[middle..end]`.
#[derive(Clone, Copy)]
struct Entry {
    start: usize,
    middle: usize,
    end: usize,
}

impl Entry {
    fn name(self, bytes: &[u8]) -> &[u8] {
        &bytes[self.start..self.middle]
    }

    fn value(self, bytes: &[u8]) -> &[u8] {
        &bytes[self.middle..self.end]
    }
}

/// A map with nothing in it, for maps that read as empty where Envoy holds none.
pub(crate) static EMPTY_MAP: HeaderMap = HeaderMap {
    bytes: Vec::new(),
    entries: Vec::new(),
};

impl HeaderMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a map from `(name, value)` pairs, lowercasing names as Envoy's codecs do.
    pub fn from_pairs<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Self {
        let mut map = Self::new();
        map.set_pairs(pairs);
        map
    }

    /// Removes every header, keeping the memory for the next ones.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.entries.clear();
    }

    /// Replaces every header with `pairs` (`proxy_set_header_map_pairs`), reusing the memory.
    pub fn set_pairs<K: AsRef<[u8]>, V: AsRef<[u8]>>(&mut self, pairs: &[(K, V)]) {
        self.clear();
        let size = pairs
            .iter()
            .map(|(k, v)| k.as_ref().len() + v.as_ref().len())
            .sum();
        self.bytes.reserve(size);
        self.entries.reserve(pairs.len());
        for (k, v) in pairs {
            self.add(k.as_ref(), v.as_ref());
        }
    }

    /// The values of `name` (any case), in order.
    fn values<'m, 'n>(&'m self, name: &'n [u8]) -> impl Iterator<Item = &'m [u8]> + use<'m, 'n> {
        self.entries
            .iter()
            .filter(move |e| e.name(&self.bytes).eq_ignore_ascii_case(name))
            .map(|e| e.value(&self.bytes))
    }

    /// The first value of `name` (Envoy's `proxy_get_header_map_value` returns only the first).
    pub fn get_bytes(&self, name: impl AsRef<[u8]>) -> Option<&[u8]> {
        self.values(name.as_ref()).next()
    }

    /// The first value of `name` as text; `None` when absent or not UTF-8.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_bytes(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every value of `name`, in order.
    pub fn get_all(&self, name: &str) -> Vec<&str> {
        self.values(name.as_bytes())
            .filter_map(|v| std::str::from_utf8(v).ok())
            .collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get_bytes(name).is_some()
    }

    /// Appends a value, keeping any existing ones (`proxy_add_header_map_value`).
    pub fn add(&mut self, name: &[u8], value: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(name);
        let middle = self.bytes.len();
        self.bytes[start..middle].make_ascii_lowercase();
        self.bytes.extend_from_slice(value);
        self.entries.push(Entry {
            start,
            middle,
            end: self.bytes.len(),
        });
    }

    /// Removes every value of `name`, then appends one (`proxy_replace_header_map_value`; Envoy's
    /// `setCopy` with `http_set_copy_replace_all_headers`, on by default).
    pub fn replace(&mut self, name: &[u8], value: &[u8]) {
        self.remove(name);
        self.add(name, value);
    }

    /// Removes every value of `name`; absent names are fine (`proxy_remove_header_map_value`).
    pub fn remove(&mut self, name: &[u8]) {
        let bytes = &self.bytes;
        self.entries
            .retain(|e| !e.name(bytes).eq_ignore_ascii_case(name));
        // Removed headers leave their bytes behind; once they are most of the buffer, compact.
        if self.bytes.len() > 256 && self.byte_size() < self.bytes.len() / 2 {
            *self = Self::from_pairs(&self.iter().collect::<Vec<_>>());
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total bytes of names and values (Envoy's `HeaderMap::byteSize`).
    pub fn byte_size(&self) -> usize {
        self.entries.iter().map(|e| e.end - e.start).sum()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries
            .iter()
            .map(|e| (e.name(&self.bytes), e.value(&self.bytes)))
    }

    /// The entries as lossy text, for assertions and messages.
    pub fn to_strings(&self) -> Vec<(String, String)> {
        self.iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }
}

/// Two maps are equal when they hold the same headers in the same order, whatever removed
/// bytes either buffer still carries.
impl PartialEq for HeaderMap {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for HeaderMap {}

impl fmt::Debug for HeaderMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.to_strings()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercased_and_first_value_wins() {
        let map = HeaderMap::from_pairs(&[("X-A", "1"), ("x-a", "2")]);
        assert_eq!(map.get("x-a"), Some("1"));
        assert_eq!(map.get("X-A"), Some("1"));
        assert_eq!(map.get_all("x-a"), vec!["1", "2"]);
    }

    #[test]
    fn replace_collapses_repeats_and_remove_tolerates_absence() {
        let mut map = HeaderMap::from_pairs(&[("a", "1"), ("b", "x"), ("a", "2")]);
        map.replace(b"A", b"3");
        assert_eq!(
            map.to_strings(),
            vec![("b".into(), "x".into()), ("a".into(), "3".into())]
        );
        map.remove(b"missing");
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn removed_bytes_never_show_and_equality_ignores_them() {
        let mut map = HeaderMap::new();
        for i in 0..100 {
            map.add(format!("X-{i}").as_bytes(), &[b'v'; 10]);
        }
        for i in 0..99 {
            map.remove(format!("x-{i}").as_bytes());
        }
        assert_eq!(map.to_strings(), vec![("x-99".into(), "v".repeat(10))]);
        assert_eq!(map.byte_size(), 14);
        assert_eq!(map, HeaderMap::from_pairs(&[("x-99", "vvvvvvvvvv")]));
        assert_ne!(map, HeaderMap::from_pairs(&[("x-99", "v")]));
        map.set_pairs(&[("A", "1")]);
        assert_eq!(map.to_strings(), vec![("a".into(), "1".into())]);
    }
}
