//! Sessions a user can see and end, through the sample app's `/sessions` page: the filter
//! injects the user's list on that route, and the page ends another device's session with
//! `x-session-revoke` (docs/architecture.md, "Session listing"). Run with `--nocapture` for
//! the transcript.

use super::{Stack, cookie_of, stack};
use reqwest::StatusCode;

/// A device: its user agent and its session cookie.
struct Device {
    agent: &'static str,
    cookie: Option<String>,
}

impl Device {
    async fn get(&mut self, stack: &Stack, path: &str) -> super::Reply {
        let reply = stack
            .get(path, self.cookie.as_deref(), &[("user-agent", self.agent)])
            .await;
        if let Some(set) = &reply.set_cookie {
            self.cookie = (!set.contains("Max-Age=0")).then(|| cookie_of(set));
        }
        println!("{} GET {path} -> {}", self.agent, reply.status);
        reply
    }

    async fn state(&mut self, stack: &Stack) -> String {
        let reply = self.get(stack, "/").await;
        let seen: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        seen["x-session-state"].as_str().unwrap().to_string()
    }
}

/// The handles the page offers to end (every session but this device's).
fn end_links(page: &str) -> Vec<String> {
    page.split("/sessions/end?handle=")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .collect()
}

/// The page's table rows, as text, for the transcript.
fn rows(page: &str) -> Vec<String> {
    page.split("<tr>")
        .skip(2)
        .map(|row| {
            row.replace("</td><td>", " | ")
                .replace(['\n'], "")
                .split("</tr>")
                .next()
                .unwrap()
                .replace("<td>", "")
                .replace("</td>", "")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sessions_page_ends_another_devices_session() {
    let stack = stack().await;
    let mut laptop = Device {
        agent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
        cookie: None,
    };
    let mut phone = Device {
        agent: "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0) Safari/604.1",
        cookie: None,
    };
    laptop.get(&stack, "/login?user=alice").await;
    phone.get(&stack, "/login?user=alice").await;
    assert_eq!(phone.state(&stack).await, "valid");

    let page = laptop.get(&stack, "/sessions").await;
    assert_eq!(page.status, StatusCode::OK);
    for row in rows(&page.body) {
        println!("  {row}");
    }
    assert!(page.body.contains("this device"), "{}", page.body);
    assert!(
        page.body.contains("iPhone"),
        "the phone is listed by its agent"
    );
    let others = end_links(&page.body);
    assert_eq!(others.len(), 1, "{}", page.body);

    // The laptop ends the phone's session; the page follows the redirect to the new list.
    let after = laptop
        .get(&stack, &format!("/sessions/end?handle={}", others[0]))
        .await;
    assert_eq!(after.status, StatusCode::OK);
    for row in rows(&after.body) {
        println!("  {row}");
    }
    assert!(end_links(&after.body).is_empty(), "{}", after.body);
    assert_eq!(
        phone.state(&stack).await,
        "expired",
        "the phone's next request has no session, at once"
    );
    assert_eq!(laptop.state(&stack).await, "valid");

    // "End every other session", then "log out everywhere".
    phone.get(&stack, "/login?user=alice").await;
    laptop.get(&stack, "/sessions/end?which=others").await;
    assert_eq!(phone.state(&stack).await, "expired");
    assert_eq!(laptop.state(&stack).await, "valid");
    laptop.get(&stack, "/sessions/end?which=all").await;
    assert!(
        laptop.cookie.is_none(),
        "this one ended too: its cookie is cleared"
    );
    assert_eq!(laptop.state(&stack).await, "none");
}
