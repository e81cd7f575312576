//! The subset of Envoy's v3 bootstrap `edge-dev` understands, read from the project's
//! `envoy.yaml`: the first listener's address, its routes (path prefix to cluster), the
//! connection manager's underscore action and stream idle timeout, the `header_mutation`
//! filters' request removals, the Wasm HTTP filter's plugin config (failure policy included),
//! and each cluster's first endpoint. Anything else is ignored, with a warning for the parts a
//! user might expect to work.

use crate::connection_options::ConnectionOptions;
use crate::header_mutation::{self, RequestRemovals};
use harness::FailurePolicy;
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq)]
pub struct DevConfig {
    pub listen: SocketAddr,
    /// `(path prefix, cluster)`, in the order Envoy tries them.
    pub routes: Vec<(String, String)>,
    pub clusters: BTreeMap<String, String>,
    pub plugin: WasmPlugin,
    /// The connection manager's underscore action and stream idle timeout.
    pub connection: ConnectionOptions,
    /// What `header_mutation` filters remove from requests, before and after the Wasm filter.
    pub request_removals: RequestRemovals,
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct WasmPlugin {
    pub name: String,
    pub root_id: String,
    pub vm_id: String,
    /// `failure_policy`, or the deprecated `fail_open` when that is set instead.
    pub failure_policy: FailurePolicy,
    pub configuration: String,
    /// The module file, resolved against the directory of `envoy.yaml`.
    pub filename: PathBuf,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("envoy.yaml: {path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

pub(crate) fn error(path: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.to_string(),
        message: message.into(),
    }
}

fn get<'a>(value: &'a Value, path: &str) -> Result<&'a Value, ConfigError> {
    let mut current = value;
    for part in path.split('.') {
        current = match part.parse::<usize>() {
            Ok(i) => current.get(i),
            Err(_) => current.get(part),
        }
        .ok_or_else(|| error(path, "missing"))?;
    }
    Ok(current)
}

fn text(value: &Value, path: &str) -> Result<String, ConfigError> {
    match get(value, path)? {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(error(path, "must be a string")),
    }
}

fn address(value: &Value, path: &str) -> Result<String, ConfigError> {
    let host = text(value, &format!("{path}.address"))?;
    let port = get(value, &format!("{path}.port_value"))?
        .as_u64()
        .filter(|p| *p <= u64::from(u16::MAX))
        .ok_or_else(|| error(&format!("{path}.port_value"), "must be a port number"))?;
    Ok(format!("{host}:{port}"))
}

impl DevConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| error(&path.display().to_string(), e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base)
    }

    pub fn parse(yaml: &str, base: &Path) -> Result<Self, ConfigError> {
        let root: Value = serde_yaml::from_str(yaml).map_err(|e| error("", e.to_string()))?;
        let mut warnings = Vec::new();
        let listeners = get(&root, "static_resources.listeners")?
            .as_sequence()
            .ok_or_else(|| error("static_resources.listeners", "must be a list"))?;
        if listeners.len() > 1 {
            warnings.push("only the first listener is served".to_string());
        }
        let listener = listeners
            .first()
            .ok_or_else(|| error("static_resources.listeners", "is empty"))?;
        let listen = address(listener, "address.socket_address")?
            .parse()
            .map_err(|_| {
                error(
                    "static_resources.listeners.0.address",
                    "must be an IP address and port",
                )
            })?;
        let hcm = get(listener, "filter_chains.0.filters.0.typed_config")?;
        let mut routes = Vec::new();
        for host in get(hcm, "route_config.virtual_hosts")?
            .as_sequence()
            .into_iter()
            .flatten()
        {
            for route in host
                .get("routes")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
            {
                match (text(route, "match.prefix"), text(route, "route.cluster")) {
                    (Ok(prefix), Ok(cluster)) => routes.push((prefix, cluster)),
                    _ => warnings.push(format!(
                        "route {route:?} ignored: only match.prefix with route.cluster is supported"
                    )),
                }
            }
        }
        let connection = ConnectionOptions::read(hcm, &mut warnings)?;
        let filters = get(hcm, "http_filters")?
            .as_sequence()
            .cloned()
            .unwrap_or_default();
        let mut wasm = None;
        let mut request_removals = RequestRemovals::default();
        for (i, filter) in filters.iter().enumerate() {
            match filter.get("name").and_then(Value::as_str) {
                Some("envoy.filters.http.wasm") if wasm.is_none() => wasm = Some(filter),
                Some("envoy.filters.http.router") => {}
                Some("envoy.filters.http.header_mutation") => {
                    let names = header_mutation::read_removals(filter, i, &mut warnings)?;
                    match wasm {
                        None => request_removals.before_filter.extend(names),
                        Some(_) => request_removals.after_filter.extend(names),
                    }
                }
                name => warnings.push(format!("HTTP filter {name:?} ignored")),
            }
        }
        let wasm =
            wasm.ok_or_else(|| error("http_filters", "no envoy.filters.http.wasm filter"))?;
        let plugin = get(wasm, "typed_config.config")?;
        let filename = text(plugin, "vm_config.code.local.filename")?;
        let plugin = WasmPlugin {
            name: text(plugin, "name").unwrap_or_default(),
            root_id: text(plugin, "root_id").unwrap_or_default(),
            vm_id: text(plugin, "vm_config.vm_id").unwrap_or_default(),
            failure_policy: failure_policy(plugin, &mut warnings)?,
            configuration: text(plugin, "configuration.value")?,
            filename: base.join(filename),
        };
        let mut clusters = BTreeMap::new();
        for (i, cluster) in get(&root, "static_resources.clusters")?
            .as_sequence()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let name = text(cluster, "name")
                .map_err(|e| error(&format!("clusters.{i}.name"), e.message))?;
            let endpoint = address(
                cluster,
                "load_assignment.endpoints.0.lb_endpoints.0.endpoint.address.socket_address",
            )
            .map_err(|e| error(&format!("clusters.{i} ({name})"), e.to_string()))?;
            clusters.insert(name, endpoint);
        }
        for (_, cluster) in &routes {
            if !clusters.contains_key(cluster) {
                return Err(error(
                    "route_config",
                    format!("route to unknown cluster {cluster:?}"),
                ));
            }
        }
        Ok(Self {
            listen,
            routes,
            clusters,
            plugin,
            connection,
            request_removals,
            warnings,
        })
    }

    /// The cluster for a request path: the first route whose prefix matches.
    pub fn route(&self, path: &str) -> Option<&str> {
        self.routes
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map(|(_, c)| c.as_str())
    }
}

