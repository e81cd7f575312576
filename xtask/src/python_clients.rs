//! The Python client package (`clients/python`): Django's own session tests (`SessionTestsMixin`
//! against the companion engine and `CookieSessionTests` against the cookie store engine, from
//! the pinned Django source distribution) and Flask's own session tests (`tests/test_basic.py`
//! from the pinned Flask source distribution), both fetched here, never committed; the Flask
//! tests, the migration tests (on sessions the legacy packages write themselves, from a second
//! virtualenv) and the sharing tests, against a real companion, the legacy app, and `edge-dev`
//! running the release `filter.wasm` with the project's `envoy.yaml` (its development secrets
//! replaced by strong test ones); the cookie sharing tests, against a second edge-dev in the
//! cookie store mode ([`cookie_store_override`]) in front of the same legacy app; and
//! `mypy --strict` over the package.
//!
//! `CookieSessionTests` skips four tests and empties five, for reasons that hold for any cookie
//! store (listed in `clients/python/tests/test_django_cookie_mixin.py`, which checks the list
//! against Django's class, and in `clients/python/README.md`, "Tests"):
//! - skipped: `test_session_load_does_not_create_record` and its async form (no store to
//!   create a record in); `test_session_save_does_not_resurrect_session_logged_out_in_other_context`
//!   and its `asave` form (a logout in another request cannot be seen in a browser's cookie);
//! - emptied: `test_save` and `test_cycle` with their async forms (they check `exists()`,
//!   which is False with no server-side record), `test_actual_expiry_async` (the sync form
//!   runs: Django expects it to fail for its own cookie backend, this engine must pass it).

use crate::demo::{Started, wait_for_port};
use crate::{exec, mongo, root, wasm};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Pinned test dependencies (and the type checker); the package itself needs only the
/// standard library. pymongo reads the legacy packages' collections; pytest is imported by
/// Flask's own tests; setuptools builds the wheel the package test installs; cryptography is
/// the `cookie` extra, for the cookie store codec and its type checking.
const PINS: &[&str] = &[
    "cryptography==50.0.2",
    "Django==5.2.19",
    "Flask==3.1.3",
    "mypy==2.4.1",
    "pymongo==4.20.1",
    "pytest==9.2.0",
    "setuptools==84.2.1",
];
/// The legacy session packages the migration tests move sessions out of, with the newest
/// Django, Flask and pymongo they still run on (django-mongo-sessions needs Django's
/// `force_text`, gone in 4.0; both call pymongo 3's `Collection.update`; flask-mongo-sessions
/// reads `app.session_cookie_name`, gone in Flask 2.3), in a virtualenv of their own.
const LEGACY_PINS: &[&str] = &[
    "django-mongo-sessions==0.0.4",
    "Django==3.2.25",
    "flask-mongo-sessions==0.2.1",
    "Flask==2.2.5",
    "Werkzeug==2.2.3",
    "Flask-PyMongo==2.3.0",
    "pymongo==3.13.0",
];
/// The source distributions whose tests run against the package: Django's
/// `tests/sessions_tests/tests.py` holds `SessionTestsMixin`, Flask's `tests/test_basic.py`
/// its session tests.
const DJANGO_SDIST: Sdist = Sdist {
    spec: "Django==5.2.19",
    dir: "django-5.2.19",
    member: "tests/sessions_tests",
    check: "sessions_tests/tests.py",
};
const FLASK_SDIST: Sdist = Sdist {
    spec: "Flask==3.1.3",
    dir: "flask-3.1.3",
    member: "tests",
    check: "test_basic.py",
};
/// The companion token the Python tests run with instead of envoy.yaml's development one
/// (testdata/test_keys.json): strong enough that the clients, the filter and the companion
/// accept it without their development switch.
const TEST_TOKEN: &str = testkit::keys::COMPANION_TOKEN;
/// The cookie key the Python tests sign with instead of envoy.yaml's development one.
const TEST_KEY: &str = testkit::keys::UNIT_SIGNING;
/// The key the cookie store proxy seals with. Not `COOKIE_STORE_C1`: that one holds the same
/// bytes as [`TEST_KEY`], and the filter refuses a cookie store key that is also a signing
/// key's secret (one secret, one use).
const COOKIE_STORE_KEY: (&str, &str) = ("c0", testkit::keys::COOKIE_STORE_C0);

