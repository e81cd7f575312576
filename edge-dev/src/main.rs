//! `edge-dev`: the development proxy. Runs the filter's `.wasm` as Envoy would, configured from
//! `envoy.yaml` (listener, routes, clusters, the filter's plugin configuration).

use clap::Parser;
use edge_dev::envoy_config::DevConfig;
use edge_dev::logging::{self, LogFormat};
use std::path::PathBuf;
use std::process::ExitCode;

/// Serve HTTP through the edge-session filter, as Envoy would, from envoy.yaml.
#[derive(Parser)]
#[command(name = "edge-dev", version)]
struct Args {
    /// The Envoy configuration to read.
    #[arg(long, default_value = "envoy.yaml")]
    config: PathBuf,
    /// Listen here instead of the listener's address.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Override a cluster's address: NAME=HOST:PORT (repeatable).
    #[arg(long = "cluster", value_parser = parse_override)]
    clusters: Vec<(String, String)>,
    /// Use this .wasm instead of the file named in the configuration.
    #[arg(long)]
    wasm: Option<PathBuf>,
    /// A JSON object merged over the plugin configuration from the file: each top-level
    /// field replaces the file's, and `null` removes it. `cargo xtask demo --store cookie`
    /// switches the filter's store this way, with envoy.yaml unchanged.
    #[arg(long, value_name = "JSON")]
    plugin_config_override: Option<String>,
    /// Worker threads, each serving its own connections with its own VM (as Envoy's), the
    /// VMs sharing one shared-data store.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Proxy without the filter (no module loaded): the baseline for benchmarks.
    #[arg(long)]
    no_filter: bool,
    /// How log lines are written (stderr; RUST_LOG filters them, default info).
    #[arg(long, env = "EDGE_DEV_LOG_FORMAT", value_enum, default_value_t)]
    log_format: LogFormat,
}

fn parse_override(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(name, address)| (name.to_string(), address.to_string()))
        .ok_or_else(|| format!("expected NAME=HOST:PORT, got {text:?}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    logging::init(args.log_format);
    let mut config = match DevConfig::load(&args.config) {
        Ok(config) => config,
        Err(err) => {
            tracing::error!(error = %err, "cannot read the configuration");
            return ExitCode::from(2);
        }
    };
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    for (name, address) in args.clusters {
        if config.clusters.insert(name.clone(), address).is_none() {
            tracing::warn!(cluster = %name, "--cluster adds a cluster envoy.yaml does not have");
        }
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(wasm) = args.wasm {
        config.plugin.filename = wasm;
    }
    if let Some(over) = &args.plugin_config_override {
        match merge_over(&config.plugin.configuration, over) {
            Ok(merged) => config.plugin.configuration = merged,
            Err(err) => {
                tracing::error!(error = %err, "cannot apply --plugin-config-override");
                return ExitCode::from(2);
            }
        }
    }
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!(address = %config.listen, error = %err, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    let workers = args.workers.max(1);
    let filter = !args.no_filter;
    tracing::info!(address = %format!("http://{}", config.listen), workers, filter, "listening");
    let host = harness::Host::new();
    logging::forward_host_log(&host);
    match edge_dev::serve_on(host, config, workers, filter, listener, shutdown()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "exiting");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let terminated = async {
        match term.as_mut() {
            Some(term) => {
                term.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminated => {}
    }
}

/// `over`'s top-level fields replace `base`'s; a `null` removes the field.
fn merge_over(base: &str, over: &str) -> Result<String, String> {
    let parse = |text: &str, what: &str| match serde_json::from_str(text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        _ => Err(format!("the {what} is not a JSON object")),
    };
    let mut merged = parse(base, "plugin configuration")?;
    for (key, value) in parse(over, "override")? {
        match value {
            serde_json::Value::Null => merged.remove(&key),
            value => merged.insert(key, value),
        };
    }
    Ok(serde_json::Value::Object(merged).to_string())
}

#[cfg(test)]
mod tests {
    use super::merge_over;

    #[test]
    fn an_override_replaces_and_removes_top_level_fields() {
        let merged = merge_over(
            r#"{"keys": [1], "companion": {"cluster": "c"}, "cookie": {"secure": false}}"#,
            r#"{"store": "cookie", "companion": null, "cookie": {"name": "s"}}"#,
        )
        .unwrap();
        let merged: serde_json::Value = serde_json::from_str(&merged).unwrap();
        assert_eq!(
            merged,
            serde_json::json!({"keys": [1], "cookie": {"name": "s"}, "store": "cookie"})
        );
        assert!(merge_over("{}", "[1]").is_err());
        assert!(merge_over("not json", "{}").is_err());
    }
}
