"""Checks the deploy artifacts against the schemas of the software that loads them.

Run by `cargo xtask test` (xtask/src/deploy.rs) in a virtualenv holding the pinned tools:

- envoy.yaml, and the Envoy config inside docker-compose.yml (with .env.example's values filled
  in as Compose would), are parsed into Envoy's v3 `Bootstrap` with xds-protos (Envoy's API
  compiled for Python protobuf): unknown fields are refused at every depth, `typed_config`
  included, because the message types of every extension used are imported below.
- deploy/istio/*.yaml are parsed with the Istio CRD models of cloudcoil-models-istio, made
  strict (unknown fields refused) the way `kubectl --validate=strict` treats them; the values
  of an EnvoyFilter's patches are parsed strictly as the Envoy messages they patch.
- docker-compose's Envoy config must be what compose_envoy.py generates from envoy.yaml
  (`cargo xtask compose-envoy`); it is still checked on its own as above, with .env.example.
- Then the facts the filter and companion rely on, which no schema knows: the connection
  manager's defences (underscore names refused, idle and request timeouts), the injected
  header names stripped ahead of the Wasm filter and never by the route, the Wasm filter
  before the router, the v8 runtime, a local module, FAIL_CLOSED, the plugin's companion
  cluster exists, the admin interface on loopback, Compose health dependencies, the
  WasmPlugin's cluster naming the companion's Service, probes, limits and the Secret's keys.
- Every secret slot of every template holds the placeholder, and the filter's own parser
  (CHECKER, filter/examples/check_plugin_config.rs) accepts each plugin configuration with
  test secrets and refuses each placeholder (deploy_secrets.py); the files it read are left
  in OUT_DIR.

docker-compose.yml's Compose schema and the Kubernetes manifests' schemas are checked by
check-jsonschema and kubernetes-validate, which xtask runs itself.

usage: deploy_check.py ROOT OUT_DIR CHECKER
"""

import base64
import functools
import inspect
import ipaddress
import json
import re
import subprocess
import sys
import tempfile
import urllib.parse
from importlib.metadata import version
from pathlib import Path

import pydantic
import yaml
from google.protobuf import json_format, wrappers_pb2

# Every message type that appears in a typed_config of our Envoy configs. Importing a module
# registers its types, so the Any fields resolve instead of failing as unknown types.
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.core.v3 import protocol_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.access_loggers.stream.v3 import stream_pb2
from envoy.extensions.filters.http.header_mutation.v3 import header_mutation_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
from envoy.extensions.filters.http.wasm.v3 import wasm_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401
from envoy.extensions.wasm.v3 import wasm_pb2 as wasm_config_pb2

from cloudcoil import apimachinery
from cloudcoil.models.istio.extensions import v1alpha1 as istio_extensions
from cloudcoil.models.istio.networking import v1 as istio_networking
from cloudcoil.models.istio.networking import v1alpha3 as istio_networking_v1alpha3
from cloudcoil.models.istio.security import v1 as istio_security

import compose_envoy as envoy_generator
import deploy_secrets

WASM_FILTER = "envoy.filters.http.wasm"
HEADER_MUTATION_FILTER = "envoy.filters.http.header_mutation"
ROUTER_FILTER = "envoy.filters.http.router"
# The companion's development switch (its --allow-development-secrets flag).
COMPANION_DEVELOPMENT_SWITCH = "COMPANION_ALLOW_DEVELOPMENT_SECRETS"


class Problems:
    """Collects every problem, so one run names them all."""

    def __init__(self):
        self.items = []

    def add(self, source, message):
        self.items.append(f"{source}: {message}")

    def check(self, condition, source, message):
        if not condition:
            self.add(source, message)


# ----- Envoy ------------------------------------------------------------------------------------


