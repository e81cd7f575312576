//! `edge-dev`: the development proxy. Runs the filter's `.wasm` as Envoy would, configured from
//! `envoy.yaml` (listener, routes, clusters, the filter's plugin configuration).

use clap::Parser;
use edge_dev::envoy_config::DevConfig;
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
    /// Worker threads, each serving its own connections with its own VM (as Envoy's), the
    /// VMs sharing one shared-data store.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Proxy without the filter (no module loaded): the baseline for benchmarks.
    #[arg(long)]
    no_filter: bool,
}

fn parse_override(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(name, address)| (name.to_string(), address.to_string()))
        .ok_or_else(|| format!("expected NAME=HOST:PORT, got {text:?}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut config = match DevConfig::load(&args.config) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("edge-dev: {err}");
            return ExitCode::from(2);
        }
    };
    for warning in &config.warnings {
        eprintln!("edge-dev: warning: {warning}");
    }
    for (name, address) in args.clusters {
        if config.clusters.insert(name.clone(), address).is_none() {
            eprintln!(
                "edge-dev: warning: --cluster {name} adds a cluster envoy.yaml does not have"
            );
        }
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(wasm) = args.wasm {
        config.plugin.filename = wasm;
    }
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("edge-dev: cannot listen on {}: {err}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    let workers = args.workers.max(1);
    eprintln!(
        "edge-dev: listening on http://{} ({workers} workers{})",
        config.listen,
        if args.no_filter { ", no filter" } else { "" }
    );
    let shutdown = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
        }
    };
    // Every line the filter (or the host) logs goes to the terminal as it comes; the host
    // keeps only the newest (a ring), so memory stays flat however long edge-dev runs.
    let host = harness::Host::new();
    host.set_log_sink(|line| eprintln!("edge-dev: {line}"));
    match edge_dev::serve_on(host, config, workers, !args.no_filter, listener, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("edge-dev: {err}");
            ExitCode::FAILURE
        }
    }
}