/// `cargo xtask python`: builds the filter, starts the database (unless `MONGODB_URI` is set)
/// and runs [`run`].
pub fn task() -> Result<()> {
    let wasm_dir = wasm::build_all()?;
    let (uri, _server) = mongo::uri_or_start()?;
    run(&wasm_dir, &uri)
}

/// Starts the companion, the legacy app and edge-dev on free ports and runs every Python test.
pub fn run(wasm_dir: &Path, mongodb_uri: &str) -> Result<()> {
    let began = Instant::now();
    let venv = ensure_venv()?;
    let legacy_venv = crate::venv::ensure("venv-legacy-sessions", LEGACY_PINS, "bin/python")?;
    let django_tests = ensure_sdist_tests(&venv, &DJANGO_SDIST)?;
    let flask_tests = ensure_sdist_tests(&venv, &FLASK_SDIST)?;
    let envoy_yaml = envoy_yaml_with_test_secrets()?;
    exec(
        Command::new(venv.join("bin/mypy"))
            .args([
                "--config-file",
                "clients/python/pyproject.toml",
                "--cache-dir",
            ])
            .arg(wasm::cargo_target_dir().join("mypy-cache"))
            .arg("clients/python/src"),
    )?;
    // The binaries as `cargo test --workspace` builds them (the same features, so after that
    // run this builds nothing; a narrower `cargo build` would rebuild the dependencies).
    exec(Command::new("cargo").args(["test", "--workspace", "--locked", "--no-run"]))?;
    let bin = wasm::cargo_target_dir().join("debug");
    for name in ["edge-session-companion", "edge-dev"] {
        if !bin.join(name).is_file() {
            bail!("{name} was not built into {}", bin.display());
        }
    }
    let (companion, app, proxy, cookie_proxy) = (
        mongo::free_port()?,
        mongo::free_port()?,
        mongo::free_port()?,
        mongo::free_port()?,
    );
    let cookie_override = cookie_store_override();
    let cookie_proxy_log = wasm::cargo_target_dir().join("python-clients/edge-dev-cookie.log");
    let mut started = Started(Vec::new());
    let spawn = |cmd: &mut Command, what: &str| {
        cmd.stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {what}"))
    };
    let child = spawn(
        Command::new(bin.join("edge-session-companion"))
            .env("MONGODB_URI", mongodb_uri)
            .env("COMPANION_TOKEN", TEST_TOKEN)
            .env("COMPANION_LISTEN", format!("127.0.0.1:{companion}"))
            .env(
                "COMPANION_DATABASE",
                format!("python_clients_{}", std::process::id()),
            )
            // Two shared cores and a slow test database: a slow answer is not an outage here.
            .env("COMPANION_DB_TIMEOUT_MS", "5000")
            .env("RUST_LOG", "warn"),
        "the companion",
    )?;
    started.0.push(("the companion", child));
    let child = spawn(
        Command::new("python3")
            .arg(root().join("examples/legacy-app/app.py"))
            .args(["--port", &app.to_string()]),
        "the legacy app",
    )?;
    started.0.push(("the legacy app", child));
    let child = spawn(
        Command::new(bin.join("edge-dev"))
            .arg("--config")
            .arg(&envoy_yaml)
            .args(["--listen", &format!("127.0.0.1:{proxy}")])
            .args(["--cluster", &format!("companion=127.0.0.1:{companion}")])
            .args(["--cluster", &format!("legacy_app=127.0.0.1:{app}")])
            .arg("--wasm")
            .arg(wasm_dir.join("filter.wasm")),
        "edge-dev",
    )?;
    started.0.push(("edge-dev", child));
    // The same envoy.yaml in the cookie store mode, with no companion: its log is kept for
    // the tests, which find the filter's refusals there (edge-dev has no stats endpoint).
    let log = std::fs::File::create(&cookie_proxy_log)
        .with_context(|| format!("cannot create {}", cookie_proxy_log.display()))?;
    let child = spawn(
        Command::new(bin.join("edge-dev"))
            .arg("--config")
            .arg(&envoy_yaml)
            .args(["--listen", &format!("127.0.0.1:{cookie_proxy}")])
            .args(["--cluster", &format!("legacy_app=127.0.0.1:{app}")])
            .arg("--wasm")
            .arg(wasm_dir.join("filter.wasm"))
            .args(["--plugin-config-override", &cookie_override])
            .stderr(log),
        "edge-dev in the cookie store mode",
    )?;
    started.0.push(("edge-dev in the cookie store mode", child));
    wait_for_port(companion, "the companion", &mut started)?;
    wait_for_port(app, "the legacy app", &mut started)?;
    wait_for_port(proxy, "edge-dev", &mut started)?;
    wait_for_port(
        cookie_proxy,
        "edge-dev in the cookie store mode",
        &mut started,
    )?;

    exec(
        Command::new(venv.join("bin/python"))
            // The package from this checkout, by path: the venv lives in a target directory
            // that other checkouts share (`.ci/run`), so it must not point at any one of them.
            .env("PYTHONPATH", root().join("clients/python/src"))
            .args(["-m", "unittest", "discover", "--verbose"])
            .args(["--start-directory", "clients/python/tests"])
            .args(["--top-level-directory", "clients/python"])
            .env(
                "EDGE_SESSION_COMPANION_URL",
                format!("http://127.0.0.1:{companion}"),
            )
            .env(
                "EDGE_SESSION_PROXY_URL",
                format!("http://127.0.0.1:{proxy}"),
            )
            .env("EDGE_SESSION_ENVOY_YAML", &envoy_yaml)
            .env(
                "EDGE_SESSION_COOKIE_PROXY_URL",
                format!("http://127.0.0.1:{cookie_proxy}"),
            )
            .env("EDGE_SESSION_COOKIE_PLUGIN_OVERRIDE", &cookie_override)
            .env("EDGE_SESSION_COOKIE_PROXY_LOG", &cookie_proxy_log)
            .env("DJANGO_TESTS_DIR", &django_tests)
            .env("FLASK_TESTS_DIR", &flask_tests)
            .env("MONGODB_URI", mongodb_uri)
            .env("EDGE_SESSION_LEGACY_PYTHON", legacy_venv.join("bin/python")),
    )?;
    drop(started);
    eprintln!(
        "xtask: python client tests took {:.1} s",
        began.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The project's envoy.yaml with [`TEST_TOKEN`] and [`TEST_KEY`] in place of its development
/// secrets, written under the target directory: edge-dev runs it, and the tests read the keys,
/// the token and the cookie settings from it, so they still follow the project's file.
fn envoy_yaml_with_test_secrets() -> Result<PathBuf> {
    let source = root().join("envoy.yaml");
    let text = std::fs::read_to_string(&source)
        .with_context(|| format!("cannot read {}", source.display()))?;
    let text = replace_string_value(&text, "token", TEST_TOKEN)?;
    let text = replace_string_value(&text, "secret", TEST_KEY)?;
    let dir = wasm::cargo_target_dir().join("python-clients");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("envoy.yaml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// What the cookie store proxy merges over envoy.yaml's plugin configuration: the cookie
/// store with its own key, no companion (and so no session list, which needs one), and the
/// session cookie forwarded, as a Django or Flask app behind the filter needs it. The tests
/// read the key from it (`EDGE_SESSION_COOKIE_PLUGIN_OVERRIDE`), so both sides seal alike.
fn cookie_store_override() -> String {
    let (id, secret) = COOKIE_STORE_KEY;
    format!(
        r#"{{"store": "cookie", "cookie_store": {{"keys": [{{"id": "{id}", "secret": "{secret}"}}]}}, "forward_cookie": true, "companion": null, "session_list": null}}"#
    )
}

/// `text` with the JSON string value of its one `"name": "..."` replaced by `value`. A file
/// with none or several (a second key, say) is an error rather than a guess.
fn replace_string_value(text: &str, name: &str, value: &str) -> Result<String> {
    let field = format!("\"{name}\":");
    let mut found = text.match_indices(&field).map(|(at, _)| at + field.len());
    let (Some(after), None) = (found.next(), found.next()) else {
        bail!("envoy.yaml must hold exactly one {field}: the Python tests replace its value");
    };
    let rest = &text[after..];
    let open = after + rest.len() - rest.trim_start().len();
    let close = text[open..]
        .strip_prefix('"')
        .and_then(|string| string.find('"'))
        .map(|end| open + 1 + end)
        .with_context(|| format!("envoy.yaml: {field} is not followed by a string"))?;
    Ok(format!("{}\"{value}{}", &text[..open], &text[close..]))
}

/// A virtualenv with the pinned test dependencies. The package itself is not installed: the
/// tests find it through `PYTHONPATH`.
fn ensure_venv() -> Result<PathBuf> {
    let venv = wasm::cargo_target_dir().join("venv-python-clients");
    let marker = venv.join(".edge-session-installed");
    // The marker names what is installed; a venv from before the package stopped being
    // installed into it (editable, from one checkout) has another marker and is rebuilt.
    let wanted = format!("{} (package by PYTHONPATH)", PINS.join(" "));
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == wanted) {
        return Ok(venv);
    }
    eprintln!("xtask: installing {wanted} into {}", venv.display());
    exec(
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv),
    )?;
    let pip = venv.join("bin/pip");
    exec(
        Command::new(&pip)
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(PINS),
    )?;
    std::fs::write(&marker, wanted)?;
    Ok(venv)
}

/// A source distribution whose tests run against the package.
struct Sdist {
    /// What `pip download` fetches.
    spec: &'static str,
    /// The directory the archive unpacks into.
    dir: &'static str,
    /// The part of it that is extracted.
    member: &'static str,
    /// A file under its `tests/` that must be there.
    check: &'static str,
}

/// The `tests/` directory of a pinned source distribution (downloaded once).
fn ensure_sdist_tests(venv: &Path, sdist: &Sdist) -> Result<PathBuf> {
    let dir = wasm::cargo_target_dir().join("sdist").join(sdist.dir);
    let tests = dir.join(sdist.dir).join("tests");
    if tests.join(sdist.check).is_file() {
        return Ok(tests);
    }
    exec(
        Command::new(venv.join("bin/pip"))
            .args(["download", "--quiet", "--disable-pip-version-check"])
            .args(["--no-deps", "--no-binary", ":all:", sdist.spec, "--dest"])
            .arg(&dir),
    )?;
    let archive = std::fs::read_dir(&dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|path| path.to_string_lossy().ends_with(".tar.gz"))
        .with_context(|| format!("no source distribution in {}", dir.display()))?;
    exec(
        Command::new("tar")
            .arg("-xzf")
            .arg(&archive)
            .arg("-C")
            .arg(&dir)
            .arg(format!("{}/{}", sdist.dir, sdist.member)),
    )?;
    if !tests.join(sdist.check).is_file() {
        bail!("{} has no tests/{}", archive.display(), sdist.check);
    }
    Ok(tests)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_one_string_value_and_nothing_else() {
        let text =
            "# the token\n{\"keys\": [{\"id\": \"a\", \"secret\": \"old\"}], \"token\":  \"t\"}";
        let done = replace_string_value(text, "token", "new-token").unwrap();
        assert_eq!(done, text.replace("\"t\"", "\"new-token\""));
        let done = replace_string_value(&done, "secret", "S").unwrap();
        assert!(done.contains("\"secret\": \"S\"}") && done.contains("\"id\": \"a\""));
    }

    #[test]
    fn refuses_a_missing_repeated_or_non_string_value() {
        for text in [
            "{}",
            "{\"token\": \"a\", \"token\": \"b\"}",
            "{\"token\": 3}",
            "{\"token\": \"open",
        ] {
            assert!(replace_string_value(text, "token", "x").is_err(), "{text}");
        }
    }

    #[test]
    fn the_cookie_store_key_is_not_the_signing_key() {
        let (id, secret) = COOKIE_STORE_KEY;
        assert_ne!(secret, TEST_KEY, "the filter refuses a shared secret");
        let text = cookie_store_override();
        assert!(text.contains(&format!(r#"{{"id": "{id}", "secret": "{secret}"}}"#)));
        assert!(text.contains(r#""store": "cookie""#));
    }

    #[test]
    fn the_project_envoy_yaml_gets_the_test_secrets() {
        let text = std::fs::read_to_string(root().join("envoy.yaml")).unwrap();
        let done = replace_string_value(&text, "token", TEST_TOKEN).unwrap();
        let done = replace_string_value(&done, "secret", TEST_KEY).unwrap();
        assert!(done.contains(&format!("\"token\": \"{TEST_TOKEN}\"")));
        assert!(done.contains(&format!("\"secret\": \"{TEST_KEY}\"")));
        assert_eq!(done.lines().count(), text.lines().count());
    }
}