def check_envoy(document, source, problems):
    """Parses a bootstrap strictly and checks what the filter needs.

    Returns the Bootstrap and the plugin JSON (either None when not found)."""
    try:
        bootstrap = json_format.ParseDict(document, bootstrap_pb2.Bootstrap())
    except json_format.ParseError as err:
        problems.add(source, f"not a valid Envoy v3 Bootstrap: {err}")
        return None, None
    clusters = {c.name for c in bootstrap.static_resources.clusters}
    admin = bootstrap.admin.address.socket_address.address
    problems.check(
        is_loopback(admin), source, f"admin listens on {admin!r}, not on loopback"
    )
    plugin_json = None
    for listener in bootstrap.static_resources.listeners:
        for chain in listener.filter_chains:
            for network_filter in chain.filters:
                hcm = hcm_pb2.HttpConnectionManager()
                if not network_filter.typed_config.Unpack(hcm):
                    continue
                where = f"{source}: listener {listener.name}"
                check_connection_manager(hcm, where, problems)
                check_access_log(hcm, where, problems)
                for host in hcm.route_config.virtual_hosts:
                    for route in host.routes:
                        cluster = route.route.cluster
                        problems.check(
                            not cluster or cluster in clusters,
                            where,
                            f"route to unknown cluster {cluster!r}",
                        )
                names = [f.name for f in hcm.http_filters]
                if WASM_FILTER not in names:
                    problems.add(where, f"no {WASM_FILTER} filter")
                    continue
                problems.check(
                    names[-1:] == [ROUTER_FILTER]
                    and names.index(WASM_FILTER) < names.index(ROUTER_FILTER),
                    where,
                    f"the router must be the last filter, after {WASM_FILTER}: {names}",
                )
                wasm_filter = hcm.http_filters[names.index(WASM_FILTER)]
                plugin_json = check_wasm(wasm_filter, clusters, where, problems)
                header_names = InjectedHeaders.of(plugin_json)
                check_header_mutation(
                    hcm.http_filters[: names.index(WASM_FILTER)], header_names, where, problems
                )
                check_route_removals(hcm.route_config, header_names, where, problems)
    if plugin_json is None:
        problems.add(source, "no plugin configuration found")
    return bootstrap, plugin_json


def check_connection_manager(hcm, where, problems):
    """The connection manager's own defences, which hold even where the filter does not run."""
    action = hcm.common_http_protocol_options.headers_with_underscores_action
    problems.check(
        action != protocol_pb2.HttpProtocolOptions.ALLOW,
        where,
        "common_http_protocol_options.headers_with_underscores_action must be REJECT_REQUEST "
        "(or DROP_HEADER): app servers read x_session_user as x-session-user",
    )
    # A request the filter paused and never resumed (its VM failed in a callout's answer) is
    # ended only by these: the route's timeout starts at the router, after every filter.
    for field in ("stream_idle_timeout", "request_timeout"):
        problems.check(
            hcm.HasField(field) and getattr(hcm, field).ToNanoseconds() > 0,
            where,
            f"{field} must be set and above 0 (0 disables it): it bounds a request the "
            "filter holds",
        )


class InjectedHeaders:
    """The request header names a plugin configuration makes the filter's own: the headers it
    injects (its prefix and the fixed suffixes) and the mapped ones."""

    # What the filter injects under its prefix (README, "The filter"), `browser` and `handle`
    # included: they are the filter's whether or not a given version injects them. The
    # configuration can rename the prefix, not these.
    SUFFIXES = ("state", "id", "user", "data", "expires", "browser", "handle", "list")

    def __init__(self, prefix, mapped):
        self.prefix = prefix.lower()
        self.mapped = sorted(name.lower() for name in mapped)

    @classmethod
    def of(cls, plugin_json):
        try:
            plugin = json.loads(plugin_json or "{}")
        except ValueError:
            plugin = {}
        headers = plugin.get("headers", {}) if isinstance(plugin, dict) else {}
        headers = headers if isinstance(headers, dict) else {}
        mapped = headers.get("map", {})
        return cls(
            str(headers.get("prefix", "x-session-")),
            [str(v) for v in mapped.values()] if isinstance(mapped, dict) else [],
        )

    def injected(self):
        return [self.prefix + suffix for suffix in self.SUFFIXES] + self.mapped

    def is_reserved(self, name):
        """Whether a header of this name is one of ours in a spelling an app could read as
        ours: any case, `_` and `-` as one character."""

        def fold(text):
            return text.lower().replace("_", "-")

        return fold(name).startswith(fold(self.prefix)) or fold(name) in map(fold, self.mapped)


def check_header_mutation(filters_before_wasm, header_names, where, problems):
    """A worker whose copy of the Wasm plugin could not be created runs the chain without the
    filter (Envoy's PluginConfig::createContext returns no context), even with a closed
    failure policy: a header_mutation filter ahead of it must strip the injected names."""
    removed = set()
    for http_filter in filters_before_wasm:
        mutation = header_mutation_pb2.HeaderMutation()
        if http_filter.name == HEADER_MUTATION_FILTER and http_filter.typed_config.Unpack(
            mutation
        ):
            removed |= {m.remove for m in mutation.mutations.request_mutations if m.remove}
    missing = [name for name in header_names.injected() if name not in removed]
    problems.check(
        not missing,
        where,
        f"an {HEADER_MUTATION_FILTER} filter before {WASM_FILTER} must remove {missing} from "
        "every request (mutations.request_mutations, remove): a worker without the Wasm filter "
        "would pass them to the app",
    )


