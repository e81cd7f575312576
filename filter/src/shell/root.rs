//! The root context: parses the configuration once, defines the counters, owns the core.

use super::log_level;
use super::stream::{SessionStream, Unconfigured};
use crate::config::Config;
use crate::core::Core;
use crate::metrics::Counter;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, MetricType};
use std::rc::Rc;

/// What every stream of this plugin shares: the core (configuration and cache) and the
/// counters Envoy handed out.
pub struct Filter {
    pub core: Core,
    counters: [Option<u32>; Counter::ALL.len()],
}

impl Filter {
    pub fn count(&self, counter: Counter) {
        if let Some(id) = self.counters[counter.index()] {
            // Envoy refuses only ids it never handed out; nothing to do about that here.
            let _ = hostcalls::increment_metric(id, 1);
        }
    }
}

#[derive(Default)]
pub struct Root {
    filter: Option<Rc<Filter>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        if let Some(level) = log_level::get() {
            proxy_wasm::set_log_level(level);
        }
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let config = match Config::parse(&bytes) {
            Ok(config) => config,
            Err(err) => {
                log::error!("edge-session: refusing the plugin configuration: {err}");
                return false;
            }
        };
        for accepted in &config.development_secrets {
            log::error!(
                "edge-session: DEVELOPMENT SECRET ACCEPTED (allow_development_secrets is on): \
                 {accepted}. Anyone who knows it can forge sessions: never run this in production"
            );
        }
        let mut counters = [None; Counter::ALL.len()];
        for counter in Counter::ALL {
            counters[counter.index()] =
                hostcalls::define_metric(MetricType::Counter, counter.name()).ok();
        }
        self.filter = Some(Rc::new(Filter {
            core: Core::new(config),
            counters,
        }));
        log::info!("edge-session: configured");
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        match &self.filter {
            Some(filter) => Some(Box::new(SessionStream::new(filter.clone()))),
            None => Some(Box::new(Unconfigured)),
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
