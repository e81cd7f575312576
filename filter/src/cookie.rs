//! The session cookie: finding it in `cookie` request headers (RFC 6265 section 5.4, several
//! headers, stray spaces, malformed pairs ignored), removing it from what goes upstream, and
//! the `Set-Cookie` values the filter sends.
//!
//! `Set-Cookie` is rendered here rather than with the `cookie` crate: every attribute is fixed
//! at configure time, so the attribute suffix is rendered once and each response only joins
//! the name, the value and `Max-Age` to it.

use crate::config::SameSite;

/// The configured cookie, with its attribute suffix rendered once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieSpec {
    name: String,
    max_age_seconds: u64,
    /// `; Path=/; Domain=..; Secure; HttpOnly; SameSite=Lax`.
    attributes: String,
    clear: String,
}

impl CookieSpec {
    /// Values are checked by the configuration parser.
    pub fn new(
        name: String,
        path: String,
        domain: Option<String>,
        secure: bool,
        http_only: bool,
        same_site: SameSite,
        max_age_seconds: u64,
    ) -> Self {
        let mut attributes = format!("; Path={path}");
        if let Some(domain) = domain {
            attributes.push_str("; Domain=");
            attributes.push_str(&domain);
        }
        if secure {
            attributes.push_str("; Secure");
        }
        if http_only {
            attributes.push_str("; HttpOnly");
        }
        attributes.push_str(match same_site {
            SameSite::Strict => "; SameSite=Strict",
            SameSite::Lax => "; SameSite=Lax",
            SameSite::None => "; SameSite=None",
        });
        let clear = format!("{name}=; Max-Age=0{attributes}");
        Self {
            name,
            max_age_seconds,
            attributes,
            clear,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn max_age_seconds(&self) -> u64 {
        self.max_age_seconds
    }

    /// `Set-Cookie` that deletes the cookie.
    pub fn clear_header(&self) -> &str {
        &self.clear
    }

    /// `Set-Cookie` for a token; `max_age` `None` makes a browser-session cookie.
    pub fn set_header(&self, token: &str, max_age: Option<u64>) -> String {
        match max_age {
            Some(seconds) => format!(
                "{}={token}; Max-Age={seconds}{}",
                self.name, self.attributes
            ),
            None => format!("{}={token}{}", self.name, self.attributes),
        }
    }
}

/// The `;`-separated segments of a `cookie` header, as `header.split(|b| *b == b';')` gives
/// them (an empty segment where two separators meet or at either end), found with `memchr`:
/// a cookie-store value is over a kilobyte, and a byte-at-a-time split cost about 7
/// instructions per byte, twice per request (`find`, then `without`).
fn segments(header: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(header);
    std::iter::from_fn(move || {
        let here = rest?;
        match memchr::memchr(b';', here) {
            Some(at) => {
                rest = Some(&here[at + 1..]);
                Some(&here[..at])
            }
            None => {
                rest = None;
                Some(here)
            }
        }
    })
}

/// Splits a `cookie` header value into `(name, value)` pairs, trimmed, with a quoted value
/// unquoted. Pairs without `=` or with an empty name are skipped.
fn pairs(header: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    segments(header).filter_map(|pair| {
        let at = memchr::memchr(b'=', pair)?;
        let name = pair[..at].trim_ascii();
        let mut value = pair[at + 1..].trim_ascii();
        if value.len() >= 2 && value[0] == b'"' && value[value.len() - 1] == b'"' {
            value = &value[1..value.len() - 1];
        }
        (!name.is_empty()).then_some((name, value))
    })
}

/// The session cookie as a request carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found<'a> {
    /// No cookie of that name.
    None,
    /// Exactly one value (the same value sent more than once counts as one).
    One(&'a [u8]),
    /// Different values under the one name. A browser sends that when another site of the
    /// same registrable domain (or a longer `Path`) tossed in a cookie of the same name; no
    /// rule can tell the user's own from the tossed one, so the request has no usable session
    /// (docs/security.md, "Threats and defences": cookie tossing).
    Several,
}

/// The cookie called `name` across all `cookie` headers.
pub fn find<'a>(headers: impl IntoIterator<Item = &'a [u8]>, name: &str) -> Found<'a> {
    let mut found = Found::None;
    for header in headers {
        for (_, value) in pairs(header).filter(|(n, _)| *n == name.as_bytes()) {
            found = match found {
                Found::None => Found::One(value),
                Found::One(first) if first == value => Found::One(first),
                _ => return Found::Several,
            };
        }
    }
    found
}

