//! Scale (issue 18, docs/operations.md "Sizing"): several `edge-dev` proxies in front of one
//! companion, many sessions asked for with Zipf popularity at a fixed request rate, in two
//! configurations (a 2 s cache without the revocation feed; a 60 s cache with the feed every
//! second). For each it reports:
//!
//! - companion reads (`GET /v1/sessions/{id}`) per 1000 requests, counted by the companion
//!   itself (`companion_http_requests_total` on its `/metrics`, every status), beside what a
//!   replay of the same requests through per-worker TTL caches and the steady-state model
//!   (`model.rs`) predict;
//! - the feed's polls per second at the companion (`GET /v1/revocations`, same counter);
//! - logout-to-refusal time on another proxy: a session that proxy B serves is logged out
//!   through proxy A, then B is asked every 20 ms until it no longer answers `valid`.
//!
//! Then what the model makes of it for a fleet of 100 proxies. Prints Markdown; asserts
//! nothing. Every proxy is a separate `edge-dev` process with the release `filter.wasm`; the
//! load comes from this process over keep-alive connections, each request to one proxy, so
//! every popular session is asked for on every proxy (no sticky load balancing).

mod model;

use crate::{Error, Spawned, binary, env_number, free_addr, wait_for};
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use model::{Rng, Sent, Zipf};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Zipf's exponent: about 1 is what web popularity measures give.
const ZIPF_S: f64 = 1.0;
const SEED: u64 = 0x5CA1_E000_0018;
/// Worker threads per proxy (edge-dev's default; one filter VM and cache each).
const WORKERS: usize = 2;
/// Client connections per proxy, so both workers get a share of each proxy's load.
const CONNECTIONS: usize = 8;
/// The first logged-out session's popularity rank (from 1): popular enough that every worker
/// of every proxy has it cached, not so popular that ending it moves much of the load.
const FIRST_LOGOUT_RANK: usize = 5;
/// How often the other proxy is asked after a logout.
const PROBE_EVERY: Duration = Duration::from_millis(20);
/// How long a refusal is waited for before the logout counts as never refused.
const PROBE_LIMIT: Duration = Duration::from_secs(4);
/// Load before the measured window: both configurations reach their feed's head and fill
/// their caches for this long first.
const WARMUP: Duration = Duration::from_secs(4);
/// Where the plugin configuration of `envoy.yaml` gets the benchmark's settings.
const MARKER: &str = r#""cookie": {"secure": false},"#;

/// The two configurations compared.
#[derive(Clone, Copy)]
struct Variant {
    describe: &'static str,
    ttl_ms: u64,
    /// 0: no feed.
    feed_interval_ms: u64,
}

const VARIANTS: [Variant; 2] = [
    Variant {
        describe: "cache 2 s, no feed",
        ttl_ms: 2_000,
        feed_interval_ms: 0,
    },
    Variant {
        describe: "cache 60 s, feed every 1 s",
        ttl_ms: 60_000,
        feed_interval_ms: 1_000,
    },
];

struct Settings {
    sessions: usize,
    proxies: usize,
    /// Requests per second over all proxies.
    rate: f64,
    window: Duration,
}

/// What one configuration measured.
struct Outcome {
    variant: Variant,
    /// Requests sent in the measured window (load, probes and logouts).
    requests: u64,
    window_seconds: f64,
    /// Answers in the window that were not `valid`, by state (probes after a logout
    /// excluded).
    not_valid: BTreeMap<String, u64>,
    failed: u64,
    reads: u64,
    polls: u64,
    replayed_reads: u64,
    /// Seconds from the logout's answer to the first refusal on the other proxy; `None`
    /// where none came within [`PROBE_LIMIT`].
    refusals: Vec<Option<f64>>,
}

