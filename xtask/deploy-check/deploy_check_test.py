"""Tests of deploy_check.py: every rule must name the problem in a broken copy of a shipped file.

Each test takes the file as shipped, breaks the one thing a rule holds, and asserts that the
check reports it; the shipped files themselves must pass. Run by `cargo xtask deploy` (in the
deploy virtualenv, before the check itself):

    python -m unittest discover -s xtask/deploy-check -p deploy_check_test.py
"""

import base64
import json
import tempfile
import unittest
from pathlib import Path

import yaml

import compose_envoy as ce
import deploy_check as dc
import deploy_secrets

ROOT = Path(__file__).resolve().parents[2]


def envoy_yaml():
    return yaml.safe_load((ROOT / "envoy.yaml").read_text())


def hcm_of(document):
    """The connection manager's typed_config of the first listener."""
    chain = document["static_resources"]["listeners"][0]["filter_chains"][0]
    return chain["filters"][0]["typed_config"]


def http_filter(document, name):
    return next(f for f in hcm_of(document)["http_filters"] if f["name"] == name)


def wasm_plugin_of(document):
    """The Wasm filter's PluginConfig."""
    return http_filter(document, "envoy.filters.http.wasm")["typed_config"]["config"]


def removals_of(document):
    """The header_mutation filter's request_mutations (a list to edit in place)."""
    typed_config = http_filter(document, "envoy.filters.http.header_mutation")["typed_config"]
    return typed_config["mutations"]["request_mutations"]


def set_plugin(document, change):
    """Applies `change` to the plugin configuration (JSON inside the Wasm filter's config)."""
    configuration = wasm_plugin_of(document)["configuration"]
    plugin = json.loads(configuration["value"])
    change(plugin)
    configuration["value"] = json.dumps(plugin)


def envoy_problems(document):
    problems = dc.Problems()
    dc.check_envoy(document, "envoy.yaml", problems)
    return problems.items


class Checks(unittest.TestCase):
    def assert_problem(self, items, text):
        self.assertTrue(
            any(text in item for item in items), f"no problem naming {text!r} in {items}"
        )


