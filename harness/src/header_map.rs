//! An HTTP header map with Envoy's semantics: names lowercased on the way in, order kept,
//! repeated names allowed, values as raw bytes.

use std::fmt;

/// Headers of a request, response or callout, as Envoy holds them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HeaderMap {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

impl HeaderMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a map from `(name, value)` pairs, lowercasing names as Envoy's codecs do.
    pub fn from_pairs<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Self {
        let mut map = Self::new();
        for (k, v) in pairs {
            map.add(k.as_ref(), v.as_ref());
        }
        map
    }

    /// The first value of `name` (Envoy's `proxy_get_header_map_value` returns only the first).
    pub fn get_bytes(&self, name: impl AsRef<[u8]>) -> Option<&[u8]> {
        let name = lowercase(name.as_ref());
        self.entries
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of `name` as text; `None` when absent or not UTF-8.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_bytes(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every value of `name`, in order.
    pub fn get_all(&self, name: &str) -> Vec<&str> {
        let name = lowercase(name.as_bytes());
        self.entries
            .iter()
            .filter(|(k, _)| *k == name)
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
            .collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get_bytes(name).is_some()
    }

    /// Appends a value, keeping any existing ones (`proxy_add_header_map_value`).
    pub fn add(&mut self, name: &[u8], value: &[u8]) {
        self.entries.push((lowercase(name), value.to_vec()));
    }

    /// Removes every value of `name`, then appends one (`proxy_replace_header_map_value`; Envoy's
    /// `setCopy` with `http_set_copy_replace_all_headers`, on by default).
    pub fn replace(&mut self, name: &[u8], value: &[u8]) {
        self.remove(name);
        self.add(name, value);
    }

    /// Removes every value of `name`; absent names are fine (`proxy_remove_header_map_value`).
    pub fn remove(&mut self, name: &[u8]) {
        let name = lowercase(name);
        self.entries.retain(|(k, _)| *k != name);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total bytes of names and values (Envoy's `HeaderMap::byteSize`).
    pub fn byte_size(&self) -> usize {
        self.entries.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// The entries as lossy text, for assertions and messages.
    pub fn to_strings(&self) -> Vec<(String, String)> {
        self.entries
            .iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    pub(crate) fn entries(&self) -> &[(Vec<u8>, Vec<u8>)] {
        &self.entries
    }
}

impl fmt::Debug for HeaderMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.to_strings()).finish()
    }
}

fn lowercase(name: &[u8]) -> Vec<u8> {
    name.to_ascii_lowercase()
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
}