def check_route_removals(route_config, header_names, where, problems):
    """The router applies route-level request_headers_to_remove after every decoder filter
    (Router::decodeHeaders calls finalizeRequestHeaders), so naming one of our headers there
    would strip what the filter injected."""
    scopes = [("route_config", route_config)]
    for host in route_config.virtual_hosts:
        scopes.append((f"virtual host {host.name}", host))
        scopes += [(f"virtual host {host.name}, a route", route) for route in host.routes]
    for scope, config in scopes:
        ours = [n for n in config.request_headers_to_remove if header_names.is_reserved(n)]
        problems.check(
            not ours,
            where,
            f"{scope}: request_headers_to_remove names {ours}, which removes the filter's own "
            f"headers after it injected them; strip them with {HEADER_MUTATION_FILTER} before "
            f"{WASM_FILTER} instead",
        )


def check_access_log(hcm, where, problems):
    """Envoy counts no stat when a filter VM fails closed; the response code details in the
    access log (wasm_fail_stream) show it per request. Istio prints them in its own format."""
    formats = []
    for log in hcm.access_log:
        stdout = stream_pb2.StdoutAccessLog()
        if log.typed_config.Unpack(stdout):
            formats.append(stdout.log_format.text_format_source.inline_string)
    problems.check(
        any("%RESPONSE_CODE_DETAILS%" in f for f in formats),
        where,
        "the stdout access log must print %RESPONSE_CODE_DETAILS%: it is where a failed "
        "filter VM (wasm_fail_stream) shows per request",
    )


def check_compose_generated(root, problems, compose_text=None):
    """docker-compose.yml's Envoy configuration must be what compose_envoy.py writes from
    envoy.yaml: one configuration, with compose's differences only where that file puts them."""
    try:
        if compose_text is None:
            compose_text = (root / COMPOSE).read_text()
        wanted = envoy_generator.compose_file(compose_text, (root / "envoy.yaml").read_text())
    except (OSError, envoy_generator.GenerationError) as err:
        problems.add(f"{COMPOSE} configs.envoy", f"cannot be generated: {err}")
        return
    problems.check(
        compose_text == wanted,
        f"{COMPOSE} configs.envoy",
        "is not what envoy.yaml generates: edit envoy.yaml (or compose's differences in "
        "xtask/deploy-check/compose_envoy.py), then run `cargo xtask compose-envoy`",
    )


def check_wasm(http_filter, clusters, where, problems):
    wasm = wasm_pb2.Wasm()
    if not http_filter.typed_config.Unpack(wasm):
        problems.add(where, f"{WASM_FILTER}'s typed_config is not a Wasm message")
        return None
    config = wasm.config
    vm = config.vm_config
    problems.check(
        vm.runtime == "envoy.wasm.runtime.v8",
        where,
        f"runtime {vm.runtime!r}, want envoy.wasm.runtime.v8",
    )
    problems.check(
        vm.code.local.filename != "",
        where,
        "the module must come from a local file (vm_config.code.local.filename)",
    )
    problems.check(config.root_id != "", where, "root_id is empty")
    problems.check(
        config.failure_policy == wasm_config_pb2.FAIL_CLOSED and not config.fail_open,
        where,
        "the plugin must set failure_policy: FAIL_CLOSED, and not the deprecated fail_open: "
        "a failed VM must answer 503, not pass requests without session checks",
    )
    value = wrappers_pb2.StringValue()
    if not config.configuration.Unpack(value):
        problems.add(where, "configuration must be a google.protobuf.StringValue (JSON)")
        return None
    try:
        plugin = json.loads(value.value)
    except ValueError as err:
        problems.add(where, f"the plugin configuration is not JSON: {err}")
        return None
    cluster = plugin.get("companion", {}).get("cluster") if isinstance(plugin, dict) else None
    problems.check(
        cluster in clusters,
        where,
        f"the plugin's companion.cluster {cluster!r} is not a cluster of this config",
    )
    check_cookie_name(plugin, where, problems)
    return value.value


def check_cookie_name(plugin, where, problems):
    """A Secure cookie for the whole host is named __Host-: browsers then take it only from
    this host, so a sibling subdomain cannot toss in a session cookie of the same name (a
    session swap: the victim works in the attacker's session). Without Secure (plain http in
    development) the prefix is impossible; with a Domain it is, on purpose, shared."""
    cookie = plugin.get("cookie", {}) if isinstance(plugin, dict) else {}
    cookie = cookie if isinstance(cookie, dict) else {}
    name = cookie.get("name", "sid")
    wanted = "__Host-" + name.removeprefix("__Secure-")
    problems.check(
        not cookie.get("secure", True) or cookie.get("domain") or name.startswith("__Host-"),
        where,
        f"the cookie {name!r} is Secure and host-only: name it {wanted} so a sibling "
        "subdomain cannot plant one",
    )


def is_loopback(address):
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


# ----- Compose ----------------------------------------------------------------------------------

