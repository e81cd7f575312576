//! Header spellings an app server folds into ours: behind the filter, a WSGI app (Python's
//! wsgiref, which reads `x_session_user` and `x-session-user` alike as `HTTP_X_SESSION_USER`)
//! never sees a client's own session headers, whether the connection manager lets `_` names
//! through (Envoy's default: the filter's own defence) or refuses them (the shipped setting).

use super::{Options, stack_for};
use reqwest::StatusCode;
use serde_json::Value;

/// Every spelling a client could try, of the prefix and of `envoy.yaml`'s mapped `x-cart`.
const SPOOFS: [(&str, &str); 6] = [
    ("x_session_user", "admin"),
    ("X_Session_State", "valid"),
    ("x-session_data", r#"{"is_admin":true}"#),
    ("x_session-id", "forged"),
    ("x_cart", r#"["free"]"#),
    ("X_CART", r#"["free"]"#),
];

#[tokio::test]
async fn with_underscores_allowed_the_filter_keeps_every_spelling_from_a_wsgi_app() {
    let stack = stack_for(Options {
        wsgi_app: true,
        allow_underscores: true,
        ..Options::default()
    })
    .await;
    for cookie in [None, Some("sid=dev1.forged.token")] {
        let reply = stack.get("/", cookie, &SPOOFS).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let environ: Value = serde_json::from_str(&reply.body).unwrap();
        let expected = if cookie.is_some() { "invalid" } else { "none" };
        assert_eq!(environ["HTTP_X_SESSION_STATE"], expected, "{environ}");
        for variable in [
            "HTTP_X_SESSION_USER",
            "HTTP_X_SESSION_DATA",
            "HTTP_X_SESSION_ID",
            "HTTP_X_CART",
        ] {
            assert!(
                environ.get(variable).is_none(),
                "{variable} reached the app: {environ}"
            );
        }
    }
}

#[tokio::test]
async fn with_the_shipped_setting_a_request_spelled_with_underscores_is_refused() {
    let stack = stack_for(Options {
        wsgi_app: true,
        ..Options::default()
    })
    .await;
    let refused = stack.get("/", None, &[("x_session_user", "admin")]).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let fine = stack.get("/", None, &[("x-other", "1")]).await;
    let environ: Value = serde_json::from_str(&fine.body).unwrap();
    assert_eq!(environ["HTTP_X_SESSION_STATE"], "none");
    assert_eq!(environ["HTTP_X_OTHER"], "1");
}