/// The plugin's failure policy as Envoy's `PluginConfig` reads it: `failure_policy`, or the
/// deprecated `fail_open` (true is FAIL_OPEN); both set is an error, as Envoy refuses it;
/// neither is FAIL_CLOSED. FAIL_RELOAD is read as FAIL_CLOSED, with a warning: edge-dev does
/// not start a fresh VM for a worker after a failure (Envoy does, after a 1 s backoff).
fn failure_policy(
    plugin: &Value,
    warnings: &mut Vec<String>,
) -> Result<FailurePolicy, ConfigError> {
    let fail_open = match plugin.get("fail_open") {
        None => false,
        Some(Value::Bool(open)) => *open,
        Some(_) => return Err(error("fail_open", "must be true or false")),
    };
    let Some(policy) = plugin.get("failure_policy") else {
        return Ok(match fail_open {
            true => FailurePolicy::FailOpen,
            false => FailurePolicy::FailClosed,
        });
    };
    if fail_open {
        return Err(error(
            "failure_policy",
            "only one of fail_open and failure_policy can be set (Envoy refuses both)",
        ));
    }
    match policy.as_str() {
        Some("FAIL_CLOSED" | "UNSPECIFIED") => Ok(FailurePolicy::FailClosed),
        Some("FAIL_OPEN") => Ok(FailurePolicy::FailOpen),
        Some("FAIL_RELOAD") => {
            warnings.push(
                "failure_policy FAIL_RELOAD is read as FAIL_CLOSED: edge-dev does not start a \
                 fresh VM after a failure (Envoy does, after a 1 s backoff), so a failed worker \
                 answers 503 until edge-dev restarts"
                    .to_string(),
            );
            Ok(FailurePolicy::FailClosed)
        }
        _ => Err(error(
            "failure_policy",
            format!("must be FAIL_CLOSED, FAIL_OPEN or FAIL_RELOAD, not {policy:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_projects_envoy_yaml() {
        // At run time: a build reused from another checkout keeps the compile-time value.
        let dir = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
            || env!("CARGO_MANIFEST_DIR").into(),
            std::path::PathBuf::from,
        );
        let path = dir.join("../envoy.yaml");
        let config = DevConfig::load(&path).unwrap();
        assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.route("/anything"), Some("legacy_app"));
        assert_eq!(
            config.clusters.get("companion").map(String::as_str),
            Some("127.0.0.1:8081")
        );
        assert_eq!(
            config.clusters.get("legacy_app").map(String::as_str),
            Some("127.0.0.1:9000")
        );
        assert_eq!(
            (config.plugin.root_id.as_str(), config.plugin.vm_id.as_str()),
            ("edge_session", "edge_session")
        );
        assert_eq!(config.plugin.failure_policy, FailurePolicy::FailClosed);
        assert!(
            config
                .plugin
                .filename
                .ends_with("target/wasm/wasm32-unknown-unknown/release/filter.wasm")
        );
        let filter_config: serde_json::Value =
            serde_json::from_str(&config.plugin.configuration).unwrap();
        assert_eq!(filter_config["companion"]["cluster"], "companion");
        // Another part of envoy.yaml may set request_timeout, which edge-dev only warns about.
        assert!(
            config
                .warnings
                .iter()
                .all(|w| w.starts_with("request_timeout ignored")),
            "{:?}",
            config.warnings
        );
    }

    #[test]
    fn names_what_is_missing_or_wrong() {
        let base = Path::new(".");
        assert!(
            DevConfig::parse("static_resources: {}", base)
                .unwrap_err()
                .path
                .contains("listeners")
        );
        assert!(DevConfig::parse(":: not yaml", base).is_err());
        let no_wasm = r#"
static_resources:
  listeners:
  - address: { socket_address: { address: 127.0.0.1, port_value: 1 } }
    filter_chains: [ { filters: [ { typed_config: { route_config: { virtual_hosts: [] }, http_filters: [] } } ] } ]
  clusters: []
"#;
        assert_eq!(
            DevConfig::parse(no_wasm, base).unwrap_err().path,
            "http_filters"
        );
    }

    /// The connection manager as the project's envoy.yaml is to set it: underscores
    /// rejected, a stream idle timeout, a header_mutation filter before the Wasm filter and
    /// `failure_policy` instead of `fail_open`.
    const HARDENED: &str = r#"
static_resources:
  listeners:
  - address: { socket_address: { address: 127.0.0.1, port_value: 1 } }
    filter_chains:
    - filters:
      - typed_config:
          common_http_protocol_options:
            headers_with_underscores_action: REJECT_REQUEST
            idle_timeout: 3600s
          stream_idle_timeout: 60s
          request_timeout: 120s
          route_config: { virtual_hosts: [ { routes: [ { match: { prefix: "/" }, route: { cluster: app } } ] } ] }
          http_filters:
          - name: envoy.filters.http.header_mutation
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
              mutations:
                request_mutations:
                - remove: x-session-state
                - remove: x-session-user
          - name: envoy.filters.http.wasm
            typed_config: { config: { POLICY vm_config: { code: { local: { filename: f.wasm } } }, configuration: { value: "" } } }
          - name: envoy.filters.http.header_mutation
            typed_config: { mutations: { request_mutations: [ { remove: x-late } ] } }
          - name: envoy.filters.http.router
  clusters:
  - name: app
    load_assignment: { endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 2 } } } } ] } ] }