ENV_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
VARIABLE = re.compile(r"\$(\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\})")


def read_env_file(path):
    """A Compose env file: KEY=VALUE lines; single quotes keep the value literally."""
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = ENV_LINE.match(line)
        if not match:
            raise ValueError(f"{path.name}:{number}: not KEY=VALUE")
        key, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def interpolate(text, env, source, problems):
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error} and $$, on one string."""

    def substitute(match):
        if match.group(1) == "$":
            return "$"
        name, operator, argument = match.group(2), match.group(3), match.group(4)
        value = env.get(name)
        if value is None or (value == "" and operator and operator.startswith(":")):
            if operator and operator.endswith("-"):
                return argument
            problems.add(source, f"${{{name}}} is not set in .env.example")
            return ""
        return value

    return VARIABLE.sub(substitute, text)


def interpolate_all(value, env, source, problems):
    if isinstance(value, str):
        return interpolate(value, env, source, problems)
    if isinstance(value, list):
        return [interpolate_all(v, env, source, problems) for v in value]
    if isinstance(value, dict):
        return {k: interpolate_all(v, env, source, problems) for k, v in value.items()}
    return value


COMPOSE = "docker-compose.yml"
ENV_EXAMPLE = ".env.example"

# Every variable of .env.example is a secret (with its kind) or a setting: a new variable must
# be sorted here, so no secret slot goes without its placeholder check.
ENV_SECRETS = {
    "COMPANION_TOKEN": "token",
    "EDGE_SESSION_KEYS": "keys",
    "MONGO_INITDB_ROOT_PASSWORD": "token",
}
ENV_SETTINGS = {
    "EDGE_SESSION_COOKIE_NAME",
    "EDGE_SESSION_COOKIE_SECURE",
    "MONGO_INITDB_ROOT_USERNAME",
}
# .env for plain http on a host other than localhost, as .env.example documents it.
ENV_PLAIN_HTTP = {"EDGE_SESSION_COOKIE_NAME": "sid", "EDGE_SESSION_COOKIE_SECURE": "false"}


def check_env_example(env, problems):
    """Sorts .env.example's variables; returns the environment with test secrets filled in."""
    for variable in sorted(set(env) - set(ENV_SECRETS) - ENV_SETTINGS):
        problems.add(
            ENV_EXAMPLE,
            f"{variable} is neither in ENV_SECRETS nor in ENV_SETTINGS of "
            "xtask/deploy-check/deploy_check.py: say whether it is a secret",
        )
    return deploy_secrets.env_test_values(env, ENV_SECRETS, ENV_EXAMPLE, problems)


def compose_with(root, env, problems, raw=None):
    """docker-compose.yml (or `raw`, its parsed YAML) as Compose reads it with `env` as .env,
    or None."""
    if raw is None:
        raw = load_yaml(root / COMPOSE, root, problems)
    return None if raw is None else interpolate_all(raw, env, COMPOSE, problems)


def compose_envoy(compose, problems):
    """The Envoy configuration document inside a compose file, or None."""
    envoy_config = compose.get("configs", {}).get("envoy", {}).get("content")
    if envoy_config is None:
        problems.add(COMPOSE, "configs.envoy.content (Envoy's configuration) is missing")
        return None
    try:
        return yaml.safe_load(envoy_config)
    except yaml.YAMLError as err:
        problems.add(COMPOSE, f"configs.envoy.content is not valid YAML: {err}")
        return None


def compose_plugin_with(root, env):
    """The plugin configuration compose gives Envoy with `env` as .env (problems are the
    template check's to report)."""
    scratch = Problems()
    compose = compose_with(root, env, scratch)
    document = compose_envoy(compose, scratch) if compose else None
    return check_envoy(document, COMPOSE, scratch)[1] if document else None


def check_compose(root, env, problems, raw=None):
    source = COMPOSE
    compose = compose_with(root, env, problems, raw)
    if compose is None:
        return None, None
    services = compose.get("services", {})
    for name, service in services.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            wanted = condition.get("condition") if isinstance(condition, dict) else None
            target = services.get(dependency, {})
            if wanted == "service_healthy":
                problems.check(
                    "healthcheck" in target,
                    source,
                    f"{name} waits for {dependency} to be healthy, which has no healthcheck",
                )
            problems.check(
                dependency in services, source, f"{name} depends on unknown {dependency}"
            )
    for name in ("mongo", "companion"):
        problems.check(
            "healthcheck" in services.get(name, {}), source, f"{name} has no healthcheck"
        )
    for name, service in services.items():
        image = service.get("image")
        if image:
            problems.check(
                re.search(r":v?\d+\.\d+\.\d+", image) is not None,
                source,
                f"{name}'s image {image!r} is not pinned to a full version",
            )
    check_mongo_credentials(services, problems)
    companion_env = environment_of(services.get("companion", {}))
    problems.check(
        not is_true(companion_env.get(COMPANION_DEVELOPMENT_SWITCH)),
        source,
        f"the companion sets {COMPANION_DEVELOPMENT_SWITCH}: only local development may "
        "accept weak secrets",
    )
    document = compose_envoy(compose, problems)
    if document is None:
        return None, None
    return check_envoy(document, f"{source} configs.envoy", problems)


