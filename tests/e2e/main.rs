//! The whole stack over real sockets: a MongoDB wire-protocol server (`MONGODB_URI`), the
//! companion, `edge-dev` running the release `filter.wasm` with the project's `envoy.yaml`, and
//! the Python legacy app. `cargo xtask test` provides the database and the module.
#![allow(clippy::unwrap_used)]

use edge_dev::connection_options::UnderscoresAction;
use edge_dev::envoy_config::DevConfig;
use reqwest::{Client, StatusCode};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use testkit::FaultyLink;

mod drills;
mod feed;
mod lifetime;
mod sessions;
mod underscores;

const TOKEN: &str = "dev-token-change-me-0123456789";

fn root() -> PathBuf {
    manifest_dir().join("..")
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Stack {
    proxy: SocketAddr,
    /// The proxy's configuration, for a second proxy in front of the same companion.
    dev: DevConfig,
    client: Client,
    _app: KillOnDrop,
    companion: companion::Config,
    /// Stops the running companion, and its task.
    running: std::sync::Mutex<
        Option<(
            tokio::sync::oneshot::Sender<()>,
            tokio::task::JoinHandle<()>,
        )>,
    >,
    database_link: Option<FaultyLink>,
    companion_link: Option<FaultyLink>,
}

async fn wait_for(addr: SocketAddr) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on {addr}");
}

/// Starts the companion, the legacy app and edge-dev, each on a free port.
async fn stack() -> Stack {
    stack_with("fail_open").await
}

/// The same, with the filter's `on_store_error` set to `store_policy`.
async fn stack_with(store_policy: &str) -> Stack {
    stack_for(Options {
        store_policy,
        ..Options::default()
    })
    .await
}

/// How a test's stack differs from the project's `envoy.yaml`.
#[derive(Clone)]
struct Options<'a> {
    /// The filter's `on_store_error`.
    store_policy: &'a str,
    /// The filter's `cache.ttl_ms`, if not the configured one.
    cache_ttl_ms: Option<u64>,
    /// Put a [`FaultyLink`] between the companion and the database.
    database_link: bool,
    /// Put a [`FaultyLink`] between edge-dev and the companion.
    companion_link: bool,
    /// Run `wsgi_echo.py` (a wsgiref app that echoes its `HTTP_*` variables) as the app
    /// instead of the legacy app.
    wsgi_app: bool,
    /// Let headers spelled with `_` through the connection manager (Envoy's default), instead
    /// of `envoy.yaml`'s `REJECT_REQUEST`: the filter alone must then strip them.
    allow_underscores: bool,
    /// Fields merged into the filter's configuration from `envoy.yaml`.
    filter: Value,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Self {
            store_policy: "fail_open",
            cache_ttl_ms: None,
            database_link: false,
            companion_link: false,
            wsgi_app: false,
            allow_underscores: false,
            filter: Value::Null,
        }
    }
}

/// An edge-dev proxy (two workers) with `dev`, on a free port, and its host (for its logs
/// and counters).
async fn start_proxy(dev: DevConfig) -> (SocketAddr, harness::Host) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap();
    let host = harness::Host::new();
    let serving = host.clone();
    tokio::spawn(async move {
        edge_dev::serve_on(
            serving,
            dev,
            2,
            true,
            listener,
            std::future::pending::<()>(),
        )
        .await
        .unwrap();
    });
    (proxy, host)
}