class EnvoyConfig(Checks):
    def test_the_shipped_envoy_yaml_passes(self):
        self.assertEqual(envoy_problems(envoy_yaml()), [])

    def test_headers_with_underscores_must_not_be_allowed(self):
        for options in ({}, {"headers_with_underscores_action": "ALLOW"}):
            document = envoy_yaml()
            hcm_of(document)["common_http_protocol_options"] = options
            self.assert_problem(envoy_problems(document), "headers_with_underscores_action")
        document = envoy_yaml()
        hcm_of(document)["common_http_protocol_options"] = {
            "headers_with_underscores_action": "DROP_HEADER"
        }
        self.assertEqual(envoy_problems(document), [], "DROP_HEADER is the documented alternative")

    def test_the_access_log_shows_why_envoy_answered(self):
        document = envoy_yaml()
        hcm_of(document)["access_log"][0]["typed_config"].pop("log_format")
        self.assert_problem(envoy_problems(document), "%RESPONSE_CODE_DETAILS%")

    def test_the_plugin_fails_closed_with_the_explicit_policy(self):
        for change in (
            lambda plugin: plugin.pop("failure_policy"),
            lambda plugin: plugin.update(failure_policy="FAIL_OPEN"),
            lambda plugin: plugin.update(failure_policy="FAIL_RELOAD"),
            lambda plugin: plugin.update(fail_open=True),
            lambda plugin: (plugin.pop("failure_policy"), plugin.update(fail_open=False)),
        ):
            document = envoy_yaml()
            change(wasm_plugin_of(document))
            self.assert_problem(envoy_problems(document), "failure_policy: FAIL_CLOSED")

    def test_a_held_request_is_bounded_by_both_timeouts(self):
        for field in ("stream_idle_timeout", "request_timeout"):
            for change in (lambda hcm: hcm.pop(field), lambda hcm: hcm.update({field: "0s"})):
                document = envoy_yaml()
                change(hcm_of(document))
                self.assert_problem(envoy_problems(document), field)

    def test_header_mutation_before_the_filter_removes_every_injected_name(self):
        names = ["x-session-" + s for s in dc.InjectedHeaders.SUFFIXES] + ["x-cart"]
        for name in names:
            document = envoy_yaml()
            mutations = removals_of(document)
            mutations[:] = [m for m in mutations if m["remove"] != name]
            self.assert_problem(envoy_problems(document), f"'{name}'")
        document = envoy_yaml()
        filters = hcm_of(document)["http_filters"]
        filters.insert(2, filters.pop(0))  # after the Wasm filter: too late
        self.assert_problem(envoy_problems(document), "x-session-state")

    def test_the_removed_names_follow_the_plugins_prefix_and_map(self):
        document = envoy_yaml()
        set_plugin(document, lambda plugin: plugin.update(headers={"prefix": "x-edge-"}))
        self.assert_problem(envoy_problems(document), "'x-edge-user'")
        document = envoy_yaml()
        set_plugin(document, lambda plugin: plugin["headers"]["map"].update(roles="x-roles"))
        self.assert_problem(envoy_problems(document), "'x-roles'")

    def test_route_level_removal_of_our_headers_is_refused_at_every_level(self):
        route_config = lambda d: hcm_of(d)["route_config"]  # noqa: E731
        host = lambda d: route_config(d)["virtual_hosts"][0]  # noqa: E731
        for scope in (route_config, host, lambda d: host(d)["routes"][0]):
            for name in ("X_Session_User", "x-cart", "X-CART"):
                document = envoy_yaml()
                scope(document)["request_headers_to_remove"] = ["x-unrelated", name]
                self.assert_problem(envoy_problems(document), "request_headers_to_remove")
            document = envoy_yaml()
            scope(document)["request_headers_to_remove"] = ["x-unrelated"]
            self.assertEqual(envoy_problems(document), [])


def generated(document):
    """Compose's Envoy configuration generated from `document` (envoy.yaml, parsed)."""
    return yaml.safe_load(ce.envoy_for_compose(yaml.safe_dump(document, sort_keys=False)))


class ComposeEnvoy(Checks):
    def test_the_shipped_compose_file_is_what_envoy_yaml_generates(self):
        problems = dc.Problems()
        dc.check_compose_generated(ROOT, problems)
        self.assertEqual(problems.items, [])

    def test_a_hand_edit_of_composes_envoy_configuration_is_refused(self):
        text = (ROOT / "docker-compose.yml").read_text()
        edited = text.replace("stream_idle_timeout: 60s", "stream_idle_timeout: 600s")
        self.assertNotEqual(edited, text)
        problems = dc.Problems()
        dc.check_compose_generated(ROOT, problems, edited)
        self.assert_problem(problems.items, "is not what envoy.yaml generates")

    def test_composes_copy_follows_envoy_yaml(self):
        document = envoy_yaml()
        hcm_of(document)["stream_idle_timeout"] = "61s"
        self.assertEqual(hcm_of(generated(document))["stream_idle_timeout"], "61s")

    def test_compose_differs_only_in_addresses_module_plugin_and_mapped_names(self):
        document = envoy_yaml()
        compose = generated(document)
        resources = compose["static_resources"]
        self.assertEqual(resources["listeners"][0]["address"]["socket_address"]["address"], "0.0.0.0")
        endpoints = {
            c["name"]: c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
            for c in resources["clusters"]
        }
        self.assertEqual(
            {name: e["address"]["socket_address"]["address"] for name, e in endpoints.items()},
            {"legacy_app": "legacy-app", "companion": "companion"},
        )
        plugin = wasm_plugin_of(compose)
        self.assertEqual(plugin["vm_config"]["code"]["local"]["filename"], ce.MODULE)
        self.assertEqual(plugin["configuration"]["value"], ce.PLUGIN_CONFIGURATION)
        self.assertNotIn("allow_development_secrets", ce.PLUGIN_CONFIGURATION)
        removed = [m["remove"] for m in removals_of(compose)]
        self.assertNotIn("x-cart", removed, "envoy.yaml's mapped name, not compose's")
        self.assertIn("x-session-user", removed)
        # Undo the differences: what is left is envoy.yaml.
        resources["listeners"][0]["address"] = document["static_resources"]["listeners"][0]["address"]
        for mine, theirs in zip(resources["clusters"], document["static_resources"]["clusters"]):
            mine["load_assignment"] = theirs["load_assignment"]
        plugin["vm_config"] = wasm_plugin_of(document)["vm_config"]
        plugin["configuration"] = wasm_plugin_of(document)["configuration"]
        removals_of(compose)[:] = removals_of(document)
        self.assertEqual(compose, document)

    def test_a_dollar_from_envoy_yaml_is_not_interpolated_by_compose(self):
        document = envoy_yaml()
        log = hcm_of(document)["access_log"][0]["typed_config"]["log_format"]
        log["text_format_source"]["inline_string"] = "cost $5 ${HOME}\n"
        text = ce.envoy_for_compose(yaml.safe_dump(document, sort_keys=False))
        self.assertIn("cost $$5 $${HOME}", text)
        self.assertIn('"keys": ${EDGE_SESSION_KEYS:?', text, "the template's own variables stay")

    def test_a_cluster_compose_has_no_service_for_is_refused(self):
        document = envoy_yaml()
        extra = json.loads(json.dumps(document["static_resources"]["clusters"][0]))
        extra["name"] = "billing"
        document["static_resources"]["clusters"].append(extra)
        with self.assertRaisesRegex(ce.GenerationError, "'billing' has no Compose service"):
            generated(document)


