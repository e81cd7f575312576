"""The secret slots of the shipped templates, for deploy_check.py.

A template (.env.example, the Kubernetes Secret, the Istio WasmPlugin, compose's plugin
configuration filled from .env.example) must hold the placeholder in every secret slot, so a
copy someone forgot to fill in is refused, never run: the filter refuses a placeholder key or
token even with allow_development_secrets, and so does the companion its token. The rules
are in proto/src/secrets.rs; the filter's own parser (filter/examples/check_plugin_config.rs)
is the judge here, run on:

- each template's plugin configuration with strong test secrets in every slot: accepted;
- the same with one slot given back its placeholder, once per slot: refused, naming that
  slot, as a placeholder;
- the plugin configurations that ship working values (envoy.yaml): accepted.

The test secrets are derived from SHA-256 of a label: random-looking, the same on every run,
and accepted for what they are (the parser applies the weak-secret rules to them), not by any
marker.
"""

import base64
import copy
import hashlib
import json

# proto/src/secrets.rs PLACEHOLDER_MARKER; a value containing it in any case is a placeholder.
PLACEHOLDER = "REPLACE-ME"


def is_placeholder(text):
    return PLACEHOLDER.lower() in str(text).lower()


def is_key_placeholder(written):
    """A key is written as base64: the placeholder may be the text or what it decodes to, as
    proto::secrets::key_weakness checks both."""
    if is_placeholder(written):
        return True
    text = str(written).strip()
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            decoded = decode(text + "=" * (-len(text) % 4))
        except ValueError:
            continue
        if is_placeholder(decoded.decode("latin-1")):
            return True
    return False


def _digest(label):
    return hashlib.sha256(f"edge-session deploy check: {label}".encode()).digest()


def test_key(label):
    """Base64 of 32 random-looking bytes, as `openssl rand -base64 32` makes."""
    return base64.b64encode(_digest(label)).decode()


def test_token(label):
    """48 hex digits, as `openssl rand -hex 24` makes."""
    return (_digest(label) + _digest(label + "/2")).hex()[:48]


def plugin_slots(plugin):
    """(field as the filter names it, path) of every secret in a plugin configuration."""
    keys = plugin.get("keys") if isinstance(plugin.get("keys"), list) else []
    slots = [(f"keys[{i}].secret", ("keys", i, "secret")) for i in range(len(keys))]
    return slots + [("companion.token", ("companion", "token"))]


def _get(value, path):
    for step in path:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def _set(value, path, new):
    for step in path[:-1]:
        value = value[step]
    value[path[-1]] = new


def filled(plugin, name):
    """A copy with test secrets in every slot."""
    result = copy.deepcopy(plugin)
    for field, path in plugin_slots(plugin):
        if _get(result, path[:-1]) is not None:
            label = f"{name} {field}"
            _set(result, path, test_token(label) if field == "companion.token" else test_key(label))
    return result


def template_cases(name, plugin_json, problems):
    """The parser runs a template's plugin configuration must pass: (file stem, JSON text,
    None for accepted, or (field, words its refusal must contain))."""
    try:
        plugin = json.loads(plugin_json)
    except ValueError:
        return []  # deploy_check reports a plugin configuration that is not JSON
    if not isinstance(plugin, dict):
        return []
    problems.check(
        not plugin.get("allow_development_secrets"),
        name,
        "sets allow_development_secrets: only the development envoy.yaml may accept weak "
        "secrets",
    )
    slots = plugin_slots(plugin)
    for field, path in slots:
        held = is_placeholder if field == "companion.token" else is_key_placeholder
        problems.check(
            held(_get(plugin, path)),
            name,
            f"{field} holds no {PLACEHOLDER} placeholder: a template's secret must be refused "
            "until someone replaces it",
        )
    strong = filled(plugin, name)
    cases = [(f"{name}.test-secrets", json.dumps(strong), None)]
    for field, path in slots:
        one = copy.deepcopy(strong)
        _set(one, path, _get(plugin, path))
        cases.append((f"{name}.placeholder.{field}", json.dumps(one), (field, "placeholder")))
    return cases


def run_cases(cases, out_dir, checker, problems):
    """Feeds each case to `checker` (path -> (exit code, stderr)) and names every outcome that
    is not the expected one."""
    for stem, text, refusal in cases:
        path = out_dir / f"{stem}.json"
        path.write_text(text)
        code, stderr = checker(path)
        if refusal is None:
            problems.check(
                code == 0,
                stem,
                f"the filter's parser refuses it: {stderr.strip()}",
            )
        else:
            field, words = refusal
            problems.check(
                code != 0 and f"{field}: " in stderr and words in stderr,
                stem,
                f"the filter's parser must refuse {field} ({words}); it said (exit {code}): "
                f"{stderr.strip() or 'nothing'}",
            )


def env_test_values(env, secrets, source, problems):
    """`env` (from .env.example) with test values in its secret variables, after checking each
    holds the placeholder. `secrets` maps a variable to its kind: "token" (one value) or
    "keys" (the plugin's JSON list of {id, secret})."""
    result = dict(env)
    for variable, kind in secrets.items():
        value = env.get(variable)
        if value is None:
            problems.add(source, f"{variable} is missing")
            continue
        if kind == "keys":
            try:
                keys = json.loads(value)
                secrets_of = [k["secret"] for k in keys]
            except (ValueError, KeyError, TypeError):
                problems.add(source, f"{variable} is not a JSON list of {{id, secret}}")
                continue
            problems.check(
                keys and all(is_key_placeholder(s) for s in secrets_of),
                source,
                f"every secret in {variable} must hold the {PLACEHOLDER} placeholder",
            )
            for i, key in enumerate(keys):
                key["secret"] = test_key(f"{source} {variable} {i}")
            result[variable] = json.dumps(keys)
        else:
            problems.check(
                is_placeholder(value),
                source,
                f"{variable} must hold the {PLACEHOLDER} placeholder",
            )
            result[variable] = test_token(f"{source} {variable}")
    return result
