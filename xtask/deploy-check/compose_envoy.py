"""docker-compose.yml's Envoy configuration, generated from envoy.yaml.

There is one Envoy configuration, envoy.yaml. Compose's copy (`configs.envoy.content`, which
Compose fills in from .env: Envoy itself cannot read an environment variable inside the
plugin's StringValue) is envoy.yaml with these differences, on purpose, and nothing else:

- every listener on all addresses (0.0.0.0): the container's port is what is published;
- each cluster's endpoints at its Compose service (CLUSTER_SERVICES);
- the module from the `wasm` volume (MODULE);
- the plugin configuration PLUGIN_CONFIGURATION: secrets and the cookie from .env, the cookie
  name an option (EDGE_SESSION_COOKIE_NAME), no mapped headers, and never
  `allow_development_secrets`;
- the header_mutation filter no longer removes the names envoy.yaml's plugin maps (compose's
  maps none); the injected names stay.

Comments are not carried over (envoy.yaml's explain each part), and every `$` that comes from
envoy.yaml is written `$$`, so Compose interpolates only the variables placed here.

`cargo xtask compose-envoy` writes it; `cargo xtask deploy` (deploy_check.py) fails while
docker-compose.yml differs from what this writes.

usage: compose_envoy.py ROOT
"""

import copy
import json
import sys
from pathlib import Path

import yaml

ENVOY_YAML = "envoy.yaml"
COMPOSE = "docker-compose.yml"

# Where each of envoy.yaml's clusters runs in Compose.
CLUSTER_SERVICES = {"legacy_app": "legacy-app", "companion": "companion"}
LISTEN_ADDRESS = "0.0.0.0"
MODULE = "/etc/envoy/wasm/filter.wasm"
PLUGIN_CONFIGURATION = """{
  "keys": ${EDGE_SESSION_KEYS:?EDGE_SESSION_KEYS is not set: copy .env.example to .env},
  "companion": {"cluster": "companion", "token": "${COMPANION_TOKEN:?COMPANION_TOKEN is not set}", "timeout_ms": 200},
  "cookie": {"name": "${EDGE_SESSION_COOKIE_NAME:-__Host-sid}", "secure": ${EDGE_SESSION_COOKIE_SECURE:-true}},
  "session_list": {"path": "/sessions"},
  "on_store_error": "fail_open"
}
"""

WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
HEADER_MUTATION_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation"
)

# The top-level key docker-compose.yml ends with; from it on, the file is generated.
TAIL_START = "configs:\n"
TAIL_HEAD = """configs:
  # GENERATED from envoy.yaml by `cargo xtask compose-envoy`: do not edit here. Edit envoy.yaml
  # (its comments explain each part), or compose's differences in
  # xtask/deploy-check/compose_envoy.py (addresses by service name, the module from the `wasm`
  # volume, the plugin configuration with the secrets Compose fills in from .env), and run it
  # again; `cargo xtask deploy` fails while this differs from what it writes.
  envoy:
    content: |
"""


class GenerationError(Exception):
    pass


class _Dumper(yaml.SafeDumper):
    """Block style throughout, multi-line strings as literal blocks, no line folding."""


def _represent_str(dumper, value):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _escape_dollars(value):
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, list):
        return [_escape_dollars(v) for v in value]
    if isinstance(value, dict):
        return {_escape_dollars(k): _escape_dollars(v) for k, v in value.items()}
    return value


def _http_filters(bootstrap):
    for listener in bootstrap.get("static_resources", {}).get("listeners", []):
        for chain in listener.get("filter_chains", []):
            for network_filter in chain.get("filters", []):
                yield from network_filter.get("typed_config", {}).get("http_filters", [])


def _mapped_names(plugin_json):
    try:
        plugin = json.loads(plugin_json)
    except (TypeError, json.JSONDecodeError) as err:
        raise GenerationError(f"{ENVOY_YAML}: the plugin configuration is not JSON: {err}")
    mapped = plugin.get("headers", {}).get("map", {}) if isinstance(plugin, dict) else {}
    return {str(name).lower() for name in mapped.values()}


def envoy_for_compose(envoy_yaml_text):
    """Compose's Envoy configuration (YAML text, before Compose interpolates it)."""
    try:
        bootstrap = yaml.safe_load(envoy_yaml_text)
    except yaml.YAMLError as err:
        raise GenerationError(f"{ENVOY_YAML} is not valid YAML: {err}")
    if not isinstance(bootstrap, dict):
        raise GenerationError(f"{ENVOY_YAML} is not a mapping")
    mapped = set()
    for http_filter in _http_filters(bootstrap):
        typed = http_filter.get("typed_config", {})
        if typed.get("@type") == WASM_TYPE:
            mapped |= _mapped_names(typed.get("config", {}).get("configuration", {}).get("value"))
    bootstrap = _escape_dollars(copy.deepcopy(bootstrap))
    resources = bootstrap.get("static_resources", {})
    for listener in resources.get("listeners", []):
        listener["address"]["socket_address"]["address"] = LISTEN_ADDRESS
    for cluster in resources.get("clusters", []):
        service = CLUSTER_SERVICES.get(cluster.get("name"))
        if service is None:
            raise GenerationError(
                f"{ENVOY_YAML}'s cluster {cluster.get('name')!r} has no Compose service in "
                "CLUSTER_SERVICES of xtask/deploy-check/compose_envoy.py"
            )
        for locality in cluster.get("load_assignment", {}).get("endpoints", []):
            for endpoint in locality.get("lb_endpoints", []):
                endpoint["endpoint"]["address"]["socket_address"]["address"] = service
    wasm_filters = [
        f for f in _http_filters(bootstrap) if f.get("typed_config", {}).get("@type") == WASM_TYPE
    ]
    if len(wasm_filters) != 1:
        raise GenerationError(f"{ENVOY_YAML} must have one Wasm HTTP filter, not {len(wasm_filters)}")
    config = wasm_filters[0]["typed_config"]["config"]
    # Placed after the escaping: its `$` are Compose's to interpolate.
    config["configuration"]["value"] = PLUGIN_CONFIGURATION
    config["vm_config"]["code"]["local"]["filename"] = MODULE
    for http_filter in _http_filters(bootstrap):
        typed = http_filter.get("typed_config", {})
        if typed.get("@type") == HEADER_MUTATION_TYPE:
            removals = typed.get("mutations", {}).get("request_mutations", [])
            removals[:] = [m for m in removals if str(m.get("remove", "")).lower() not in mapped]
    return yaml.dump(bootstrap, Dumper=_Dumper, sort_keys=False, width=1 << 16)


def compose_file(compose_text, envoy_yaml_text):
    """docker-compose.yml with its generated tail (from `configs:` on) written again."""
    at = compose_text.find("\n" + TAIL_START)
    if at < 0:
        raise GenerationError(f"{COMPOSE} has no top-level `configs:` to generate")
    body = envoy_for_compose(envoy_yaml_text)
    content = "".join(line if line == "\n" else "      " + line for line in body.splitlines(True))
    return compose_text[: at + 1] + TAIL_HEAD + content


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    root = Path(sys.argv[1])
    compose = root / COMPOSE
    try:
        text = compose_file(compose.read_text(), (root / ENVOY_YAML).read_text())
    except (OSError, GenerationError) as err:
        print(f"compose_envoy: {err}", file=sys.stderr)
        return 1
    if text != compose.read_text():
        compose.write_text(text)
        print(f"compose_envoy: wrote {COMPOSE}'s Envoy configuration from {ENVOY_YAML}")
    else:
        print(f"compose_envoy: {COMPOSE} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