def compose_yaml():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def compose_problems(raw, env=None):
    problems = dc.Problems()
    env = env if env is not None else dc.read_env_file(ROOT / ".env.example")
    dc.check_compose(ROOT, env, problems, raw)
    return problems.items


def istio_documents():
    return [
        (str(path.relative_to(ROOT)), doc)
        for path in sorted((ROOT / "deploy/istio").glob("*.yaml"))
        for doc in dc.load_documents(path)
    ]


def of_kind(documents, kind):
    return next(doc for _, doc in documents if doc["kind"] == kind)


def patch_of(documents, apply_to):
    envoy_filter = of_kind(documents, "EnvoyFilter")
    return next(p for p in envoy_filter["spec"]["configPatches"] if p["applyTo"] == apply_to)


def istio_problems(documents):
    problems = dc.Problems()
    dc.check_istio_documents(documents, dc.mesh_services(ROOT), problems)
    return problems.items


class ComposeFile(Checks):
    def test_the_shipped_compose_file_passes(self):
        self.assertEqual(compose_problems(compose_yaml()), [])

    def test_mongodb_requires_authentication_and_the_companion_logs_in(self):
        services = lambda raw: raw["services"]  # noqa: E731
        uri = lambda raw: services(raw)["companion"]["environment"]  # noqa: E731
        for change, text in (
            (lambda raw: services(raw)["mongo"].pop("environment"), "MongoDB runs without"),
            (
                lambda raw: uri(raw).update(MONGODB_URI="mongodb://mongo:27017/?authSource=admin"),
                "must log in to mongo",
            ),
            (
                lambda raw: uri(raw).update(
                    MONGODB_URI=uri(raw)["MONGODB_URI"].replace("&authSource=admin", "")
                ),
                "authSource=admin",
            ),
            (lambda raw: services(raw)["mongo"].update(ports=["27017:27017"]), "publish ports"),
        ):
            raw = compose_yaml()
            change(raw)
            self.assert_problem(compose_problems(raw), text)

    def test_only_the_companion_shares_a_network_with_mongodb(self):
        for change in (
            lambda services: services["legacy-app"].update(networks=["edge", "sessions"]),
            lambda services: services["envoy"].pop("networks"),
            lambda services: services["wasm"].pop("network_mode"),
        ):
            raw = compose_yaml()
            for service in ("mongo", "companion"):
                raw["services"][service]["networks"].append("default")
            change(raw["services"])
            self.assert_problem(compose_problems(raw), "with mongo: only the companion")
        raw = compose_yaml()
        raw["services"]["legacy-app"]["networks"].append("sessions")
        self.assert_problem(compose_problems(raw), "legacy-app shares network(s) ['sessions']")

    def test_mongodb_refuses_the_placeholder_password(self):
        for change in (
            lambda mongo: mongo.pop("entrypoint"),
            lambda mongo: mongo["entrypoint"].__setitem__(2, 'exec docker-entrypoint.sh "$$@"'),
        ):
            raw = compose_yaml()
            change(raw["services"]["mongo"])
            self.assert_problem(compose_problems(raw), "entrypoint")