async fn stack_for(options: Options<'_>) -> Stack {
    let uri = std::env::var("MONGODB_URI").expect("MONGODB_URI is not set: run `cargo xtask test`");
    let database = format!("e2e_{}_{}", std::process::id(), free_addr().port());
    let database_link = match options.database_link {
        true => Some(FaultyLink::start(testkit::single_host(&uri).0).await),
        false => None,
    };
    let uri = match &database_link {
        Some(link) => testkit::through(&uri, link.addr),
        None => uri,
    };
    let mut companion = companion::Config::for_tests(&uri, &database, TOKEN);
    companion.listen = free_addr();
    companion.shutdown_grace_ms = 500;
    let companion_link = match options.companion_link {
        true => Some(FaultyLink::start(companion.listen).await),
        false => None,
    };

    let app_addr = free_addr();
    let port = app_addr.port().to_string();
    let app = match options.wsgi_app {
        true => Command::new("python3")
            .arg(root().join("tests/e2e/wsgi_echo.py"))
            .arg(&port)
            .stdout(Stdio::null())
            .spawn(),
        false => Command::new("python3")
            .arg(root().join("examples/legacy-app/app.py"))
            .args(["--port", &port])
            .stdout(Stdio::null())
            .spawn(),
    };
    let legacy = KillOnDrop(app.unwrap());

    let mut dev = DevConfig::load(&root().join("envoy.yaml")).unwrap();
    let companion_addr = companion_link.as_ref().map_or(companion.listen, |l| l.addr);
    dev.clusters
        .insert("companion".into(), companion_addr.to_string());
    dev.clusters
        .insert("legacy_app".into(), app_addr.to_string());
    if let Some(dir) = std::env::var_os("EDGE_SESSION_WASM_DIR") {
        dev.plugin.filename = PathBuf::from(dir).join("filter.wasm");
    }
    if options.allow_underscores {
        dev.connection.underscores = UnderscoresAction::Allow;
    }
    let mut filter_config: Value = serde_json::from_str(&dev.plugin.configuration).unwrap();
    filter_config["on_store_error"] = Value::from(options.store_policy);
    if let Some(ttl) = options.cache_ttl_ms {
        filter_config["cache"] = serde_json::json!({ "ttl_ms": ttl });
    }
    if let (Some(config), Value::Object(extra)) = (filter_config.as_object_mut(), options.filter) {
        config.extend(extra);
    }
    dev.plugin.configuration = filter_config.to_string();
    let (proxy, _) = start_proxy(dev.clone()).await;
    let stack = Stack {
        proxy,
        dev,
        client: Client::new(),
        _app: legacy,
        companion,
        running: std::sync::Mutex::new(None),
        database_link,
        companion_link,
    };
    stack.start_companion().await;
    wait_for(app_addr).await;
    stack
}

struct Reply {
    status: StatusCode,
    set_cookie: Option<String>,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Stack {
    /// Runs the companion binary's server loop, as `edge-session-companion` would.
    async fn start_companion(&self) {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let config = self.companion.clone();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            companion::server::run(config, shutdown).await.unwrap();
        });
        *self.running.lock().unwrap() = Some((stop, task));
        wait_for(self.companion.listen).await;
    }

    /// Stops the companion as SIGTERM would, and waits until it has exited.
    async fn stop_companion(&self) {
        let running = self.running.lock().unwrap().take();
        if let Some((stop, task)) = running {
            let _ = stop.send(());
            task.await.unwrap();
        }
    }

    async fn get(&self, path: &str, cookie: Option<&str>, extra: &[(&str, &str)]) -> Reply {
        self.get_via(self.proxy, path, cookie, extra).await
    }

    /// A GET through the proxy at `proxy` (the stack's, or a second one).
    async fn get_via(
        &self,
        proxy: SocketAddr,
        path: &str,
        cookie: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.client.get(format!("http://{proxy}{path}"));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let set_cookie = headers
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().to_string());
        Reply {
            status,
            set_cookie,
            headers,
            body: response.text().await.unwrap(),
        }
    }

    /// The session as the companion stores it, by the id the app was given.
    async fn stored(&self, id: &str) -> Value {
        let response = self
            .client
            .get(format!("http://{}/v1/sessions/{id}", self.companion.listen))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// Logs `user` in and returns the `sid=<token>` cookie and the session id the app sees.
    async fn login(&self, user: &str) -> (String, String) {
        let login = self.get(&format!("/login?user={user}"), None, &[]).await;
        let cookie = cookie_of(&login.set_cookie.expect("login sets the cookie"));
        let seen = self.seen(Some(&cookie), &[]).await;
        let id = seen["x-session-id"].as_str().unwrap().to_string();
        (cookie, id)
    }

    /// What the app saw: its JSON echo of the request headers.
    async fn seen(&self, cookie: Option<&str>, extra: &[(&str, &str)]) -> Value {
        let reply = self.get("/", cookie, extra).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        serde_json::from_str(&reply.body).unwrap()
    }
}