"#;

    fn hardened(policy: &str) -> Result<DevConfig, ConfigError> {
        DevConfig::parse(&HARDENED.replace("POLICY", policy), Path::new("/"))
    }

    #[test]
    fn reads_the_hardened_connection_manager() {
        use crate::connection_options::UnderscoresAction;
        let config = hardened("failure_policy: FAIL_CLOSED,").unwrap();
        assert_eq!(
            config.connection.underscores,
            UnderscoresAction::RejectRequest
        );
        assert_eq!(
            config.connection.stream_idle_timeout,
            Some(std::time::Duration::from_secs(60))
        );
        assert_eq!(
            config.request_removals.before_filter,
            vec!["x-session-state", "x-session-user"]
        );
        assert_eq!(config.request_removals.after_filter, vec!["x-late"]);
        assert_eq!(config.plugin.failure_policy, FailurePolicy::FailClosed);
        assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
        assert!(config.warnings[0].starts_with("request_timeout ignored"));
    }

    #[test]
    fn failure_policy_and_the_deprecated_fail_open() {
        let policy =
            |text: &str| hardened(text).map(|c| (c.plugin.failure_policy, c.warnings.len()));
        assert_eq!(policy(""), Ok((FailurePolicy::FailClosed, 1)));
        assert_eq!(
            policy("fail_open: false,"),
            Ok((FailurePolicy::FailClosed, 1))
        );
        assert_eq!(policy("fail_open: true,"), Ok((FailurePolicy::FailOpen, 1)));
        assert_eq!(
            policy("failure_policy: FAIL_OPEN,"),
            Ok((FailurePolicy::FailOpen, 1))
        );
        assert_eq!(
            policy("failure_policy: FAIL_CLOSED, fail_open: false,"),
            Ok((FailurePolicy::FailClosed, 1))
        );
        assert_eq!(
            policy("failure_policy: FAIL_RELOAD,"),
            Ok((FailurePolicy::FailClosed, 2)),
            "read as FAIL_CLOSED, with a warning"
        );
        for bad in [
            "failure_policy: FAIL_OPEN, fail_open: true,",
            "failure_policy: fail_open,",
            "failure_policy: 3,",
            "fail_open: yes please,",
        ] {
            assert!(hardened(bad).is_err(), "{bad}");
        }
    }
}