def environment_of(service):
    """A compose service's environment as a dict (Compose also accepts a KEY=VALUE list)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


def check_mongo_credentials(services, problems):
    """Without a root user the official image runs MongoDB with no authentication at all:
    anything on the compose network could read and rewrite every session."""
    mongo = services.get("mongo", {})
    env = environment_of(mongo)
    user = env.get("MONGO_INITDB_ROOT_USERNAME")
    password = env.get("MONGO_INITDB_ROOT_PASSWORD")
    problems.check(
        user and password,
        COMPOSE,
        "mongo: MONGO_INITDB_ROOT_USERNAME and MONGO_INITDB_ROOT_PASSWORD must be set, or "
        "MongoDB runs without authentication",
    )
    problems.check(not mongo.get("ports"), COMPOSE, "mongo must not publish ports")
    mongo_networks = networks_of(mongo)
    for name, service in services.items():
        shared = mongo_networks & networks_of(service)
        problems.check(
            name in ("mongo", "companion") or not shared,
            COMPOSE,
            f"{name} shares network(s) {sorted(shared)} with mongo: only the companion may",
        )
    uri = str(environment_of(services.get("companion", {})).get("MONGODB_URI", ""))
    parts = urllib.parse.urlsplit(uri)
    query = urllib.parse.parse_qs(parts.query)
    problems.check(
        parts.hostname == "mongo"
        and urllib.parse.unquote(parts.username or "") == user
        and urllib.parse.unquote(parts.password or "") == password
        and query.get("authSource") == ["admin"],
        COMPOSE,
        "the companion's MONGODB_URI must log in to mongo as MONGO_INITDB_ROOT_USERNAME with "
        "MONGO_INITDB_ROOT_PASSWORD and authSource=admin (where the image creates the user)",
    )
    check_mongo_placeholder_guard(mongo, problems)


def networks_of(service):
    """The compose networks a service joins (`default` when it names none)."""
    if service.get("network_mode") == "none":
        return set()
    if "network_mode" in service:
        return {service["network_mode"]}
    return set(service.get("networks") or ["default"])


def check_mongo_placeholder_guard(mongo, problems):
    """Runs the mongo service's entrypoint with a stand-in for the image's own: the template's
    placeholder password must stop it, a real one must reach the image's entrypoint."""
    entrypoint = mongo.get("entrypoint")
    if not isinstance(entrypoint, list) or not entrypoint:
        problems.add(COMPOSE, "mongo has no entrypoint refusing the placeholder password")
        return
    command = entrypoint + list(mongo.get("command") or [])
    with tempfile.TemporaryDirectory() as bin_dir:
        image_entrypoint = Path(bin_dir) / "docker-entrypoint.sh"
        image_entrypoint.write_text('#!/bin/sh\necho "image entrypoint: $*"\n')
        image_entrypoint.chmod(0o755)
        for password, starts in (
            (deploy_secrets.PLACEHOLDER + "-openssl-rand-hex-24", False),
            ("x" + deploy_secrets.PLACEHOLDER.lower(), False),
            (deploy_secrets.test_token("mongo"), True),
        ):
            env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "MONGO_INITDB_ROOT_PASSWORD": password}
            try:
                result = subprocess.run(
                    command,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=10,
                )
            except (OSError, subprocess.TimeoutExpired) as err:
                problems.add(COMPOSE, f"mongo's entrypoint cannot run here: {err}")
                return
            started = result.returncode == 0 and "image entrypoint: mongod" in result.stdout
            problems.check(
                started == starts,
                COMPOSE,
                f"mongo's entrypoint must {'start' if starts else 'refuse'} with password "
                f"{password!r}; exit {result.returncode}, {result.stderr.strip()!r}",
            )


def is_true(value):
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def check_dockerignore(root, problems):
    """The images are built with `COPY . .`: .env and its variants must stay out."""
    try:
        lines = (root / ".dockerignore").read_text().splitlines()
    except OSError:
        lines = []
    for path, ignored in (
        (".env", True),
        (".env.local", True),
        (".env.production", True),
        ("companion/.env", True),
        (".env.example", False),
    ):
        problems.check(
            dockerignored(lines, path) == ignored,
            ".dockerignore",
            f"{path} must {'' if ignored else 'not '}be excluded from the build context",
        )