pub async fn run(uri: &str, root: &Path, wasm: &Path) -> Result<(), Error> {
    let settings = Settings {
        sessions: env_number("SCALE_SESSIONS", 10_000).max(10) as usize,
        proxies: env_number("SCALE_PROXIES", 3).max(2) as usize,
        rate: env_number("SCALE_RATE", 600).max(10) as f64,
        window: Duration::from_secs(env_number("SCALE_SECONDS", 20).max(8)),
    };
    let database = format!("bench_scale_{}", std::process::id());
    let (_companion, companion_url) = crate::companion::start(uri, &database).await?;
    let companion = companion_url.trim_start_matches("http://").to_string();
    let app = start_upstream()?;
    let envoy = std::fs::read_to_string(root.join("envoy.yaml"))?;
    let zipf = Arc::new(Zipf::new(settings.sessions, ZIPF_S));

    let started = Instant::now();
    let cookies = {
        let configs = write_configs(&envoy, VARIANTS[0])?;
        let (_proxy, addr) = start_proxy(&configs, wasm, &companion, app)?;
        wait_for(addr).await?;
        let mut cookies = vec![String::new(); settings.sessions];
        for (n, cookie) in log_in(addr, (0..settings.sessions).collect()).await? {
            cookies[n] = cookie;
        }
        cookies
    };
    eprintln!(
        "scale: {} sessions logged in in {:.1} s",
        cookies.len(),
        started.elapsed().as_secs_f64()
    );
    let mut cookies = Arc::new(cookies);
    let mut outcomes = Vec::new();
    for variant in VARIANTS {
        eprintln!("scale: {}", variant.describe);
        let (outcome, logged_in_again) = run_variant(
            variant,
            &settings,
            &envoy,
            wasm,
            &companion_url,
            app,
            &cookies,
            &zipf,
        )
        .await?;
        // The next configuration gets the same workload: the sessions logged out here are
        // back, under new cookies.
        let mut next = cookies.as_ref().clone();
        for (n, cookie) in logged_in_again {
            next[n] = cookie;
        }
        cookies = Arc::new(next);
        outcomes.push(outcome);
    }
    print_tables(&settings, &zipf, &outcomes);
    mongodb::Client::with_uri_str(uri)
        .await?
        .database(&database)
        .drop()
        .await?;
    Ok(())
}

/// The upstream: `/login?n=N` writes session N (user `u-N`) through the filter's control
/// headers, `/logout` ends the session, anything else answers at once with the session
/// state the filter injected, in `x-seen-state`.
async fn upstream(
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"ok\n")));
    let path = request.uri().path();
    let headers = response.headers_mut();
    if path == "/login" {
        let n = request
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("n="))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        let user = hyper::header::HeaderValue::from_str(&format!("u-{n}"));
        let data = hyper::header::HeaderValue::from_str(&format!(r#"{{"n":{n}}}"#));
        if let (Ok(user), Ok(data)) = (user, data) {
            headers.insert("x-session-user", user);
            headers.insert("x-session-set", data);
        }
    } else if path == "/logout" {
        headers.insert(
            "x-session-flush",
            hyper::header::HeaderValue::from_static("1"),
        );
    } else if let Some(state) = request.headers().get("x-session-state") {
        headers.insert("x-seen-state", state.clone());
    }
    Ok(response)
}

/// Serves [`upstream`] on its own thread and runtime, beside the load.
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

/// `envoy.yaml` with the variant's cache TTL and feed interval, written where edge-dev can
/// read it.
fn write_configs(envoy: &str, variant: Variant) -> Result<PathBuf, Error> {
    if !envoy.contains(MARKER) {
        return Err(format!("envoy.yaml no longer has {MARKER}; update the benchmark").into());
    }
    let settings = format!(
        r#"{MARKER} "cache": {{"ttl_ms": {}}}, "revocation_feed": {{"interval_ms": {}}},"#,
        variant.ttl_ms, variant.feed_interval_ms
    );
    let path = std::env::temp_dir().join(format!(
        "bench-scale-{}-{}.yaml",
        std::process::id(),
        variant.ttl_ms
    ));
    std::fs::write(&path, envoy.replacen(MARKER, &settings, 1))?;
    Ok(path)
}