/// `sid=<token>` from a Set-Cookie value.
fn cookie_of(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_data_logout_and_replay() {
    let stack = stack().await;
    // Before login: no session.
    assert_eq!(stack.seen(None, &[]).await["x-session-state"], "none");

    let login = stack.get("/login?user=alice", None, &[]).await;
    assert_eq!(login.status, StatusCode::OK);
    let set = login.set_cookie.expect("login sets the cookie");
    assert!(
        set.contains("Max-Age=") && set.contains("HttpOnly"),
        "{set}"
    );
    assert!(
        login
            .headers
            .keys()
            .all(|k| !k.as_str().starts_with("x-session-")),
        "control headers never reach the client"
    );
    let cookie = cookie_of(&set);

    let seen = stack.seen(Some(&cookie), &[]).await;
    assert_eq!(seen["x-session-state"], "valid");
    assert_eq!(seen["x-session-user"], "alice");
    assert!(
        seen.get("cookie").is_none(),
        "the session cookie stays out of the app"
    );

    let set_data = stack
        .get("/set?key=color&value=blue", Some(&cookie), &[])
        .await;
    assert!(set_data.set_cookie.is_none(), "same session, same cookie");
    let seen = stack.seen(Some(&cookie), &[]).await;
    let data: Value = serde_json::from_str(seen["x-session-data"].as_str().unwrap()).unwrap();
    assert_eq!(data, serde_json::json!({"user": "alice", "color": "blue"}));

    let logout = stack.get("/logout", Some(&cookie), &[]).await;
    assert!(logout.set_cookie.unwrap().contains("Max-Age=0"));
    let replay = stack.seen(Some(&cookie), &[]).await;
    assert_eq!(
        replay["x-session-state"], "expired",
        "a replayed cookie after logout is refused"
    );
    assert!(replay.get("x-session-user").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_cycles_the_id_so_a_planted_session_is_useless() {
    let stack = stack().await;
    // An attacker's session, planted in the victim's browser.
    let planted = cookie_of(
        &stack
            .get("/set?key=x&value=1", None, &[])
            .await
            .set_cookie
            .unwrap(),
    );
    assert_eq!(
        stack.seen(Some(&planted), &[]).await["x-session-state"],
        "valid"
    );
    let login = stack.get("/login?user=victim", Some(&planted), &[]).await;
    let fresh = cookie_of(&login.set_cookie.expect("login issues a new cookie"));
    assert_ne!(fresh, planted);
    assert_eq!(
        stack.seen(Some(&fresh), &[]).await["x-session-user"],
        "victim"
    );
    let old = stack.seen(Some(&planted), &[]).await;
    assert_eq!(
        old["x-session-state"], "expired",
        "the pre-login id no longer works"
    );
    let data: Value = serde_json::from_str(
        stack.seen(Some(&fresh), &[]).await["x-session-data"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(data["x"], "1", "pre-login data moved to the new id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_cookies_and_spoofed_headers_are_refused() {
    let stack = stack().await;
    let good = cookie_of(
        &stack
            .get("/login?user=carol", None, &[])
            .await
            .set_cookie
            .unwrap(),
    );
    let mut tampered = good.clone();
    tampered.pop();
    tampered.push(if good.ends_with('A') { 'B' } else { 'A' });
    let reply = stack.get("/", Some(&tampered), &[]).await;
    assert!(
        reply.set_cookie.unwrap().contains("Max-Age=0"),
        "a tampered cookie is cleared"
    );
    let seen: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(seen["x-session-state"], "invalid");
    let unknown_key = format!("sid=other{}", &good["sid=dev1".len()..]);
    assert_eq!(
        stack.seen(Some(&unknown_key), &[]).await["x-session-state"],
        "invalid"
    );

    let spoofed = stack
        .seen(
            None,
            &[
                ("X-Session-User", "admin"),
                ("x-session-state", "valid"),
                ("x-cart", "[\"free\"]"),
            ],
        )
        .await;
    assert_eq!(spoofed["x-session-state"], "none");
    assert!(spoofed.get("x-session-user").is_none());
    assert!(
        spoofed.get("x-cart").is_none(),
        "mapped headers are stripped too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_sets_on_one_session_all_persist() {
    let stack = std::sync::Arc::new(stack().await);
    let cookie = cookie_of(
        &stack
            .get("/login?user=dave", None, &[])
            .await
            .set_cookie
            .unwrap(),
    );
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (stack, cookie) = (stack.clone(), cookie.clone());
        tasks.push(tokio::spawn(async move {
            stack
                .get(&format!("/set?key=k{i}&value=v{i}"), Some(&cookie), &[])
                .await
                .status
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    let seen = stack.seen(Some(&cookie), &[]).await;
    let data: Value = serde_json::from_str(seen["x-session-data"].as_str().unwrap()).unwrap();
    for i in 0..20 {
        assert_eq!(data[format!("k{i}")], format!("v{i}"), "{data}");
    }
    assert_eq!(data["user"], "dave");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn companion_down_follows_the_store_policy_and_recovers() {
    // fail_open: the app is reached, told the session is unavailable; no one is logged out.
    let stack = stack().await;
    let cookie = cookie_of(
        &stack
            .get("/login?user=erin", None, &[])
            .await
            .set_cookie
            .unwrap(),
    );
    stack.stop_companion().await;
    // A cached copy may answer for up to the cache TTL (2 s); wait it out.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let reply = stack.get("/", Some(&cookie), &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.set_cookie.is_none(),
        "a store outage never clears the cookie"
    );
    let seen: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(seen["x-session-state"], "unavailable");
    stack.start_companion().await;
    assert_eq!(
        stack.seen(Some(&cookie), &[]).await["x-session-user"],
        "erin",
        "recovered without a restart"
    );

    // fail_closed: 503 while the companion is down.
    let closed = stack_with("fail_closed").await;
    let cookie = cookie_of(
        &closed
            .get("/login?user=fay", None, &[])
            .await
            .set_cookie
            .unwrap(),
    );
    closed.stop_companion().await;
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_eq!(
        closed.get("/", Some(&cookie), &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    closed.start_companion().await;
    assert_eq!(
        closed.seen(Some(&cookie), &[]).await["x-session-state"],
        "valid"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_expiry_gives_a_cookie_without_max_age() {
    let stack = stack().await;
    let (cookie, id) = stack.login("gil").await;
    let reply = stack.get("/expiry?value=browser", Some(&cookie), &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    let set = reply.set_cookie.expect("a new expiry re-issues the cookie");
    assert!(
        !set.contains("Max-Age"),
        "a browser session's cookie: {set}"
    );
    assert_eq!(cookie_of(&set), cookie, "same session, same token");
    assert!(
        reply
            .headers
            .keys()
            .all(|k| !k.as_str().starts_with("x-session-")),
        "control headers never reach the client"
    );
    let stored = stack.stored(&id).await;
    assert_eq!(stored["browser_session"], true, "{stored}");
    assert_eq!(
        stack.seen(Some(&cookie), &[]).await["x-session-state"],
        "valid",
        "the server-side TTL still applies, the session lives on"
    );
    let back = stack.get("/expiry?value=default", Some(&cookie), &[]).await;
    assert!(
        back.set_cookie.unwrap().contains("Max-Age="),
        "default expiry brings Max-Age back"
    );
    assert_eq!(stack.stored(&id).await["browser_session"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliding_expiry_moves_expires_at() {
    let stack = stack().await;
    let (cookie, id) = stack.login("hal").await;
    // A short lifetime, so that half of it passes quickly.
    let ttl = 4;
    let reply = stack
        .get(&format!("/expiry?value={ttl}"), Some(&cookie), &[])
        .await;
    let set = reply.set_cookie.unwrap();
    let max_age: i64 = set
        .split("; ")
        .find_map(|a| a.strip_prefix("Max-Age="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (ttl - 1..=ttl).contains(&max_age),
        "Max-Age up to the new expiry: {set}"
    );
    let expires = |session: &Value| {
        time::OffsetDateTime::parse(
            session["expires_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    let before = expires(&stack.stored(&id).await);
    // Under half the lifetime used: no touch.
    stack.seen(Some(&cookie), &[]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        expires(&stack.stored(&id).await),
        before,
        "too early to slide"
    );
    // Past half of it: a request touches the session in the background.
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    assert_eq!(
        stack.seen(Some(&cookie), &[]).await["x-session-state"],
        "valid"
    );
    let mut after = before;
    for _ in 0..40 {
        after = expires(&stack.stored(&id).await);
        if after > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        after - before >= time::Duration::seconds(2),
        "expires_at moved from {before} to {after}"
    );
    // The session outlives its first deadline.
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    assert_eq!(
        stack.seen(Some(&cookie), &[]).await["x-session-state"],
        "valid"
    );
}

/// This package's directory: where cargo says it is now (a checkout moved, or a build reused
/// from another path, keeps the compile-time value of `env!`), else where it was built.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || env!("CARGO_MANIFEST_DIR").into(),
        std::path::PathBuf::from,
    )
}
