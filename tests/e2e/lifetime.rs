//! The session's lifetime as a browser lives it: a cookie jar that honours `Max-Age` and drops
//! expired cookies, against the whole stack (docs/architecture.md, "Lifetime").

use super::{Options, Reply, Stack, stack, stack_for};
use serde_json::Value;
use std::time::{Duration, Instant};

/// One cookie, kept as a browser keeps it: until its `Max-Age` runs out (a cookie without one
/// lives until the browser closes), replaced by each `Set-Cookie`, deleted by `Max-Age=0`.
#[derive(Default)]
struct Jar {
    cookie: Option<(String, Option<Instant>)>,
}

impl Jar {
    /// The `Cookie` header the browser would send now.
    fn header(&mut self) -> Option<String> {
        if let Some((_, Some(until))) = &self.cookie
            && Instant::now() >= *until
        {
            self.cookie = None;
        }
        self.cookie.as_ref().map(|(pair, _)| pair.clone())
    }

    fn store(&mut self, reply: &Reply) {
        let Some(set) = &reply.set_cookie else { return };
        let mut parts = set.split(';').map(str::trim);
        let pair = parts.next().unwrap_or_default().to_string();
        let max_age = parts
            .find_map(|attribute| attribute.strip_prefix("Max-Age="))
            .map(|seconds| seconds.parse::<i64>().unwrap());
        self.cookie = match max_age {
            Some(seconds) if seconds <= 0 => None,
            Some(seconds) => Some((
                pair,
                Some(Instant::now() + Duration::from_secs(seconds.unsigned_abs())),
            )),
            None => Some((pair, None)),
        };
    }
}

/// Logs `user` in with a lifetime of 4 s; the jar holds the cookie, and the time of login.
async fn logged_in_for_4_seconds(stack: &Stack, user: &str) -> (Jar, Instant) {
    let mut jar = Jar::default();
    let start = Instant::now();
    jar.store(&stack.get(&format!("/login?user={user}"), None, &[]).await);
    let shortened = stack
        .get("/expiry?value=4", jar.header().as_deref(), &[])
        .await;
    assert!(
        shortened
            .set_cookie
            .as_deref()
            .is_some_and(|c| c.contains("Max-Age="))
    );
    jar.store(&shortened);
    (jar, start)
}

/// One line per request (seen with `--nocapture`): when, the state, the cookie's `Max-Age`.
fn transcript(what: &str, start: Instant, reply: &Reply) {
    let max_age = reply.set_cookie.as_deref().and_then(|c| {
        c.split("; ")
            .find_map(|a| a.strip_prefix("Max-Age="))
            .map(str::to_string)
    });
    eprintln!(
        "{what}: t={:.1}s state={} set-cookie Max-Age={}",
        start.elapsed().as_secs_f64(),
        state_seen(reply),
        max_age.as_deref().unwrap_or("-")
    );
}

/// The session state the app saw for this request.
fn state_seen(reply: &Reply) -> String {
    let seen: Value = serde_json::from_str(&reply.body).unwrap();
    seen["x-session-state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A lifetime of 4 s: an active browser (a request every 400 ms) is still logged in after two
/// lifetimes, because each touch renews its cookie; left idle, its cookie runs out and the
/// session with it. Timing margin: a touch comes within 400 ms of the half-life, 2 s before the
/// deadline (5x); the idle wait is 1.5 lifetimes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_browser_stays_logged_in_past_its_first_max_age_and_an_idle_one_is_not() {
    let stack = stack().await;
    let (mut jar, start) = logged_in_for_4_seconds(&stack, "ivy").await;
    let mut renewals = 0;
    while start.elapsed() < Duration::from_secs(9) {
        let cookie = jar.header();
        assert!(
            cookie.is_some(),
            "the browser lost its cookie at {:?}",
            start.elapsed()
        );
        let reply = stack.get("/", cookie.as_deref(), &[]).await;
        transcript("active", start, &reply);
        assert_eq!(state_seen(&reply), "valid", "at {:?}", start.elapsed());
        if reply.set_cookie.is_some() {
            renewals += 1;
        }
        jar.store(&reply);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(
        renewals >= 2,
        "the cookie was renewed {renewals} times in 9 s"
    );

    let kept = jar.header().expect("still logged in");
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        jar.header(),
        None,
        "the browser dropped the cookie at its Max-Age"
    );
    let reply = stack.get("/", None, &[]).await;
    transcript("idle 6 s, no cookie left", start, &reply);
    assert_eq!(state_seen(&reply), "none", "logged out");
    let replayed = stack.get("/", Some(&kept), &[]).await;
    transcript("idle 6 s, old cookie replayed", start, &replayed);
    assert_eq!(
        state_seen(&replayed),
        "expired",
        "the session ended with the cookie"
    );
}

/// An absolute lifetime of 6 s with an idle lifetime of 4 s: however active, the browser is
/// logged out once 6 s have passed since the login. Margins: valid up to 4 s (2 s before the
/// limit), logged out from 8 s (2 s after), requests every 400 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_browser_is_logged_out_at_the_absolute_limit() {
    let stack = stack_for(Options {
        filter: serde_json::json!({"absolute_ttl_seconds": 6}),
        ..Options::default()
    })
    .await;
    let (mut jar, start) = logged_in_for_4_seconds(&stack, "jo").await;
    let mut last_valid = Duration::ZERO;
    while start.elapsed() < Duration::from_secs(9) {
        let reply = stack.get("/", jar.header().as_deref(), &[]).await;
        transcript("active, absolute 6 s", start, &reply);
        let at = start.elapsed();
        let state = state_seen(&reply);
        if at < Duration::from_secs(4) {
            assert_eq!(state, "valid", "at {at:?}");
        }
        if state == "valid" {
            last_valid = at;
        }
        jar.store(&reply);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(
        last_valid < Duration::from_secs(8),
        "still logged in {last_valid:?} after the login, past the 6 s limit"
    );
}
