//! Sequential latency of `GET /v1/sessions/{id}` through the companion (real HTTP on
//! loopback) beside the MongoDB driver's own `find_one` by `_id` on the same server, in one
//! run. Prints numbers; asserts nothing.
//!
//! Run against a server: `MONGODB_URI=mongodb://127.0.0.1:27117/?directConnection=true
//! cargo run --release -p companion --example latency` (the `service` profile works too).

use companion::{AppState, Config, build_app};
use mongodb::bson::{Document, doc};
use std::time::{Duration, Instant};

const SAMPLES: usize = 2_000;
const WARMUP: usize = 200;
const TOKEN: &str = "latency-example-token";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let uri = std::env::var("MONGODB_URI")
        .map_err(|_| "set MONGODB_URI to the server to measure against")?;
    let database = format!("latency_{}", std::process::id());
    let config = Config::for_tests(&uri, &database, TOKEN);
    let state = AppState::from_config(&config).await?;
    state.store.ensure_indexes().await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(axum::serve(listener, build_app(state, config.request_timeout())).into_future());

    let http = reqwest::Client::new();
    let created: serde_json::Value = http
        .post(format!("http://{addr}/v1/sessions"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"data": {"cart": [1, 2, 3], "_auth_user_id": "42"}, "user": "u-42"}))
        .send()
        .await?
        .json()
        .await?;
    let id = created["id"]
        .as_str()
        .ok_or("no id in the created session")?
        .to_string();
    let url = format!("http://{addr}/v1/sessions/{id}");

    let driver = mongodb::Client::with_uri_str(&uri).await?;
    let sessions = driver
        .database(&database)
        .collection::<Document>("sessions");

    let mut api = Vec::with_capacity(SAMPLES);
    let mut direct = Vec::with_capacity(SAMPLES);
    let mut filtered = Vec::with_capacity(SAMPLES);
    for i in 0..(WARMUP + SAMPLES) {
        let started = Instant::now();
        let response = http.get(&url).bearer_auth(TOKEN).send().await?;
        if !response.status().is_success() {
            return Err(format!("GET answered {}", response.status()).into());
        }
        response.bytes().await?;
        let api_took = started.elapsed();
        let started = Instant::now();
        sessions
            .find_one(doc! {"_id": &id})
            .await?
            .ok_or("the driver did not find the session")?;
        let direct_took = started.elapsed();
        // The companion's own query: the id and an unexpired `expires_at`.
        let started = Instant::now();
        let live = doc! {"_id": &id, "expires_at": {"$gt": mongodb::bson::DateTime::now()}};
        sessions
            .find_one(live)
            .await?
            .ok_or("the driver did not find the live session")?;
        let filtered_took = started.elapsed();
        if i >= WARMUP {
            api.push(api_took);
            direct.push(direct_took);
            filtered.push(filtered_took);
        }
    }
    driver.database(&database).drop().await?;
    let (api, direct, filtered) = (summary(api), summary(direct), summary(filtered));
    println!("{SAMPLES} sequential requests after {WARMUP} warm-up, server {uri}");
    println!(
        "companion GET /v1/sessions/{{id}}: p50 {:>7.0} us  p99 {:>7.0} us  mean {:>7.0} us",
        api.0, api.1, api.2
    );
    println!(
        "driver find_one by _id:           p50 {:>7.0} us  p99 {:>7.0} us  mean {:>7.0} us",
        direct.0, direct.1, direct.2
    );
    println!(
        "driver find_one by _id, unexpired: p50 {:>6.0} us  p99 {:>7.0} us  mean {:>7.0} us",
        filtered.0, filtered.1, filtered.2
    );
    println!(
        "ratio companion/driver:           p50 {:.2}  p99 {:.2}  mean {:.2}",
        api.0 / direct.0,
        api.1 / direct.1,
        api.2 / direct.2
    );
    Ok(())
}

/// (p50, p99, mean) in microseconds.
fn summary(mut samples: Vec<Duration>) -> (f64, f64, f64) {
    samples.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let at = |q: f64| us(samples[((samples.len() as f64 - 1.0) * q).round() as usize]);
    let mean = samples.iter().map(|d| us(*d)).sum::<f64>() / samples.len() as f64;
    (at(0.50), at(0.99), mean)
}
