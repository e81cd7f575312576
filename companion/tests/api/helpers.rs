//! Spawning the app on a port-0 server with its own database, a client for it, and a TCP
//! proxy in front of the database that can take it away and bring it back.

use companion::{AppState, Config, build_app};
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::net::TcpListener;

/// A token that passes the start-up rules (`proto::secrets`) without the development switch.
pub use testkit::keys::COMPANION_TOKEN as TOKEN;

pub fn mongodb_uri() -> String {
    std::env::var("MONGODB_URI")
        .ok()
        .filter(|u| !u.is_empty())
        .expect("MONGODB_URI is not set: run `cargo xtask test`, which starts a test server, or point it at a mongod")
}

/// A database name no other test uses.
pub fn unique_database() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "t{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: Client,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A request with the right token; returns status and JSON body (`Null` when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_with_token(method, path, body, Some(TOKEN)).await
    }

    pub async fn call_with_token(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let bytes = response.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, body)
    }

    /// Creates a session and returns its JSON.
    pub async fn create(&self, body: Value) -> Value {
        let (status, session) = self.call(Method::POST, "/v1/sessions", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{session}");
        session
    }
}

/// Starts the app against `uri` with its own database, indexes ensured.
pub async fn spawn_with(uri: &str, database: &str, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = Config::for_tests(uri, database, TOKEN);
    config.db_timeout_ms = 1_000;
    adjust(&mut config);
    let state = AppState::from_config(&config).await.unwrap();
    state.store.ensure_indexes().await.unwrap();
    state.indexes_ready.store(true, Ordering::Release);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = build_app(state.clone(), config.request_timeout());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    TestApp {
        addr,
        client: Client::new(),
    }
}

pub async fn spawn() -> TestApp {
    spawn_with(&mongodb_uri(), &unique_database(), |_| {}).await
}

/// The handle of the session whose id is `id` (`proto::SessionId::handle`).
pub fn handle_of(id: &str) -> String {
    proto::SessionId::parse(id).unwrap().handle().to_string()
}

/// The handle of a session as the API answered it.
pub fn handle_of_session(session: &Value) -> String {
    handle_of(session["id"].as_str().unwrap())
}

/// The database `name` on the test server, reached directly.
pub async fn raw_database(name: &str) -> mongodb::Database {
    mongodb::Client::with_uri_str(mongodb_uri())
        .await
        .unwrap()
        .database(name)
}

/// A timestamp field of an answer, in Unix milliseconds.
pub fn millis(value: &Value) -> i64 {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {value}"));
    let t = proto::Timestamp::parse(text).unwrap_or_else(|| panic!("not a time: {text}"));
    i64::try_from(t.unix_nanos() / 1_000_000).unwrap()
}