class DockerIgnore(Checks):
    def test_dotenv_files_stay_out_of_the_build_context(self):
        lines = (ROOT / ".dockerignore").read_text().splitlines()
        for path in (".env", ".env.local", "companion/.env", "a/b/.env.prod"):
            self.assertTrue(dc.dockerignored(lines, path), path)
        for path in (".env.example", "envoy.yaml", "companion/src/main.rs", "x.env"):
            self.assertFalse(dc.dockerignored(lines, path), path)
        self.assertTrue(dc.dockerignored(lines, "target/debug/x"))

    def test_the_check_names_a_missing_exclusion(self):
        with tempfile.TemporaryDirectory() as root:
            Path(root, ".dockerignore").write_text("target\n.env\n")
            problems = dc.Problems()
            dc.check_dockerignore(Path(root), problems)
            self.assert_problem(problems.items, ".env.local must be excluded")
            Path(root, ".dockerignore").write_text("**/.env*\n")
            problems = dc.Problems()
            dc.check_dockerignore(Path(root), problems)
            self.assert_problem(problems.items, ".env.example must not be excluded")


class CookieName(Checks):
    def test_a_secure_host_cookie_must_be_named_host(self):
        documents = istio_documents()
        of_kind(documents, "WasmPlugin")["spec"]["pluginConfig"]["cookie"]["name"] = "sid"
        self.assert_problem(istio_problems(documents), "__Host-sid")
        document = envoy_yaml()
        set_plugin(document, lambda plugin: plugin.update(cookie={"secure": True}))
        self.assert_problem(envoy_problems(document), "__Host-sid")
        env = dc.read_env_file(ROOT / ".env.example") | {"EDGE_SESSION_COOKIE_NAME": "sid"}
        self.assert_problem(compose_problems(compose_yaml(), env), "__Host-sid")

    def test_plain_http_and_domain_cookies_keep_their_names(self):
        env = dc.read_env_file(ROOT / ".env.example") | dc.ENV_PLAIN_HTTP
        self.assertEqual(compose_problems(compose_yaml(), env), [])
        documents = istio_documents()
        cookie = of_kind(documents, "WasmPlugin")["spec"]["pluginConfig"]["cookie"]
        cookie.update(name="sid", domain="example.com")
        self.assertEqual(istio_problems(documents), [])


