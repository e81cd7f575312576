//! Turns testdata/test_keys.json into one constant per secret (`OUT_DIR/keys.rs`), so the
//! tests use them where a `&str` constant is needed and the file stays their one copy.

use serde_json::Value;
use std::path::Path;

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let source = Path::new(&manifest).join("../testdata/test_keys.json");
    println!("cargo::rerun-if-changed={}", source.display());
    let text = std::fs::read_to_string(&source)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", source.display()));
    let json: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", source.display()));
    let Some(secrets) = json["secrets"].as_object() else {
        panic!("{} has no \"secrets\" object", source.display());
    };
    let mut out = String::new();
    for (name, entry) in secrets {
        let (Some(value), Some(about)) = (entry["value"].as_str(), entry["about"].as_str()) else {
            panic!("secrets.{name} needs a string \"value\" and \"about\"");
        };
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "secrets.{name}: names are lower_snake_case"
        );
        out += &format!("#[doc = {about:?}]\n");
        out += &format!(
            "pub const {}: &str = {value:?};\n",
            name.to_ascii_uppercase()
        );
    }
    let dest = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("keys.rs");
    std::fs::write(&dest, out).unwrap_or_else(|e| panic!("cannot write {}: {e}", dest.display()));
}
