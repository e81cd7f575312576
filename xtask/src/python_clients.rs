//! The Python client package (`clients/python`): Django's own session tests (`SessionTestsMixin`
//! from the pinned Django source distribution, fetched here, never committed), the Flask tests
//! and the sharing tests, against a real companion, the legacy app, and `edge-dev` running the
//! release `filter.wasm` with the project's `envoy.yaml`; and `mypy --strict` over the package.

use crate::demo::{DEV_TOKEN, Started, wait_for_port};
use crate::{exec, mongo, root, wasm};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Pinned test dependencies (and the type checker); the package itself needs only the
/// standard library.
const PINS: &[&str] = &["Django==5.2.19", "Flask==3.1.3", "mypy==2.4.1"];
/// The source distribution whose `tests/sessions_tests/tests.py` holds `SessionTestsMixin`.
const DJANGO_SDIST: &str = "Django==5.2.19";
const DJANGO_SOURCE_DIR: &str = "django-5.2.19";

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
    let django_tests = ensure_django_tests(&venv)?;
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
    let (companion, app, proxy) = (
        mongo::free_port()?,
        mongo::free_port()?,
        mongo::free_port()?,
    );
    let mut started = Started(Vec::new());
    let spawn = |cmd: &mut Command, what: &str| {
        cmd.stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {what}"))
    };
    let child = spawn(
        Command::new(bin.join("edge-session-companion"))
            .env("MONGODB_URI", mongodb_uri)
            .env("COMPANION_TOKEN", DEV_TOKEN)
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
            .arg(root().join("envoy.yaml"))
            .args(["--listen", &format!("127.0.0.1:{proxy}")])
            .args(["--cluster", &format!("companion=127.0.0.1:{companion}")])
            .args(["--cluster", &format!("legacy_app=127.0.0.1:{app}")])
            .arg("--wasm")
            .arg(wasm_dir.join("filter.wasm")),
        "edge-dev",
    )?;
    started.0.push(("edge-dev", child));
    wait_for_port(companion, "the companion", &mut started)?;
    wait_for_port(app, "the legacy app", &mut started)?;
    wait_for_port(proxy, "edge-dev", &mut started)?;

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
            .env("EDGE_SESSION_ENVOY_YAML", root().join("envoy.yaml"))
            .env("DJANGO_TESTS_DIR", &django_tests),
    )?;
    drop(started);
    eprintln!(
        "xtask: python client tests took {:.1} s",
        began.elapsed().as_secs_f64()
    );
    Ok(())
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

/// Django's `tests/` directory from its pinned source distribution (downloaded once).
fn ensure_django_tests(venv: &Path) -> Result<PathBuf> {
    let dir = wasm::cargo_target_dir().join("django-sdist");
    let tests = dir.join(DJANGO_SOURCE_DIR).join("tests");
    if tests.join("sessions_tests/tests.py").is_file() {
        return Ok(tests);
    }
    exec(
        Command::new(venv.join("bin/pip"))
            .args(["download", "--quiet", "--disable-pip-version-check"])
            .args(["--no-deps", "--no-binary", ":all:", DJANGO_SDIST, "--dest"])
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
            .arg(format!("{DJANGO_SOURCE_DIR}/tests/sessions_tests")),
    )?;
    if !tests.join("sessions_tests/tests.py").is_file() {
        bail!("{} has no tests/sessions_tests/tests.py", archive.display());
    }
    Ok(tests)
}
