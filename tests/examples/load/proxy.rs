//! End to end through `edge-dev`: the same trivial upstream behind three proxies started side
//! by side, the filter with its cache (hits), the filter with the cache off (every request a
//! callout to the companion) and no filter at all, loaded in rotation by `wrk` in one run.

use crate::wrk::{self, LoadResult};
use crate::{Error, Settings, Spawned, binary, free_addr, wait_for};
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The upstream: answers every request at once; `/login` also writes a session through the
/// filter's response headers, which gives the benchmark a real cookie.
async fn upstream(
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"ok\n")));
    if request.uri().path() == "/login" {
        let headers = response.headers_mut();
        headers.insert(
            "x-session-set",
            hyper::header::HeaderValue::from_static(r#"{"cart":[1,2]}"#),
        );
        headers.insert(
            "x-session-user",
            hyper::header::HeaderValue::from_static("u-42"),
        );
    }
    Ok(response)
}

/// Serves [`upstream`] on its own thread and runtime, so a blocking `wrk` run elsewhere never
/// stalls it.
fn start_upstream() -> Result<SocketAddr, Error> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service_fn(upstream))
                        .await;
                });
            }
        });
    });
    Ok(addr)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    NoFilter,
    CacheHit,
    CacheMiss,
}

impl Variant {
    const ALL: [Variant; 3] = [Self::NoFilter, Self::CacheHit, Self::CacheMiss];

    fn describe(self) -> &'static str {
        match self {
            Self::NoFilter => "no filter (edge-dev --no-filter)",
            Self::CacheHit => "filter, cache hit",
            Self::CacheMiss => "filter, cache off (callout per request)",
        }
    }
}

/// `envoy.yaml` with the cache turned off in the filter's configuration.
fn without_cache(envoy: &str) -> Result<String, Error> {
    let marker = r#""cookie": {"secure": false},"#;
    if !envoy.contains(marker) {
        return Err(format!("envoy.yaml no longer has {marker}; update the benchmark").into());
    }
    Ok(envoy.replacen(marker, &format!(r#"{marker} "cache": {{"ttl_ms": 0}},"#), 1))
}

fn start_proxy(
    variant: Variant,
    config: &Path,
    wasm: &Path,
    companion: &str,
    app: SocketAddr,
) -> Result<(Spawned, SocketAddr), Error> {
    let listen = free_addr()?;
    let mut cmd = Command::new(binary("edge-dev")?);
    cmd.arg("--config")
        .arg(config)
        .arg("--wasm")
        .arg(wasm)
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--cluster")
        .arg(format!("companion={companion}"))
        .arg("--cluster")
        .arg(format!("legacy_app={app}"))
        .stderr(std::process::Stdio::null());
    if variant == Variant::NoFilter {
        cmd.arg("--no-filter");
    }
    Ok((Spawned(cmd.spawn()?), listen))
}

pub async fn run(settings: &Settings, uri: &str, root: &Path, wasm: &Path) -> Result<(), Error> {
    let database = format!("bench_e2e_{}", std::process::id());
    let (_companion, companion_url) = crate::companion::start(uri, &database).await?;
    let companion = companion_url.trim_start_matches("http://").to_string();
    let app = start_upstream()?;
    let envoy = std::fs::read_to_string(root.join("envoy.yaml"))?;
    let uncached: PathBuf =
        std::env::temp_dir().join(format!("bench-envoy-{}.yaml", std::process::id()));
    std::fs::write(&uncached, without_cache(&envoy)?)?;
    let cached = root.join("envoy.yaml");
    let mut proxies = Vec::new();
    for variant in Variant::ALL {
        let config = if variant == Variant::CacheMiss {
            &uncached
        } else {
            &cached
        };
        let (child, addr) = start_proxy(variant, config, wasm, &companion, app)?;
        proxies.push((variant, child, addr));
    }
    for (_, _, addr) in &proxies {
        wait_for(*addr).await?;
    }
    let hit = proxies
        .iter()
        .find(|p| p.0 == Variant::CacheHit)
        .map(|p| p.2)
        .ok_or("no proxy")?;
    let login = reqwest::Client::new()
        .get(format!("http://{hit}/login"))
        .send()
        .await?;
    let cookie = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("sid="))
        .and_then(|v| v.split(';').next())
        .ok_or("logging in through edge-dev gave no session cookie")?
        .to_string();
    let headers = [format!("Cookie: theme=dark; {cookie}")];
    for (_, _, addr) in &proxies {
        wrk::run(
            &format!("http://{addr}/account"),
            settings.proxy_connections,
            std::time::Duration::from_secs(1),
            &headers,
        )?;
    }
    let mut results: Vec<Vec<LoadResult>> = vec![Vec::new(); proxies.len()];
    for round in 0..settings.rounds {
        // Rotate the order so no variant always runs first or last.
        for k in 0..proxies.len() {
            let i = (round + k) % proxies.len();
            let url = format!("http://{}/account", proxies[i].2);
            results[i].push(wrk::run(
                &url,
                settings.proxy_connections,
                settings.duration,
                &headers,
            )?);
        }
    }
    let medians: Vec<LoadResult> = results.iter().map(|r| wrk::median(r)).collect();
    let base = medians[0];
    println!(
        "| edge-dev | req/s | p50 us | p99 us | req/s vs no filter | p99 vs no filter | errors | target: cache hit >= 0.75 of no filter |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for ((variant, _, _), m) in proxies.iter().zip(&medians) {
        let share = m.requests_per_second / base.requests_per_second;
        let verdict = match variant {
            Variant::CacheHit if share >= 0.75 => "met",
            Variant::CacheHit => "missed",
            _ => "",
        };
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {share:.2} | {:.2} | {} | {verdict} |",
            variant.describe(),
            m.requests_per_second,
            m.p50_us,
            m.p99_us,
            m.p99_us / base.p99_us,
            m.errors,
        );
    }
    println!(
        "\n{} connections, {} rounds of {} s per proxy, rotated; medians. Same upstream (in-process, answers at once), companion and database for all three; 2 edge-dev workers each.",
        settings.proxy_connections,
        settings.rounds,
        settings.duration.as_secs()
    );
    let _ = std::fs::remove_file(&uncached);
    Ok(())
}
