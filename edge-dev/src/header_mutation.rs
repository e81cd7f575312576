//! The part of Envoy's `envoy.filters.http.header_mutation` filter `edge-dev` runs: the
//! `remove` entries of `mutations.request_mutations`, applied where the filter sits in
//! `http_filters`. Placed before the Wasm filter it strips headers from every request, so a
//! worker that runs without the Wasm filter (its plugin did not start there) still strips them.

use crate::envoy_config::{ConfigError, error};
use serde_yaml::Value;

/// Request header names to remove, lowercase, on each side of the Wasm filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestRemovals {
    /// From `header_mutation` filters placed before the Wasm filter: the Wasm filter never
    /// sees these headers.
    pub before_filter: Vec<String>,
    /// From those between the Wasm filter and the router: removed from what the Wasm filter
    /// sends upstream.
    pub after_filter: Vec<String>,
}

/// Reads one `header_mutation` filter entry (`http_filters.{index}`): its request removals,
/// with a warning for each mutation `edge-dev` does not apply.
pub fn read_removals(
    filter: &Value,
    index: usize,
    warnings: &mut Vec<String>,
) -> Result<Vec<String>, ConfigError> {
    let path = format!("http_filters.{index}.typed_config.mutations");
    let Some(mutations) = filter.get("typed_config").and_then(|c| c.get("mutations")) else {
        return Ok(Vec::new());
    };
    let mut removals = Vec::new();
    if let Some(map) = mutations.as_mapping() {
        for (key, value) in map {
            if key.as_str() != Some("request_mutations") {
                warnings.push(format!("{path}.{} ignored", key.as_str().unwrap_or("?")));
                continue;
            }
            let list = value
                .as_sequence()
                .ok_or_else(|| error(&format!("{path}.request_mutations"), "must be a list"))?;
            for (i, mutation) in list.iter().enumerate() {
                let at = format!("{path}.request_mutations.{i}");
                match mutation.get("remove") {
                    Some(name) => {
                        let name = name
                            .as_str()
                            .filter(|n| !n.is_empty())
                            .ok_or_else(|| error(&at, "remove must name a header"))?;
                        removals.push(name.to_ascii_lowercase());
                    }
                    None => warnings.push(format!("{at} ignored: edge-dev applies only remove")),
                }
            }
        }
    }
    Ok(removals)
}

/// Removes every header named in `names` (any case) from `headers`.
pub fn remove(names: &[String], headers: &mut Vec<(Vec<u8>, Vec<u8>)>) {
    if names.is_empty() {
        return;
    }
    headers.retain(|(name, _)| {
        !names
            .iter()
            .any(|n| n.as_bytes().eq_ignore_ascii_case(name))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_remove_entries_and_warns_about_the_rest() {
        let filter: Value = serde_yaml::from_str(
            r#"
name: envoy.filters.http.header_mutation
typed_config:
  "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
  mutations:
    request_mutations:
    - remove: X-Session-State
    - remove: x-session-user
    - append: { header: { key: a, value: b } }
    response_mutations:
    - remove: server
"#,
        )
        .unwrap();
        let mut warnings = Vec::new();
        let names = read_removals(&filter, 0, &mut warnings).unwrap();
        assert_eq!(names, vec!["x-session-state", "x-session-user"]);
        assert_eq!(warnings.len(), 2, "{warnings:?}");

        let bad: Value = serde_yaml::from_str(
            "typed_config: { mutations: { request_mutations: [ { remove: 3 } ] } }",
        )
        .unwrap();
        let err = read_removals(&bad, 4, &mut warnings).unwrap_err();
        assert_eq!(
            err.path,
            "http_filters.4.typed_config.mutations.request_mutations.0"
        );
    }

    #[test]
    fn removes_every_spelling_of_a_name_and_nothing_else() {
        let mut headers = vec![
            (b"x-session-user".to_vec(), b"1".to_vec()),
            (b"X-Session-User".to_vec(), b"2".to_vec()),
            (b"x-session-users".to_vec(), b"3".to_vec()),
        ];
        remove(&["x-session-user".to_string()], &mut headers);
        assert_eq!(headers, vec![(b"x-session-users".to_vec(), b"3".to_vec())]);
    }
}
