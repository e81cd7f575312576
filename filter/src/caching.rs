//! What shared caches may do with a response that depended on a session (docs/architecture.md,
//! "Response path"): such a response varies by `Cookie`, and is `private` unless the app chose
//! its own caching; a response that sets or clears the session cookie is never `public`, so a
//! shared cache can never hand one visitor's session to many.

/// Whether the response's `Vary` headers already cover `Cookie` (or everything).
pub fn varies_by_cookie<'a>(vary_values: impl IntoIterator<Item = &'a [u8]>) -> bool {
    vary_values.into_iter().any(|value| {
        value.split(|b| *b == b',').any(|v| {
            let v = v.trim_ascii();
            v == b"*" || v.eq_ignore_ascii_case(b"cookie")
        })
    })
}

/// The `Cache-Control` a session response goes out with, or `None` to leave the app's as they
/// are. `app` holds the values of the app's `Cache-Control` headers; `cookie_written` says the
/// response sets or clears the session cookie.
///
/// Without any `Cache-Control` the answer is `private`. With the app's own, they stand, unless
/// the cookie is written: then `public` is dropped and `private` added (unless `private` or
/// `no-store` is there already), every other directive kept in order.
pub fn cache_control(app: &[&[u8]], cookie_written: bool) -> Option<String> {
    if app.is_empty() {
        return Some("private".to_string());
    }
    if !cookie_written {
        return None;
    }
    let directives: Vec<&[u8]> = app
        .iter()
        .flat_map(|value| value.split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|d| !d.is_empty())
        .collect();
    fn name(directive: &[u8]) -> &[u8] {
        directive
            .split(|b| *b == b'=')
            .next()
            .unwrap_or_default()
            .trim_ascii()
    }
    // `public`, and `private="field"`, which lets shared caches keep all but the named
    // fields, give way to a bare `private`.
    let shared = |d: &&[u8]| {
        d.eq_ignore_ascii_case(b"public")
            || (name(d).eq_ignore_ascii_case(b"private") && d.contains(&b'='))
    };
    let already_private = directives
        .iter()
        .any(|d| d.eq_ignore_ascii_case(b"private") || d.eq_ignore_ascii_case(b"no-store"));
    if already_private && !directives.iter().any(&shared) {
        return None;
    }
    let mut out: Vec<String> = directives
        .iter()
        .filter(|d| !shared(d))
        .map(|d| String::from_utf8_lossy(d).into_owned())
        .collect();
    if !already_private {
        out.push("private".to_string());
    }
    Some(out.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc(app: &[&str], written: bool) -> Option<String> {
        let app: Vec<&[u8]> = app.iter().map(|v| v.as_bytes()).collect();
        cache_control(&app, written)
    }

    #[test]
    fn without_the_apps_own_a_session_response_is_private() {
        assert_eq!(cc(&[], false).as_deref(), Some("private"));
        assert_eq!(cc(&[], true).as_deref(), Some("private"));
    }

    #[test]
    fn the_apps_own_stand_when_no_cookie_is_written() {
        assert_eq!(cc(&["public, max-age=60"], false), None);
        assert_eq!(cc(&["no-cache"], false), None);
    }

    #[test]
    fn a_written_cookie_is_never_public() {
        assert_eq!(
            cc(&["public, max-age=3600"], true).as_deref(),
            Some("max-age=3600, private")
        );
        assert_eq!(
            cc(&["Public", "s-maxage=10"], true).as_deref(),
            Some("s-maxage=10, private")
        );
        assert_eq!(
            cc(&["max-age=60"], true).as_deref(),
            Some("max-age=60, private")
        );
        assert_eq!(
            cc(&["public, private"], true).as_deref(),
            Some("private"),
            "public goes even when private is there"
        );
        assert_eq!(cc(&["private, max-age=5"], true), None);
        assert_eq!(cc(&["no-store"], true), None);
        assert_eq!(
            cc(&["private=\"set-cookie\", max-age=5"], true).as_deref(),
            Some("max-age=5, private"),
            "a qualified private lets shared caches keep the page: made bare"
        );
    }

    #[test]
    fn vary_is_read_across_values_and_lists() {
        assert!(varies_by_cookie([&b"Accept, Cookie"[..]]));
        assert!(varies_by_cookie([&b"accept"[..], b" cookie "]));
        assert!(varies_by_cookie([&b"*"[..]]));
        assert!(!varies_by_cookie([&b"Accept-Encoding"[..]]));
        assert!(!varies_by_cookie([&b"cookies"[..]]));
        assert!(!varies_by_cookie(std::iter::empty()));
    }
}
