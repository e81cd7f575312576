//! The server: worker threads, each with its own runtime, accept loop, HTTP client and (with
//! the filter) VM, as Envoy's workers; the base VM started once before them.

use crate::envoy_config::DevConfig;
use crate::proxy::{Proxy, handle};
use crate::worker::{self, Msg};
use harness::{Host, Plugin, PluginConfig, Vm};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use std::rc::Rc;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

/// What every worker thread shares: the configuration, the host (stats and log; with the
/// filter also the shared data and clock its VMs run on) and, with the filter, the module.
pub(crate) struct Shared {
    pub(crate) config: DevConfig,
    pub(crate) host: Host,
    pub(crate) plugin: Option<Plugin>,
}

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("cannot load the filter module: {0}")]
    Plugin(String),
    #[error("a worker did not start: {0}")]
    Worker(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves `listener` on `workers` threads (at least one) until `shutdown` resolves. Each
/// thread accepts connections and serves them to the end on its own single-threaded runtime,
/// with the filter's VM in the same thread (as Envoy's workers): a request never waits on
/// another thread for the filter. Without `filter` the module is not loaded and requests go
/// straight to their route, on the same threads: the baseline the end-to-end benchmark
/// compares the filter against.
pub async fn serve(
    config: DevConfig,
    workers: usize,
    filter: bool,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DevError> {
    serve_on(Host::new(), config, workers, filter, listener, shutdown).await
}

/// Like [`serve`], on a host the caller keeps: its stats (the codec's counters among them)
/// and its log (the `edge-dev` binary prints each line as it comes).
pub async fn serve_on(
    host: Host,
    config: DevConfig,
    workers: usize,
    filter: bool,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DevError> {
    let plugin = if filter {
        for name in config.clusters.keys() {
            host.add_cluster(name);
        }
        let plugin = Plugin::load(&host, &config.plugin.filename)
            .map_err(|e| DevError::Plugin(e.to_string()))?;
        // Envoy starts the plugin once before its workers (the base VM); a plugin that does
        // not start there is refused, and Envoy does not start.
        host.clock().advance_to(worker::now_nanos());
        Vm::start_named(&plugin, plugin_config(&config), "main")
            .map_err(|e| DevError::Plugin(format!("the plugin does not start: {e}")))?;
        Some(plugin)
    } else {
        None
    };
    let shared = Arc::new(Shared {
        config,
        host,
        plugin,
    });
    let listener = listener.into_std()?;
    let (stop, stopped) = watch::channel(false);
    let mut started = Vec::new();
    for i in 0..workers.max(1) {
        let (ready, is_ready) = oneshot::channel();
        let (shared, listener, stopped) = (shared.clone(), listener.try_clone()?, stopped.clone());
        std::thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || worker_thread(i, shared, listener, stopped, ready))?;
        started.push(is_ready);
    }
    for is_ready in started {
        is_ready
            .await
            .map_err(|_| DevError::Worker("the worker thread died while starting".into()))??;
    }
    shutdown.await;
    let _ = stop.send(true);
    Ok(())
}

/// Runs an HTTP/2 connection's streams on the worker's own thread, where its VM lives.
#[derive(Clone, Copy)]
struct LocalExec;

impl<F: std::future::Future + 'static> hyper::rt::Executor<F> for LocalExec {
    fn execute(&self, future: F) {
        tokio::task::spawn_local(future);
    }
}

/// What Envoy's `PluginConfig` gives the plugin, from `envoy.yaml`.
pub(crate) fn plugin_config(config: &DevConfig) -> PluginConfig {
    let mut plugin_config = PluginConfig::new(config.plugin.configuration.clone().into_bytes());
    plugin_config.name = config.plugin.name.clone();
    plugin_config.root_id = config.plugin.root_id.clone();
    plugin_config.vm_id = config.plugin.vm_id.clone();
    plugin_config.failure_policy = config.plugin.failure_policy;
    plugin_config
}

/// A worker thread: its runtime, its VM, its accept loop. Reports on `ready` once it serves.
fn worker_thread(
    index: usize,
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    mut stopped: watch::Receiver<bool>,
    ready: oneshot::Sender<Result<(), DevError>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            let _ = ready.send(Err(DevError::Io(err)));
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let proxy = match Proxy::start(index, shared) {
            Ok(proxy) => Rc::new(proxy),
            Err(err) => {
                let _ = ready.send(Err(err));
                return;
            }
        };
        let listener = match TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(err) => {
                let _ = ready.send(Err(DevError::Io(err)));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        if let Some(vm) = proxy.vm.clone() {
            tokio::task::spawn_local(async move {
                let mut tick = tokio::time::interval(worker::TICK);
                loop {
                    tick.tick().await;
                    vm.handle(Msg::Tick);
                }
            });
        }
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    // Another worker may have taken the connection first.
                    let Ok((stream, _)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let proxy = proxy.clone();
                    tokio::task::spawn_local(async move {
                        let service = service_fn(move |request| handle(proxy.clone(), request));
                        // HTTP/1.1, or HTTP/2 with prior knowledge (h2c), as Envoy's codec_type
                        // AUTO tells them apart on a plain-text listener.
                        let _ = auto::Builder::new(LocalExec)
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                _ = stopped.changed() => return,
            }
        }
    });
}
