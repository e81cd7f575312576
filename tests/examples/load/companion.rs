//! `GET /v1/sessions/{id}` on the companion binary under load from `wrk`, beside the MongoDB
//! driver's own `find_one` by `_id` on the same server at the same concurrency, alternated in
//! rounds in one run.

use crate::wrk::{self, LoadResult};
use crate::{Error, Settings, Spawned, binary, free_addr, wait_for};
use mongodb::bson::{Document, doc};
use std::process::Command;
use std::time::{Duration, Instant};

pub const TOKEN: &str = "dev-token-change-me-0123456789";

/// Starts the companion binary on a free port against `uri`.
pub async fn start(uri: &str, database: &str) -> Result<(Spawned, String), Error> {
    let addr = free_addr()?;
    let child = Command::new(binary("edge-session-companion")?)
        .env("MONGODB_URI", uri)
        .env("COMPANION_DATABASE", database)
        .env("COMPANION_TOKEN", TOKEN)
        // The token edge-dev takes from envoy.yaml: a development value.
        .env("COMPANION_ALLOW_DEVELOPMENT_SECRETS", "true")
        .env("COMPANION_LISTEN", addr.to_string())
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let spawned = Spawned(child);
    wait_for(addr).await?;
    Ok((spawned, format!("http://{addr}")))
}

pub async fn run(settings: &Settings, uri: &str) -> Result<(), Error> {
    let database = format!("bench_{}", std::process::id());
    let (_companion, base) = start(uri, &database).await?;
    let http = reqwest::Client::new();
    let created: serde_json::Value = http
        .post(format!("{base}/v1/sessions"))
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
    let url = format!("{base}/v1/sessions/{id}");
    let driver = mongodb::Client::with_uri_str(uri).await?;
    let sessions = driver
        .database(&database)
        .collection::<Document>("sessions");
    let auth = [format!("Authorization: Bearer {TOKEN}")];

    println!(
        "| concurrency | companion p50 us | p99 us | req/s | driver find_one p50 us | p99 us | req/s | p50 ratio | p99 ratio | throughput ratio | target p50 ratio <= 1.25 |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for &connections in &settings.concurrency {
        // Warm both paths (connection pools, the server's caches).
        wrk::run(&url, connections, Duration::from_secs(1), &auth)?;
        driver_load(&sessions, &id, connections, Duration::from_secs(1)).await?;
        let (mut api, mut direct) = (Vec::new(), Vec::new());
        for round in 0..settings.rounds {
            let api_first = round % 2 == 0;
            if api_first {
                api.push(wrk::run(&url, connections, settings.duration, &auth)?);
            }
            direct.push(driver_load(&sessions, &id, connections, settings.duration).await?);
            if !api_first {
                api.push(wrk::run(&url, connections, settings.duration, &auth)?);
            }
        }
        let (a, d) = (wrk::median(&api), wrk::median(&direct));
        let ratio = a.p50_us / d.p50_us;
        println!(
            "| {connections} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {ratio:.2} | {:.2} | {:.2} | {} |",
            a.p50_us,
            a.p99_us,
            a.requests_per_second,
            d.p50_us,
            d.p99_us,
            d.requests_per_second,
            a.p99_us / d.p99_us,
            a.requests_per_second / d.requests_per_second,
            if ratio <= 1.25 { "met" } else { "missed" },
        );
        if a.errors + d.errors > 0 {
            println!(
                "| | errors: companion {}, driver {} | | | | | | | | | |",
                a.errors, d.errors
            );
        }
    }
    println!(
        "\n{} rounds of {} s per side and concurrency, alternated; medians. Throughput ratio is companion/driver (higher is better).",
        settings.rounds,
        settings.duration.as_secs()
    );
    driver.database(&database).drop().await?;
    Ok(())
}

/// `connections` tasks each calling `find_one({_id})` in a loop for `duration`.
async fn driver_load(
    sessions: &mongodb::Collection<Document>,
    id: &str,
    connections: usize,
    duration: Duration,
) -> Result<LoadResult, Error> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (sessions, id) = (sessions.clone(), id.to_string());
        tasks.push(tokio::spawn(async move {
            let mut took = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let begun = Instant::now();
                match sessions.find_one(doc! {"_id": &id}).await {
                    Ok(Some(_)) => took.push(begun.elapsed()),
                    _ => errors += 1,
                }
            }
            (took, errors)
        }));
    }
    let (mut took, mut errors) = (Vec::new(), 0);
    for task in tasks {
        let (t, e) = task.await?;
        took.extend(t);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    took.sort();
    let at = |q: f64| {
        took.get(((took.len().saturating_sub(1)) as f64 * q).round() as usize)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
    };
    Ok(LoadResult {
        p50_us: at(0.50),
        p99_us: at(0.99),
        requests_per_second: took.len() as f64 / elapsed,
        errors,
    })
}