def dockerignored(lines, path):
    """Whether Docker leaves `path` out of the build context: the last matching pattern wins,
    `!` re-includes, `**` spans directories, `*` and `?` stay within one."""
    ignored = False
    for line in lines:
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        # A pattern matching a directory excludes what is inside it.
        if re.fullmatch(regex + "(?:/.*)?", path):
            ignored = not negate
    return ignored


# ----- Istio ------------------------------------------------------------------------------------


@functools.cache
def strict_istio_models():
    """The CRD models, refusing unknown fields (pydantic's default ignores them)."""
    modules = (
        apimachinery,
        istio_extensions,
        istio_networking,
        istio_networking_v1alpha3,
        istio_security,
    )
    models = [
        cls
        for module in modules
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, pydantic.BaseModel) and cls.__module__ == module.__name__
    ]
    for cls in models:
        cls.model_config["extra"] = "forbid"
    # Twice: a model embeds its fields' schemas as they were when it was rebuilt.
    for _ in range(2):
        for cls in models:
            cls.model_rebuild(force=True)
    return {
        ("extensions.istio.io/v1alpha1", "WasmPlugin"): istio_extensions.WasmPlugin,
        ("networking.istio.io/v1", "ServiceEntry"): istio_networking.ServiceEntry,
        ("networking.istio.io/v1alpha3", "EnvoyFilter"): istio_networking_v1alpha3.EnvoyFilter,
        ("security.istio.io/v1", "PeerAuthentication"): istio_security.PeerAuthentication,
        ("security.istio.io/v1", "AuthorizationPolicy"): istio_security.AuthorizationPolicy,
    }