class IstioResources(Checks):
    def test_the_shipped_istio_resources_pass(self):
        self.assertEqual(istio_problems(istio_documents()), [])

    def test_the_plugins_workloads_need_the_envoy_filter(self):
        for change in (
            lambda docs: docs.remove(
                next(item for item in docs if item[1]["kind"] == "EnvoyFilter")
            ),
            lambda docs: of_kind(docs, "EnvoyFilter")["metadata"].update(namespace="other"),
            lambda docs: of_kind(docs, "EnvoyFilter")["spec"]["workloadSelector"].update(
                labels={"app": "other"}
            ),
        ):
            documents = istio_documents()
            change(documents)
            self.assert_problem(istio_problems(documents), "no EnvoyFilter")

    def test_the_sidecars_connection_manager_gets_the_edge_settings(self):
        documents = istio_documents()
        hcm = patch_of(documents, "NETWORK_FILTER")["patch"]["value"]["typed_config"]
        hcm["common_http_protocol_options"] = {}
        hcm.pop("request_timeout")
        items = istio_problems(documents)
        self.assert_problem(items, "headers_with_underscores_action")
        self.assert_problem(items, "request_timeout")
        documents = istio_documents()
        hcm = patch_of(documents, "NETWORK_FILTER")["patch"]["value"]["typed_config"]
        hcm["stream_idle_timout"] = "60s"
        self.assert_problem(istio_problems(documents), "not a valid Filter")
        documents = istio_documents()
        patch_of(documents, "NETWORK_FILTER")["match"]["context"] = "SIDECAR_OUTBOUND"
        self.assert_problem(istio_problems(documents), "no NETWORK_FILTER MERGE patch")

    def test_the_header_mutation_goes_first_and_follows_the_plugin(self):
        documents = istio_documents()
        mutations = patch_of(documents, "HTTP_FILTER")["patch"]["value"]["typed_config"]
        removals = mutations["mutations"]["request_mutations"]
        removals[:] = [m for m in removals if m["remove"] != "x-session-user"]
        self.assert_problem(istio_problems(documents), "'x-session-user'")
        documents = istio_documents()
        of_kind(documents, "WasmPlugin")["spec"]["pluginConfig"]["headers"] = {
            "map": {"roles": "x-roles"}
        }
        self.assert_problem(istio_problems(documents), "'x-roles'")
        documents = istio_documents()
        patch_of(documents, "HTTP_FILTER")["patch"]["operation"] = "INSERT_BEFORE"
        self.assert_problem(istio_problems(documents), "no HTTP_FILTER INSERT_FIRST patch")


def wasm_plugin_config():
    return of_kind(istio_documents(), "WasmPlugin")["spec"]["pluginConfig"]


def kubernetes_documents():
    return [
        (str(path.relative_to(ROOT)), doc)
        for path in sorted((ROOT / "deploy/kubernetes").glob("*.yaml"))
        for doc in dc.load_documents(path)
    ]


def kubernetes_problems(documents):
    problems = dc.Problems()
    dc.check_kubernetes_documents(documents, problems)
    return problems.items