/// The `cookie` header without any cookie called `name`, every other pair kept in order;
/// `None` when nothing remains.
pub fn without(header: &[u8], name: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(header.len());
    for raw in segments(header) {
        let trimmed = raw.trim_ascii();
        if trimmed.is_empty() {
            continue;
        }
        let pair_name =
            memchr::memchr(b'=', trimmed).map_or(trimmed, |at| trimmed[..at].trim_ascii());
        if pair_name == name.as_bytes() {
            continue;
        }
        if !out.is_empty() {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(trimmed);
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn segments_are_what_split_gives(header in proptest::collection::vec(
            proptest::sample::select(b"ab=; \"".to_vec()), 0..40)) {
            let split: Vec<&[u8]> = header.split(|b| *b == b';').collect();
            proptest::prop_assert_eq!(segments(&header).collect::<Vec<_>>(), split);
        }
    }

    #[test]
    fn finds_the_cookie_as_rfc_6265_says() {
        let cases: &[(&[&str], Option<&str>)] = &[
            (&["sid=abc"], Some("abc")),
            (&["a=1; sid=abc; b=2"], Some("abc")),
            (&["a=1;sid=abc"], Some("abc")),
            (&["  sid = abc  ;"], Some("abc")),
            (&["sid=\"abc\""], Some("abc")),
            (
                &["a=1", "sid=from-second-header"],
                Some("from-second-header"),
            ),
            (&["sid=same; sid=same"], Some("same")),
            (&["sid=same", "a=1; sid=\"same\""], Some("same")),
            (&["garbage; ;;=; sid=abc"], Some("abc")),
            (&["sidx=abc; xsid=def"], None),
            (&["SID=abc"], None),
            (&["sid"], None),
            (&["sid="], Some("")),
            (&[], None),
            (&[""], None),
        ];
        for (headers, expected) in cases {
            let found = find(headers.iter().map(|h| h.as_bytes()), "sid");
            let expected = expected.map_or(Found::None, |v| Found::One(v.as_bytes()));
            assert_eq!(found, expected, "{headers:?}");
        }
    }

    #[test]
    fn different_values_under_the_session_name_are_several() {
        let cases: &[&[&str]] = &[
            &["sid=first; sid=second"],
            &["sid=longer-path; a=1", "sid=mine"],
            &["sid=a; sid=a; sid=b"],
            &["sid=x; sid="],
        ];
        for headers in cases {
            let found = find(headers.iter().map(|h| h.as_bytes()), "sid");
            assert_eq!(found, Found::Several, "{headers:?}");
        }
    }

    #[test]
    fn finds_it_in_non_utf8_headers_without_failing() {
        let header: &[u8] = b"a=\xff\xfe; sid=ok";
        assert_eq!(find([header], "sid"), Found::One(b"ok"));
    }

    #[test]
    fn strips_only_the_session_cookie() {
        let cases: &[(&str, Option<&str>)] = &[
            ("sid=abc", None),
            ("a=1; sid=abc; b=2", Some("a=1; b=2")),
            ("sid=abc;a=1", Some("a=1")),
            ("a=1;  sid = x ; sid=y", Some("a=1")),
            ("sidx=1; xsid=2", Some("sidx=1; xsid=2")),
            ("a=1; junk; sid=z", Some("a=1; junk")),
            (";;", None),
        ];
        for (header, expected) in cases {
            let out = without(header.as_bytes(), "sid");
            assert_eq!(out.as_deref(), expected.map(str::as_bytes), "{header}");
        }
    }

    #[test]
    fn renders_set_cookie_values() {
        let spec = CookieSpec::new(
            "sid".into(),
            "/app".into(),
            Some("example.com".into()),
            true,
            true,
            SameSite::Strict,
            60,
        );
        assert_eq!(
            spec.set_header("T", Some(60)),
            "sid=T; Max-Age=60; Path=/app; Domain=example.com; Secure; HttpOnly; SameSite=Strict"
        );
        assert_eq!(
            spec.set_header("T", None),
            "sid=T; Path=/app; Domain=example.com; Secure; HttpOnly; SameSite=Strict"
        );
        assert_eq!(
            spec.clear_header(),
            "sid=; Max-Age=0; Path=/app; Domain=example.com; Secure; HttpOnly; SameSite=Strict"
        );
        let plain = CookieSpec::new("s".into(), "/".into(), None, false, false, SameSite::Lax, 1);
        assert_eq!(plain.clear_header(), "s=; Max-Age=0; Path=/; SameSite=Lax");
    }
}
