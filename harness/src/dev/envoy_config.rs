//! The subset of Envoy's v3 bootstrap `edge-dev` understands, read from the project's
//! `envoy.yaml`: the first listener's address, its routes (path prefix to cluster), the Wasm
//! HTTP filter's plugin config, and each cluster's first endpoint. Anything else is ignored,
//! with a warning for the parts a user might expect to work.

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
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct WasmPlugin {
    pub name: String,
    pub root_id: String,
    pub vm_id: String,
    pub fail_open: bool,
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

fn error(path: &str, message: impl Into<String>) -> ConfigError {
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
        let filters = get(hcm, "http_filters")?
            .as_sequence()
            .cloned()
            .unwrap_or_default();
        let wasm = filters
            .iter()
            .find(|f| f.get("name").and_then(Value::as_str) == Some("envoy.filters.http.wasm"))
            .ok_or_else(|| error("http_filters", "no envoy.filters.http.wasm filter"))?;
        for other in &filters {
            match other.get("name").and_then(Value::as_str) {
                Some("envoy.filters.http.wasm" | "envoy.filters.http.router") => {}
                name => warnings.push(format!("HTTP filter {name:?} ignored")),
            }
        }
        let plugin = get(wasm, "typed_config.config")?;
        let filename = text(plugin, "vm_config.code.local.filename")?;
        let plugin = WasmPlugin {
            name: text(plugin, "name").unwrap_or_default(),
            root_id: text(plugin, "root_id").unwrap_or_default(),
            vm_id: text(plugin, "vm_config.vm_id").unwrap_or_default(),
            fail_open: get(plugin, "fail_open")
                .ok()
                .and_then(Value::as_bool)
                .unwrap_or(false),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_projects_envoy_yaml() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../envoy.yaml");
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
        assert!(!config.plugin.fail_open);
        assert!(
            config
                .plugin
                .filename
                .ends_with("target/wasm/wasm32-unknown-unknown/release/filter.wasm")
        );
        let filter_config: serde_json::Value =
            serde_json::from_str(&config.plugin.configuration).unwrap();
        assert_eq!(filter_config["companion"]["cluster"], "companion");
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
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
}