class Secrets(Checks):
    def cases(self, plugin):
        problems = dc.Problems()
        cases = deploy_secrets.template_cases("t", json.dumps(plugin), problems)
        return cases, problems.items

    def test_every_template_slot_must_hold_the_placeholder(self):
        cases, items = self.cases(wasm_plugin_config())
        self.assertEqual(items, [])
        self.assertEqual(
            sorted(refusal[0] for _, _, refusal in cases if refusal),
            ["companion.token", "keys[0].secret"],
        )
        for field, change in (
            ("companion.token", lambda p: p["companion"].update(token="a" * 48)),
            ("keys[0].secret", lambda p: p["keys"][0].update(secret=deploy_secrets.test_key("x"))),
            ("keys[1].secret", lambda p: p["keys"].append({"id": "old", "secret": "c2VjcmV0"})),
        ):
            plugin = wasm_plugin_config()
            change(plugin)
            self.assert_problem(self.cases(plugin)[1], f"{field} holds no REPLACE-ME")

    def test_a_key_placeholder_counts_written_or_decoded_in_any_case(self):
        encoded = base64.b64encode(b"replace-me: 32+ random bytes").decode()
        self.assertTrue(deploy_secrets.is_key_placeholder(encoded))
        self.assertTrue(deploy_secrets.is_key_placeholder(encoded.rstrip("=")))
        self.assertTrue(deploy_secrets.is_key_placeholder("Replace-Me-later"))
        self.assertFalse(deploy_secrets.is_key_placeholder(deploy_secrets.test_key("k")))

    def test_templates_never_turn_on_the_development_switch(self):
        plugin = wasm_plugin_config()
        plugin["allow_development_secrets"] = True
        self.assert_problem(self.cases(plugin)[1], "allow_development_secrets")

    def test_each_case_must_get_its_expected_verdict(self):
        cases, _ = self.cases(wasm_plugin_config())
        verdicts = {
            "accepts everything": lambda path: (0, ""),
            "refuses everything as the key": lambda path: (
                1,
                "plugin config REFUSED: f: keys[0].secret: is the template's placeholder",
            ),
            "refuses without naming a placeholder": lambda path: (
                1,
                "plugin config REFUSED: f: companion.token: is shorter than 32",
            ),
        }
        with tempfile.TemporaryDirectory() as out:
            for name, checker in verdicts.items():
                problems = dc.Problems()
                deploy_secrets.run_cases(cases, Path(out), checker, problems)
                self.assertTrue(problems.items, f"a checker that {name} went unnoticed")

            def faithful(path):
                text = path.read_text()
                plugin = json.loads(text)
                if deploy_secrets.is_placeholder(plugin["companion"]["token"]):
                    return 1, "plugin config REFUSED: f: companion.token: is the placeholder"
                if deploy_secrets.is_key_placeholder(plugin["keys"][0]["secret"]):
                    return 1, "plugin config REFUSED: f: keys[0].secret: is the placeholder"
                return 0, ""

            problems = dc.Problems()
            deploy_secrets.run_cases(cases, Path(out), faithful, problems)
            self.assertEqual(problems.items, [])

    def test_the_test_secrets_look_random(self):
        key = base64.b64decode(deploy_secrets.test_key("k"))
        self.assertEqual(len(key), 32)
        self.assertGreaterEqual(len(set(key)), 16)
        self.assertFalse(all(0x20 <= b < 0x7F for b in key))
        token = deploy_secrets.test_token("t")
        self.assertEqual(len(token), 48)
        self.assertGreaterEqual(len(set(token)), 6)

    def test_env_example_variables_are_sorted_and_secrets_hold_placeholders(self):
        env = dc.read_env_file(ROOT / ".env.example")
        problems = dc.Problems()
        filled = dc.check_env_example(env, problems)
        self.assertEqual(problems.items, [])
        self.assertFalse(any(deploy_secrets.is_placeholder(v) for v in filled.values()))
        for change, text in (
            (lambda e: e.update(NEW_VARIABLE="x"), "NEW_VARIABLE is neither"),
            (lambda e: e.update(COMPANION_TOKEN="a" * 48), "COMPANION_TOKEN must hold"),
            (
                lambda e: e.update(EDGE_SESSION_KEYS=json.dumps([{"id": "a", "secret": "eA=="}])),
                "every secret in EDGE_SESSION_KEYS",
            ),
        ):
            env = dc.read_env_file(ROOT / ".env.example")
            change(env)
            problems = dc.Problems()
            dc.check_env_example(env, problems)
            self.assert_problem(problems.items, text)

    def test_the_kubernetes_secret_template_holds_only_placeholders(self):
        self.assertEqual(kubernetes_problems(kubernetes_documents()), [])
        for change in (
            lambda secret: secret["stringData"].update(COMPANION_TOKEN="a" * 48),
            lambda secret: secret.update(data={"EXTRA": base64.b64encode(b"x").decode()}),
        ):
            documents = kubernetes_documents()
            change(of_kind(documents, "Secret"))
            self.assert_problem(kubernetes_problems(documents), "holds no REPLACE-ME")

    def test_the_companion_never_gets_the_development_switch(self):
        documents = kubernetes_documents()
        container = of_kind(documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]
        container["env"].append({"name": dc.COMPANION_DEVELOPMENT_SWITCH, "value": "true"})
        self.assert_problem(kubernetes_problems(documents), dc.COMPANION_DEVELOPMENT_SWITCH)
        raw = compose_yaml()
        raw["services"]["companion"]["environment"][dc.COMPANION_DEVELOPMENT_SWITCH] = "1"
        self.assert_problem(compose_problems(raw), dc.COMPANION_DEVELOPMENT_SWITCH)


if __name__ == "__main__":
    unittest.main()