def load_documents(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def load_yaml(path, root, problems):
    """One YAML document, or None (and a problem) when it does not parse."""
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        problems.add(str(path.relative_to(root)), f"not valid YAML: {err}")
        return None


def mesh_services(root):
    """`(FQDN, port)` of the Services in deploy/kubernetes and hosts of ServiceEntries."""
    known = set()
    for path in sorted((root / "deploy/kubernetes").glob("*.yaml")):
        for doc in load_documents(path):
            if doc.get("kind") == "Service":
                meta = doc["metadata"]
                fqdn = f"{meta['name']}.{meta.get('namespace', 'default')}.svc.cluster.local"
                for port in doc["spec"].get("ports", []):
                    known.add((fqdn, port["port"]))
    for path in sorted((root / "deploy/istio").glob("*.yaml")):
        for doc in load_documents(path):
            if doc.get("kind") == "ServiceEntry":
                for host in doc["spec"].get("hosts", []):
                    for port in doc["spec"].get("ports", []):
                        known.add((host, port["number"]))
    return known


def check_istio(root, problems):
    documents = [
        (str(path.relative_to(root)), doc)
        for path in sorted((root / "deploy/istio").glob("*.yaml"))
        for doc in load_documents(path)
    ]
    return check_istio_documents(documents, mesh_services(root), problems)


def check_istio_documents(documents, services, problems):
    """`documents`: (source, resource) pairs. Returns the WasmPlugin's plugin JSON."""
    models = strict_istio_models()
    plugin_json = None
    plugins, envoy_filters = [], []
    for source, doc in documents:
        key = (doc.get("apiVersion"), doc.get("kind"))
        model = models.get(key)
        if model is None:
            problems.add(source, f"no schema known for {key}")
            continue
        try:
            model.model_validate(doc)
        except pydantic.ValidationError as err:
            problems.add(source, f"{key[1]} does not match Istio's schema: {err}")
            continue
        if key[1] == "WasmPlugin":
            plugin_json = check_wasm_plugin(doc, services, source, problems)
            plugins.append((source, doc, plugin_json))
        elif key[1] == "EnvoyFilter":
            envoy_filters.append((source, doc))
    if plugin_json is None:
        problems.add("deploy/istio", "no WasmPlugin found")
    for source, plugin, plugin_json in plugins:
        check_mesh_connection_manager(
            source, plugin, InjectedHeaders.of(plugin_json), envoy_filters, problems
        )
    return plugin_json


def check_mesh_connection_manager(source, plugin, header_names, envoy_filters, problems):
    """The WasmPlugin cannot configure the sidecar's connection manager or put a filter ahead
    of itself: an EnvoyFilter on the same workloads must, as envoy.yaml does."""
    namespace = plugin["metadata"].get("namespace")
    labels = plugin["spec"].get("selector", {}).get("matchLabels")
    matching = [
        (where, doc)
        for where, doc in envoy_filters
        if doc["metadata"].get("namespace") == namespace
        and doc["spec"].get("workloadSelector", {}).get("labels") == labels
    ]
    if not matching:
        problems.add(
            source,
            f"no EnvoyFilter in namespace {namespace!r} with workloadSelector labels {labels}: "
            "the sidecar's connection manager keeps Envoy's defaults (underscores allowed, "
            "5 min idle timeout) and nothing strips the injected headers ahead of the plugin",
        )
        return
    for where, doc in matching:
        hcm_checked = header_mutation_checked = False
        for patch in doc["spec"].get("configPatches", []):
            match = patch.get("match", {})
            on_hcm = (
                match.get("context") == "SIDECAR_INBOUND"
                and match.get("listener", {}).get("filterChain", {}).get("filter", {}).get("name")
                == "envoy.filters.network.http_connection_manager"
            )
            operation = patch.get("patch", {}).get("operation")
            value = patch.get("patch", {}).get("value")
            if on_hcm and patch.get("applyTo") == "NETWORK_FILTER" and operation == "MERGE":
                network_filter = parse_envoy(value, listener_components_pb2.Filter, where, problems)
                hcm = hcm_pb2.HttpConnectionManager()
                if network_filter and network_filter.typed_config.Unpack(hcm):
                    check_connection_manager(hcm, where, problems)
                    hcm_checked = True
            elif on_hcm and patch.get("applyTo") == "HTTP_FILTER" and operation == "INSERT_FIRST":
                http_filter = parse_envoy(value, hcm_pb2.HttpFilter, where, problems)
                if http_filter:
                    check_header_mutation([http_filter], header_names, where, problems)
                    header_mutation_checked = True
        problems.check(
            hcm_checked,
            where,
            "no NETWORK_FILTER MERGE patch on the SIDECAR_INBOUND http_connection_manager",
        )
        problems.check(
            header_mutation_checked,
            where,
            f"no HTTP_FILTER INSERT_FIRST patch ({HEADER_MUTATION_FILTER}) on the "
            "SIDECAR_INBOUND http_connection_manager",
        )


def parse_envoy(value, message_type, where, problems):
    """An EnvoyFilter patch value as the Envoy message it patches, unknown fields refused."""
    try:
        return json_format.ParseDict(value, message_type())
    except json_format.ParseError as err:
        problems.add(where, f"patch value is not a valid {message_type.DESCRIPTOR.name}: {err}")
        return None


def check_wasm_plugin(doc, services, source, problems):
    spec = doc["spec"]
    problems.check(
        spec.get("failStrategy") == "FAIL_CLOSE",
        source,
        "failStrategy must be FAIL_CLOSE: a failed VM would pass requests unchecked",
    )
    problems.check(
        "selector" in spec or "targetRefs" in spec,
        source,
        "no selector or targetRefs: the plugin would apply to every workload",
    )
    problems.check(spec.get("phase"), source, "no phase")
    plugin = spec.get("pluginConfig")
    if not isinstance(plugin, dict):
        problems.add(source, "pluginConfig is missing")
        return None
    check_cookie_name(plugin, source, problems)
    cluster = plugin.get("companion", {}).get("cluster", "")
    match = re.fullmatch(r"outbound\|(\d+)\|[^|]*\|(.+)", cluster)
    problems.check(
        match is not None and (match.group(2), int(match.group(1))) in services,
        source,
        f"companion.cluster {cluster!r} is not outbound|<port>||<host> of the companion's "
        f"Service or a ServiceEntry (known: {sorted(services)})",
    )
    return json.dumps(plugin)


# ----- Kubernetes facts the companion relies on (schemas: kubernetes-validate) ----------------


def check_kubernetes(root, problems):
    docs = []
    for path in sorted((root / "deploy/kubernetes").glob("*.yaml")):
        docs += [(str(path.relative_to(root)), d) for d in load_documents(path)]
    check_kubernetes_documents(docs, problems)


def check_kubernetes_documents(docs, problems):
    """`docs`: (source, resource) pairs."""
    by_kind = {}
    for source, doc in docs:
        by_kind.setdefault(doc.get("kind"), []).append((source, doc))
    secrets = {
        doc["metadata"]["name"]: set(doc.get("stringData", {})) | set(doc.get("data", {}))
        for _, doc in by_kind.get("Secret", [])
    }
    # A Secret here is a template: every value must be the placeholder, so an applied copy
    # someone forgot to fill in is refused (by the companion's token rules and MongoDB).
    for source, doc in by_kind.get("Secret", []):
        values = dict(doc.get("stringData", {}))
        for key, encoded in doc.get("data", {}).items():
            values[key] = base64.b64decode(encoded).decode(errors="replace")
        for key, value in values.items():
            problems.check(
                deploy_secrets.is_placeholder(value),
                source,
                f"Secret {doc['metadata']['name']}: {key} holds no "
                f"{deploy_secrets.PLACEHOLDER} placeholder",
            )
    deployments = by_kind.get("Deployment", [])
    problems.check(deployments, "deploy/kubernetes", "no Deployment")
    for source, deployment in deployments:
        pod = deployment["spec"]["template"]
        labels = pod["metadata"].get("labels", {})
        for container in pod["spec"]["containers"]:
            where = f"{source}: container {container['name']}"
            for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                got = container.get(probe, {}).get("httpGet", {}).get("path")
                problems.check(got == path, where, f"{probe} must GET {path}, not {got!r}")
            limits = container.get("resources", {}).get("limits", {})
            problems.check("memory" in limits, where, "no memory limit")
            env = {e["name"]: e for e in container.get("env", [])}
            for name in ("MONGODB_URI", "COMPANION_TOKEN"):
                ref = env.get(name, {}).get("valueFrom", {}).get("secretKeyRef", {})
                problems.check(
                    ref.get("key") in secrets.get(ref.get("name"), set()),
                    where,
                    f"{name} must come from a key of the Secret template",
                )
            problems.check(
                not is_true(env.get(COMPANION_DEVELOPMENT_SWITCH, {}).get("value")),
                where,
                f"sets {COMPANION_DEVELOPMENT_SWITCH}: only local development may accept weak "
                "secrets",
            )
            listen = env.get("COMPANION_LISTEN", {}).get("value", "")
            problems.check(
                listen.startswith("0.0.0.0:"),
                where,
                "COMPANION_LISTEN must be 0.0.0.0:<port>: the image's default is loopback",
            )
        security = pod["spec"].get("securityContext", {})
        problems.check(security.get("runAsNonRoot") is True, source, "runAsNonRoot not set")
        for kind in ("Service", "PodDisruptionBudget"):
            matching = [
                s
                for s, doc in by_kind.get(kind, [])
                if selects(selector_of(doc), labels)
            ]
            problems.check(matching, source, f"no {kind} selects the Deployment's pods")


def selector_of(doc):
    selector = doc["spec"].get("selector", {})
    return selector.get("matchLabels", selector)


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# ----- main -------------------------------------------------------------------------------------


def plugin_cases(root, test_env, dev_plugin, compose_plugin, istio_plugin, problems):
    """Everything the filter's parser must accept or refuse (deploy_secrets.py)."""
    cases = [("envoy.yaml", dev_plugin, None)] if dev_plugin else []
    for name, template in (("docker-compose.yml", compose_plugin), ("wasmplugin", istio_plugin)):
        if template:
            cases += deploy_secrets.template_cases(name, template, problems)
    # The compose file itself, with test secrets in .env instead of the placeholders; its
    # documented plain-http cookie; and a __Host- name without Secure, which must not pass.
    host_cookie_over_http = {"EDGE_SESSION_COOKIE_SECURE": "false"}
    for stem, overrides, verdict in (
        ("test-env", {}, None),
        ("test-env.plain-http", ENV_PLAIN_HTTP, None),
        ("test-env.host-cookie-over-http", host_cookie_over_http, ("cookie.name", "__Host-")),
    ):
        filled = compose_plugin_with(root, test_env | overrides)
        if filled:
            cases.append((f"docker-compose.yml.{stem}", filled, verdict))
    return cases


def run_checker(checker):
    """The filter's parser as a function: path -> (exit code, stderr)."""

    def run(path):
        result = subprocess.run([checker, path], capture_output=True, text=True)
        return result.returncode, result.stderr

    return run


def main():
    if len(sys.argv) != 4:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    root, out_dir, checker = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    out_dir.mkdir(parents=True, exist_ok=True)
    problems = Problems()
    envoy_yaml = load_yaml(root / "envoy.yaml", root, problems)
    dev_plugin = None
    if envoy_yaml is not None:
        _, dev_plugin = check_envoy(envoy_yaml, "envoy.yaml", problems)
    env = read_env_file(root / ENV_EXAMPLE)
    test_env = check_env_example(env, problems)
    _, compose_plugin = check_compose(root, env, problems)
    check_compose_generated(root, problems)
    istio_plugin = check_istio(root, problems)
    check_kubernetes(root, problems)
    check_dockerignore(root, problems)
    cases = plugin_cases(root, test_env, dev_plugin, compose_plugin, istio_plugin, problems)
    deploy_secrets.run_cases(cases, out_dir, run_checker(checker), problems)
    tools = ", ".join(
        f"{p} {version(p)}" for p in ("xds-protos", "protobuf", "cloudcoil.models.istio")
    )
    if problems.items:
        print("deploy check FAILED:", file=sys.stderr)
        for item in problems.items:
            print(f"  {item}", file=sys.stderr)
        return 1
    print(
        f"deploy check: Envoy configs, Istio resources, manifest facts and {len(cases)} plugin "
        f"configurations through the filter's parser ok ({tools})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
