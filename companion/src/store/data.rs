//! Session data between the API's JSON and MongoDB's BSON, keys escaped at every depth.

use super::keys::{self, KeyError};
use bson::{Bson, Document};
use serde_json::{Map, Number, Value};
use std::fmt;

/// Deeper data is refused; the filter holds control headers to the same limit.
pub const MAX_DEPTH: usize = proto::MAX_DATA_DEPTH;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataError {
    Key(KeyError),
    TooDeep,
    IntegerOutOfRange,
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Key(err) => err.fmt(f),
            Self::TooDeep => write!(
                f,
                "session data is nested more than {MAX_DEPTH} levels deep"
            ),
            Self::IntegerOutOfRange => {
                f.write_str("integers in session data must fit in 64 signed bits")
            }
        }
    }
}

impl From<KeyError> for DataError {
    fn from(err: KeyError) -> Self {
        Self::Key(err)
    }
}

/// A value stored under a top-level data key (`data.<key>`), as BSON, object keys escaped. It
/// sits one level down, as in `object_to_document`, so a PATCH allows exactly the depth a
/// create does.
pub fn to_bson(value: &Value, max_key_bytes: usize) -> Result<Bson, DataError> {
    convert(value, max_key_bytes, 1)
}

/// A JSON object as a BSON document, keys escaped.
pub fn object_to_document(
    map: &Map<String, Value>,
    max_key_bytes: usize,
) -> Result<Document, DataError> {
    object(map, max_key_bytes, 0)
}

fn object(
    map: &Map<String, Value>,
    max_key_bytes: usize,
    depth: usize,
) -> Result<Document, DataError> {
    let mut doc = Document::new();
    for (key, value) in map {
        doc.insert(
            keys::escape(key, max_key_bytes)?,
            convert(value, max_key_bytes, depth + 1)?,
        );
    }
    Ok(doc)
}

fn convert(value: &Value, max_key_bytes: usize, depth: usize) -> Result<Bson, DataError> {
    if depth > MAX_DEPTH {
        return Err(DataError::TooDeep);
    }
    Ok(match value {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Bson::Int64(i),
            (None, Some(_)) if n.is_u64() => return Err(DataError::IntegerOutOfRange),
            (None, Some(f)) => Bson::Double(f),
            (None, None) => return Err(DataError::IntegerOutOfRange),
        },
        Value::String(s) => Bson::String(s.clone()),
        Value::Array(items) => Bson::Array(
            items
                .iter()
                .map(|v| convert(v, max_key_bytes, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Bson::Document(object(map, max_key_bytes, depth)?),
    })
}

/// A stored BSON document as the JSON object the API shows, keys unescaped.
pub fn document_to_object(doc: &Document) -> Map<String, Value> {
    doc.iter()
        .map(|(k, v)| (keys::unescape(k), to_json(v)))
        .collect()
}

fn to_json(value: &Bson) -> Value {
    match value {
        Bson::Null | Bson::Undefined => Value::Null,
        Bson::Boolean(b) => Value::Bool(*b),
        Bson::Int32(i) => Value::from(*i),
        Bson::Int64(i) => Value::from(*i),
        Bson::Double(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Bson::String(s) => Value::String(s.clone()),
        Bson::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Bson::Document(doc) => Value::Object(document_to_object(doc)),
        // Only JSON-born values are ever stored; anything else was written by someone else.
        other => other.clone().into_relaxed_extjson(),
    }
}

/// The size of data as the API measures it: its compact JSON.
pub fn json_size(map: &Map<String, Value>) -> usize {
    serde_json::to_vec(map).map_or(usize::MAX, |v| v.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_round_trips_through_bson_with_any_keys() {
        let data = json!({
            "_auth_user_id": "42",
            "cart.items": [1, 2.5, {"nested.key": null, "$op": true}],
            "100%": "Zoë",
            "big": i64::MAX,
            "neg": -7,
        });
        let map = data.as_object().unwrap();
        let doc = object_to_document(map, 256).unwrap();
        assert!(doc.keys().all(|k| !k.contains('.') && !k.starts_with('$')));
        assert_eq!(Value::Object(document_to_object(&doc)), data);
    }

    #[test]
    fn refuses_what_cannot_be_stored_faithfully() {
        let too_big = json!({"n": u64::MAX});
        assert_eq!(
            object_to_document(too_big.as_object().unwrap(), 256),
            Err(DataError::IntegerOutOfRange)
        );
        let empty_key = json!({"": 1});
        assert_eq!(
            object_to_document(empty_key.as_object().unwrap(), 256),
            Err(DataError::Key(KeyError::Empty))
        );
        let mut deep = json!(1);
        for _ in 0..(MAX_DEPTH + 1) {
            deep = json!({"d": deep});
        }
        assert_eq!(
            object_to_document(deep.as_object().unwrap(), 256),
            Err(DataError::TooDeep)
        );
    }

    /// A value set by PATCH under a top-level key was counted from 0, one level more lenient
    /// than the same value in a created session.
    #[test]
    fn a_patched_value_is_held_to_the_depth_of_a_created_one() {
        for depth in [MAX_DEPTH, MAX_DEPTH + 1] {
            let mut value = json!(1);
            for _ in 1..depth {
                value = json!([value]);
            }
            let data = json!({ "k": value.clone() });
            let created = object_to_document(data.as_object().unwrap(), 256).map(|_| ());
            let patched = to_bson(&value, 256).map(|_| ());
            assert_eq!(patched, created, "depth {depth}");
            assert_eq!(created.is_ok(), depth <= MAX_DEPTH, "depth {depth}");
        }
    }
}