fn start_proxy(
    config: &Path,
    wasm: &Path,
    companion: &str,
    app: SocketAddr,
) -> Result<(Spawned, SocketAddr), Error> {
    let listen = free_addr()?;
    let child = Command::new(binary("edge-dev")?)
        .arg("--config")
        .arg(config)
        .arg("--wasm")
        .arg(wasm)
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--workers")
        .arg(WORKERS.to_string())
        .arg("--cluster")
        .arg(format!("companion={companion}"))
        .arg("--cluster")
        .arg(format!("legacy_app={app}"))
        .stderr(std::process::Stdio::null())
        .spawn()?;
    Ok((Spawned(child), listen))
}

/// Logs the users of sessions `indices` in through the proxy at `addr`, 16 at a time; their
/// cookies with their session's index.
async fn log_in(addr: SocketAddr, indices: Vec<usize>) -> Result<Vec<(usize, String)>, Error> {
    let client = reqwest::Client::new();
    let lanes = 16;
    let indices = Arc::new(indices);
    let mut tasks = Vec::new();
    for lane in 0..lanes {
        let (client, indices) = (client.clone(), indices.clone());
        tasks.push(tokio::spawn(async move {
            let mut cookies = Vec::new();
            for &n in indices.iter().skip(lane).step_by(lanes) {
                let login = client
                    .get(format!("http://{addr}/login?n={n}"))
                    .send()
                    .await?;
                let status = login.status();
                let cookie = login
                    .headers()
                    .get_all("set-cookie")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .find(|v| v.starts_with("sid="))
                    .and_then(|v| v.split(';').next())
                    .map(str::to_string);
                let Some(cookie) = cookie else {
                    let body = login.text().await.unwrap_or_default();
                    let body: String = body.chars().take(300).collect();
                    return Err(format!(
                        "login {n} gave no session cookie: status {status}, body {body:?}"
                    )
                    .into());
                };
                cookies.push((n, cookie));
            }
            Ok::<_, Error>(cookies)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    Ok(all)
}

/// The requests the companion has answered on `route` with `method`, any status, from its
/// `/metrics`.
async fn companion_count(
    client: &reqwest::Client,
    companion: &str,
    route: &str,
    method: &str,
) -> Result<u64, Error> {
    let text = client
        .get(format!("{companion}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(count_requests(&text, route, method))
}

fn count_requests(metrics: &str, route: &str, method: &str) -> u64 {
    let (route, method) = (format!("route=\"{route}\""), format!("method=\"{method}\""));
    metrics
        .lines()
        .filter(|l| l.starts_with("companion_http_requests_total{"))
        .filter(|l| l.contains(&route) && l.contains(&method))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// What one request found.
#[derive(Clone, PartialEq, Eq)]
enum Seen {
    Valid,
    /// Another state, as the app got it.
    NotValid(String),
    Failed,
}

/// A GET of `path` through `proxy` with `cookie`: the state the app was given.
async fn ask(client: &reqwest::Client, proxy: SocketAddr, path: &str, cookie: &str) -> Seen {
    let sent = client
        .get(format!("http://{proxy}{path}"))
        .header("cookie", cookie)
        .send()
        .await;
    match sent {
        Ok(reply) if reply.status().is_success() => {
            let state = reply
                .headers()
                .get("x-seen-state")
                .map(|s| String::from_utf8_lossy(s.as_bytes()).into_owned());
            // Read the body, so the connection goes back to the pool.
            let _ = reply.bytes().await;
            match state {
                Some(state) if state == "valid" => Seen::Valid,
                Some(state) => Seen::NotValid(state),
                None => Seen::NotValid("(none injected)".to_string()),
            }
        }
        _ => Seen::Failed,
    }
}

/// One client connection's share of the load: requests paced at `period`, each for a
/// Zipf-drawn session not yet logged out.
struct Lane {
    proxy: usize,
    connection: usize,
    addr: SocketAddr,
    period: Duration,
    seed: u64,
}

/// What a lane or the logout loop sent, and what came back.
#[derive(Default)]
struct Record {
    sent: Vec<Sent>,
    not_valid: Vec<(f64, String)>,
    failed: Vec<f64>,
}

#[allow(clippy::too_many_arguments)]
async fn run_variant(
    variant: Variant,
    settings: &Settings,
    envoy: &str,
    wasm: &Path,
    companion_url: &str,
    app: SocketAddr,
    cookies: &Arc<Vec<String>>,
    zipf: &Arc<Zipf>,
) -> Result<(Outcome, Vec<(usize, String)>), Error> {
    let config = write_configs(envoy, variant)?;
    let mut proxies = Vec::new();
    for _ in 0..settings.proxies {
        proxies.push(start_proxy(
            &config,
            wasm,
            companion_url.trim_start_matches("http://"),
            app,
        )?);
    }
    let addrs: Vec<SocketAddr> = proxies.iter().map(|p| p.1).collect();
    for addr in &addrs {
        wait_for(*addr).await?;
    }
    // One client per connection, so a lane's requests stay on one connection (one worker).
    let clients: Vec<Vec<reqwest::Client>> = addrs
        .iter()
        .map(|_| {
            (0..CONNECTIONS)
                .map(|_| reqwest::Client::builder().pool_max_idle_per_host(1).build())
                .collect::<Result<_, _>>()
        })
        .collect::<Result<_, _>>()?;
    // Start every worker (edge-dev starts a worker's VM on its first connection) and give
    // the feed's poller time to read the head: until then the filter caches nothing.
    for (p, lanes) in clients.iter().enumerate() {
        for client in lanes {
            let _ = client.get(format!("http://{}/", addrs[p])).send().await;
        }
    }
    tokio::time::sleep(Duration::from_millis(2_500)).await;

    let http = reqwest::Client::new();
    let logged_out: Arc<Vec<AtomicBool>> =
        Arc::new((0..cookies.len()).map(|_| AtomicBool::new(false)).collect());
    let start = Instant::now();
    let window_start = start + WARMUP;
    let end = window_start + settings.window;
    let lanes_total = settings.proxies * CONNECTIONS;
    let period = Duration::from_secs_f64(lanes_total as f64 / settings.rate);
    let mut tasks = Vec::new();
    for (proxy, lanes) in clients.iter().enumerate() {
        for (connection, client) in lanes.iter().enumerate() {
            let lane = Lane {
                proxy,
                connection,
                addr: addrs[proxy],
                period,
                seed: SEED ^ ((proxy * CONNECTIONS + connection) as u64) << 32,
            };
            tasks.push(tokio::spawn(load_lane(
                lane,
                client.clone(),
                cookies.clone(),
                zipf.clone(),
                logged_out.clone(),
                start,
                end,
            )));
        }
    }
    let logouts = tokio::spawn(logout_loop(
        addrs.clone(),
        cookies.clone(),
        logged_out.clone(),
        start,
        window_start,
        end,
    ));
    tokio::time::sleep_until(window_start.into()).await;
    let reads_before = companion_count(&http, companion_url, "/v1/sessions/{id}", "GET").await?;
    let polls_before = companion_count(&http, companion_url, "/v1/revocations", "GET").await?;
    let measured_from = start.elapsed().as_secs_f64();
    tokio::time::sleep_until(end.into()).await;
    let reads_after = companion_count(&http, companion_url, "/v1/sessions/{id}", "GET").await?;
    let polls_after = companion_count(&http, companion_url, "/v1/revocations", "GET").await?;
    let measured_to = start.elapsed().as_secs_f64();

    let mut record = Record::default();
    for task in tasks {
        let lane = task.await?;
        record.sent.extend(lane.sent);
        record.not_valid.extend(lane.not_valid);
        record.failed.extend(lane.failed);
    }
    let (logout_record, refusals) = logouts.await??;
    record.sent.extend(logout_record.sent);
    record.failed.extend(logout_record.failed);
    let ended = (0..cookies.len())
        .filter(|&n| logged_out[n].load(Ordering::Relaxed))
        .collect();
    let logged_in_again = log_in(addrs[0], ended).await?;
    drop(proxies);
    let _ = std::fs::remove_file(&config);

    let in_window = |t: &f64| *t >= measured_from && *t < measured_to;
    let outcome = Outcome {
        variant,
        requests: record.sent.iter().filter(|s| in_window(&s.at)).count() as u64,
        window_seconds: measured_to - measured_from,
        not_valid: record.not_valid.iter().filter(|(t, _)| in_window(t)).fold(
            BTreeMap::new(),
            |mut by_state, (_, state)| {
                *by_state.entry(state.clone()).or_default() += 1;
                by_state
            },
        ),
        failed: record.failed.iter().filter(|t| in_window(t)).count() as u64,
        reads: reads_after.saturating_sub(reads_before),
        polls: polls_after.saturating_sub(polls_before),
        replayed_reads: model::replay(
            &record.sent,
            WORKERS,
            variant.ttl_ms as f64 / 1000.0,
            measured_from,
            measured_to,
        ),
        refusals,
    };
    Ok((outcome, logged_in_again))
}

async fn load_lane(
    lane: Lane,
    client: reqwest::Client,
    cookies: Arc<Vec<String>>,
    zipf: Arc<Zipf>,
    logged_out: Arc<Vec<AtomicBool>>,
    start: Instant,
    end: Instant,
) -> Record {
    let mut rng = Rng::new(lane.seed);
    let mut record = Record::default();
    // Lanes start spread over one period, not all at once.
    let offset = lane.period.mul_f64(rng.unit());
    let mut tick = tokio::time::interval_at((start + offset).into(), lane.period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if Instant::now() >= end {
            return record;
        }
        let mut session = zipf.sample(&mut rng);
        while logged_out[session].load(Ordering::Relaxed) {
            session = zipf.sample(&mut rng);
        }
        let at = start.elapsed().as_secs_f64();
        record.sent.push(Sent {
            at,
            proxy: lane.proxy,
            connection: lane.connection,
            session,
        });
        match ask(&client, lane.addr, "/", &cookies[session]).await {
            Seen::Valid => {}
            // A logout racing with this draw.
            Seen::NotValid(_) if logged_out[session].load(Ordering::Relaxed) => {}
            Seen::NotValid(state) => record.not_valid.push((at, state)),
            Seen::Failed => record.failed.push(at),
        }
    }
}

/// Logs sessions out through one proxy and asks another (the next one) until it refuses,
/// one logout at a time, from the window's start until there is no time left for one.
async fn logout_loop(
    addrs: Vec<SocketAddr>,
    cookies: Arc<Vec<String>>,
    logged_out: Arc<Vec<AtomicBool>>,
    start: Instant,
    window_start: Instant,
    end: Instant,
) -> Result<(Record, Vec<Option<f64>>), Error> {
    // A connection per proxy for the probes, kept across logouts.
    let probes: Vec<reqwest::Client> = addrs
        .iter()
        .map(|_| reqwest::Client::builder().pool_max_idle_per_host(1).build())
        .collect::<Result<_, _>>()?;
    let mut rng = Rng::new(SEED ^ 0xB0B);
    let mut record = Record::default();
    let mut refusals = Vec::new();
    tokio::time::sleep_until(window_start.into()).await;
    let mut k = 0;
    while Instant::now() + PROBE_LIMIT + Duration::from_millis(600) < end {
        let session = FIRST_LOGOUT_RANK - 1 + k;
        let (a, b) = (k % addrs.len(), (k + 1) % addrs.len());
        k += 1;
        let Some(cookie) = cookies.get(session) else {
            break;
        };
        // B serves the session now; its load keeps it cached on every worker.
        note(&mut record, start, b, session);
        if ask(&probes[b], addrs[b], "/", cookie).await != Seen::Valid {
            continue;
        }
        logged_out[session].store(true, Ordering::Relaxed);
        note(&mut record, start, a, session);
        if ask(&probes[a], addrs[a], "/logout", cookie).await == Seen::Failed {
            record.failed.push(start.elapsed().as_secs_f64());
            continue;
        }
        let logged_out_at = Instant::now();
        let mut refused = None;
        while logged_out_at.elapsed() < PROBE_LIMIT {
            tokio::time::sleep(PROBE_EVERY).await;
            note(&mut record, start, b, session);
            if matches!(
                ask(&probes[b], addrs[b], "/", cookie).await,
                Seen::NotValid(_)
            ) {
                refused = Some(logged_out_at.elapsed().as_secs_f64());
                break;
            }
        }
        refusals.push(refused);
        // Out of step with the feed's interval, so the logouts sample every phase of it.
        tokio::time::sleep(Duration::from_millis(100 + rng.next_u64() % 500)).await;
    }
    Ok((record, refusals))
}

/// A probe or logout, sent over the proxy's probe connection (numbered apart from the lanes).
fn note(record: &mut Record, start: Instant, proxy: usize, session: usize) {
    record.sent.push(Sent {
        at: start.elapsed().as_secs_f64(),
        proxy,
        connection: 1_000 + proxy,
        session,
    });
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len().saturating_sub(1)) as f64 * q).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

fn print_tables(settings: &Settings, zipf: &Zipf, outcomes: &[Outcome]) {
    let per_worker = settings.rate / (settings.proxies * WORKERS) as f64;
    println!(
        "| configuration | requests/s | companion reads per 1000 requests | replay through TTL caches | steady state (model) | feed polls/s at the companion | logout to refusal on another proxy, p50 / max | logouts | answers not valid / failed |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |");
    for o in outcomes {
        let per_1000 = |n: u64| 1000.0 * n as f64 / o.requests.max(1) as f64;
        let ttl = o.variant.ttl_ms as f64 / 1000.0;
        let steady = 1000.0 * zipf.reads_per_second(per_worker, ttl) / per_worker;
        let mut refused: Vec<f64> = o.refusals.iter().flatten().copied().collect();
        refused.sort_by(f64::total_cmp);
        let never = o.refusals.len() - refused.len();
        let timing = if refused.is_empty() {
            "none refused".to_string()
        } else {
            format!(
                "{:.2} s / {:.2} s{}",
                percentile(&refused, 0.5),
                percentile(&refused, 1.0),
                if never > 0 {
                    format!(", {never} still valid after {} s", PROBE_LIMIT.as_secs())
                } else {
                    String::new()
                }
            )
        };
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {timing} | {} | {} / {} |",
            o.variant.describe,
            o.requests as f64 / o.window_seconds,
            per_1000(o.reads),
            per_1000(o.replayed_reads),
            steady,
            o.polls as f64 / o.window_seconds,
            o.refusals.len(),
            if o.not_valid.is_empty() {
                "0".to_string()
            } else {
                o.not_valid
                    .iter()
                    .map(|(state, n)| format!("{n} {state}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            o.failed,
        );
    }
    println!(
        "\n{} edge-dev proxies ({WORKERS} workers each, release `filter.wasm`), one companion, {} sessions with Zipf popularity (s = {ZIPF_S}, seeded), {:.0} requests/s spread evenly over {} keep-alive connections per proxy; {} s of load before a {} s measured window. Reads and polls are the companion's own counts over the window (`companion_http_requests_total`); requests include the logouts and probes. The replay sends the same requests through one TTL cache per worker (each connection on one worker); the steady state is the model's for {:.0} requests/s per worker once every cache has run for many TTLs (the 60 s cache is still filling during a short run). Logouts go through proxy A; proxy B (the next one) is asked every {} ms over one connection.",
        settings.proxies,
        settings.sessions,
        settings.rate,
        CONNECTIONS,
        WARMUP.as_secs(),
        settings.window.as_secs(),
        per_worker,
        PROBE_EVERY.as_millis(),
    );
    print_fleet(outcomes);
}

/// The model for a fleet of 100 proxies: companion reads per second (one database read
/// each), feed polls per second (one query each), and the logout window measured above.
fn print_fleet(outcomes: &[Outcome]) {
    const PROXIES: f64 = 100.0;
    const FLEET_WORKERS: f64 = 4.0;
    println!(
        "\n### Model: a fleet of {PROXIES:.0} proxies, {FLEET_WORKERS:.0} workers each\n\n| requests/s per proxy (fleet) | active sessions (Zipf s = {ZIPF_S}) | configuration | companion reads/s | feed polls/s | database queries/s | share of requests read | reads/s, cookie hashed to one proxy | cache entries per worker | logout refused elsewhere within |"
    );
    println!("| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for per_proxy in [100.0, 1_000.0] {
        for sessions in [10_000, 1_000_000] {
            let zipf = Zipf::new(sessions, ZIPF_S);
            let per_worker = per_proxy / FLEET_WORKERS;
            for o in outcomes {
                let ttl = o.variant.ttl_ms as f64 / 1000.0;
                let reads = PROXIES * FLEET_WORKERS * zipf.reads_per_second(per_worker, ttl);
                // A load balancer that hashes the session cookie sends each session to one
                // proxy: its workers then see 100 times the rate of that session.
                let sticky =
                    PROXIES * FLEET_WORKERS * zipf.reads_per_second(per_worker * PROXIES, ttl)
                        / PROXIES;
                let polls = if o.variant.feed_interval_ms > 0 {
                    PROXIES * 1000.0 / o.variant.feed_interval_ms as f64
                } else {
                    0.0
                };
                let mut refused: Vec<f64> = o.refusals.iter().flatten().copied().collect();
                refused.sort_by(f64::total_cmp);
                let window = match o.variant.feed_interval_ms {
                    0 => format!("the TTL, {ttl:.0} s"),
                    ms => format!(
                        "about the interval, {:.1} s (measured max {:.2} s)",
                        ms as f64 / 1000.0,
                        percentile(&refused, 1.0)
                    ),
                };
                println!(
                    "| {per_proxy:.0} ({:.0}) | {sessions} | {} | {reads:.0} | {polls:.0} | {:.0} | {:.1}% | {sticky:.0} | {:.0} | {window} |",
                    per_proxy * PROXIES,
                    o.variant.describe,
                    reads + polls,
                    100.0 * reads / (per_proxy * PROXIES),
                    zipf.fresh_entries(per_worker, ttl),
                );
            }
        }
    }
    println!(
        "\nRequests spread evenly over every worker of every proxy, each for a session drawn independently (the model the measured run checks). Real users send bursts (a page and its assets within a second), which caches absorb better: these are upper bounds for the same rate and popularity."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_route_and_method_over_every_status() {
        let metrics = "\
# TYPE companion_http_requests counter
companion_http_requests_total{route=\"/v1/sessions/{id}\",method=\"GET\",status=\"200\"} 7
companion_http_requests_total{route=\"/v1/sessions/{id}\",method=\"GET\",status=\"404\"} 3
companion_http_requests_total{route=\"/v1/sessions/{id}\",method=\"DELETE\",status=\"200\"} 5
companion_http_requests_total{route=\"/v1/revocations\",method=\"GET\",status=\"200\"} 11
companion_http_request_duration_seconds_count{route=\"/v1/sessions/{id}\"} 15
";
        assert_eq!(count_requests(metrics, "/v1/sessions/{id}", "GET"), 10);
        assert_eq!(count_requests(metrics, "/v1/revocations", "GET"), 11);
        assert_eq!(count_requests(metrics, "/v1/sessions", "POST"), 0);
    }

    #[test]
    fn the_configuration_carries_the_variants_settings() {
        let envoy = format!("value: |\n  {{{MARKER} \"on_store_error\": \"fail_open\"}}\n");
        let path = write_configs(&envoy, VARIANTS[1]).unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(
            written.contains(
                r#""cache": {"ttl_ms": 60000}, "revocation_feed": {"interval_ms": 1000},"#
            ),
            "{written}"
        );
        assert!(write_configs("no marker", VARIANTS[0]).is_err());
    }
}
