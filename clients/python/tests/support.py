"""What the tests run against, from the environment ``cargo xtask python`` sets up.

``EDGE_SESSION_COMPANION_URL``: a real companion (over a real MongoDB wire-protocol server).
``EDGE_SESSION_ENVOY_YAML``: the project's envoy.yaml with strong test secrets in place of its
development ones (``cargo xtask python`` writes it, see xtask/src/python_clients.rs); the keys,
the companion token and the cookie settings come from its filter configuration, so these tests
sign exactly as the filter does.
``EDGE_SESSION_PROXY_URL``: edge-dev running the release filter.wasm in front of the legacy app.
``DJANGO_TESTS_DIR``: the ``tests/`` directory of the pinned Django source distribution.
``FLASK_TESTS_DIR``: the ``tests/`` directory of the pinned Flask source distribution.
``MONGODB_URI``: the MongoDB server the companion uses; the migration tests keep the legacy
packages' collections there, in databases of their own.
``EDGE_SESSION_LEGACY_PYTHON``: the Python of a virtualenv holding the legacy packages
(django-mongo-sessions, flask-mongo-sessions) at pinned versions with the Django, Flask and
pymongo they run on, which writes the legacy sessions the migration tests move.
"""

from __future__ import annotations

import json
import os
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

# The companion's handle API (listing sessions by handle, ending one or all but one) and its
# absolute lifetime land on another branch. The tests that need them are skipped until the
# lead merges both and flips these; each feature's `test_the_companion_flag_matches_the_companion`
# fails when its flag says "absent" about a companion that has it, so none stays off.
COMPANION_HAS_HANDLE_API = True
COMPANION_HAS_ABSOLUTE_TTL = True
NEEDS_HANDLE_API = "needs the companion's handle API (GET/DELETE /v1/users/{user}/sessions by handle)"
NEEDS_ABSOLUTE_TTL = "needs the companion's absolute_ttl_seconds"


@cache
def _test_keys() -> dict[str, Any]:
    path = Path(__file__).resolve().parents[3] / "testdata" / "test_keys.json"
    keys: dict[str, Any] = json.loads(path.read_text("utf-8"))["secrets"]
    return keys


def secret(name: str) -> str:
    """A test key or token by its name in testdata/test_keys.json, the file the Rust tests read
    too (testkit::keys): ``secret("assertion")`` is the base64 key that signs assertions."""
    return str(_test_keys()[name]["value"])


def required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set: run these tests with `cargo xtask python`")
    return value


@cache
def plugin_config() -> dict[str, Any]:
    """The filter's JSON configuration, read from envoy.yaml (the block under ``value: |``)."""
    lines = Path(required("EDGE_SESSION_ENVOY_YAML")).read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "value: |") + 1
    indent = len(lines[start]) - len(lines[start].lstrip())
    block = []
    for line in lines[start:]:
        if line.strip() and len(line) - len(line.lstrip()) < indent:
            break
        block.append(line)
    config: dict[str, Any] = json.loads("\n".join(block))
    return config


def companion_url() -> str:
    return required("EDGE_SESSION_COMPANION_URL")


def companion_token() -> str:
    return str(plugin_config()["companion"]["token"])


def keys() -> list[dict[str, str]]:
    return list(plugin_config()["keys"])


def cookie_config() -> dict[str, Any]:
    """The filter's cookie object, as the clients take it (``EDGE_SESSION["COOKIE"]``)."""
    return dict(plugin_config().get("cookie", {}))


def cookie_name() -> str:
    return str(cookie_config().get("name", "sid"))


def cookie_secure() -> bool:
    return bool(cookie_config().get("secure", True))


def mongodb_uri() -> str:
    return required("MONGODB_URI")


def run_legacy(script: str, *args: str, sessions: list[Any]) -> Any:
    """Runs ``legacy_writers/<script>`` with the legacy virtualenv's Python, ``sessions`` as JSON
    on its stdin; its JSON output."""
    path = Path(__file__).parent / "legacy_writers" / script
    done = subprocess.run(
        [required("EDGE_SESSION_LEGACY_PYTHON"), str(path), *args],
        input=json.dumps(sessions),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{script} failed ({done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout)
