//! Parses plugin configurations with the filter's own parser, natively: the same
//! `Config::parse` that `on_configure` runs inside Envoy. `cargo xtask test` feeds it the JSON
//! embedded in `envoy.yaml`, in docker-compose's Envoy config and in the Istio WasmPlugin, so a
//! deploy file whose plugin config Envoy would refuse fails the build here instead.
//!
//! Run: `cargo run -p filter --example check_plugin_config -- FILE...` (each FILE one JSON
//! document). Exits 1 naming the file and the bad field if any is refused.

use std::process::ExitCode;

fn main() -> ExitCode {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: check_plugin_config FILE...");
        return ExitCode::from(2);
    }
    let mut refused = 0;
    for file in &files {
        let outcome = std::fs::read(file)
            .map_err(|e| format!("cannot read: {e}"))
            .and_then(|bytes| filter::config::Config::parse(&bytes).map_err(|e| e.to_string()));
        match outcome {
            Ok(config) => println!(
                "plugin config ok: {file} (companion cluster {:?}, on_store_error {:?})",
                config
                    .companion
                    .as_ref()
                    .map_or("(none)", |c| c.cluster.as_str()),
                config.on_store_error
            ),
            Err(err) => {
                eprintln!("plugin config REFUSED: {file}: {err}");
                refused += 1;
            }
        }
    }
    if refused == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
