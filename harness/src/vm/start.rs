//! Starting a worker VM, as Envoy starts a plugin on each worker thread: instantiate, run the
//! module's start functions, create the root context, `proxy_on_vm_start`,
//! `proxy_on_configure`. A worker whose plugin cannot start runs without the filter.

use super::exports::{Exports, optional};
use super::{ROOT_CONTEXT, Vm};
use crate::abi::LogLevel;
use crate::error::HarnessError;
use crate::plugin::{Plugin, PluginConfig};
use crate::state::{HostState, Phase};
use std::collections::{BTreeMap, HashMap, HashSet};
use wasmtime::{Instance, Store, StoreLimitsBuilder, TypedFunc};

impl Vm {
    /// Starts a worker VM: instantiate, run the module's start functions, create the root
    /// context, then `proxy_on_vm_start` and `proxy_on_configure`. A `false` from either is
    /// an error, as Envoy refuses such a plugin.
    pub fn start(plugin: &Plugin, config: PluginConfig) -> Result<Self, HarnessError> {
        Self::start_named(plugin, config, "vm")
    }

    /// Like [`Vm::start`], naming the VM in log lines (`worker-1`, say).
    pub fn start_named(
        plugin: &Plugin,
        config: PluginConfig,
        source: &str,
    ) -> Result<Self, HarnessError> {
        let mut vm = Self::bare(plugin, &config, source);
        vm.boot(plugin, &config)?;
        Ok(vm)
    }

    /// Starts the plugin on a worker the way Envoy does once the plugin is configured: if it
    /// cannot start on this worker (a trap, a refused configuration, memory), the worker runs
    /// **without the filter**, whatever the failure policy. Envoy's `createFilter` installs
    /// no filter when the worker's thread-local plugin is missing (cpp-host's
    /// `getOrCreateThreadLocalPlugin` returns none when the worker's VM fails to start or
    /// configure); only a plugin whose base VM failed to load fails closed. Its streams pass
    /// untouched and [`Vm::filter_missing`] says why.
    pub fn start_worker(plugin: &Plugin, config: PluginConfig, source: &str) -> Self {
        let mut vm = Self::bare(plugin, &config, source);
        if let Err(err) = vm.boot(plugin, &config) {
            // A fresh store: the instance that failed (and its memory) is dropped, as Envoy
            // drops the worker's VM.
            vm = Self::bare(plugin, &config, source);
            vm.note(
                LogLevel::Critical,
                format!(
                    "plugin {:?} did not start on this worker ({err}): the worker runs WITHOUT \
                     the filter, whatever the failure policy",
                    config.name
                ),
            );
            vm.failed = Some(format!("the plugin did not start on this worker: {err}"));
            vm.filter_missing = Some(err);
        }
        vm
    }

    /// Why the plugin did not start on this worker ([`Vm::start_worker`]); its streams then
    /// pass with no filter at all.
    pub fn filter_missing(&self) -> Option<&HarnessError> {
        self.filter_missing.as_ref()
    }

    /// A VM with its host state and no module instance yet.
    fn bare(plugin: &Plugin, config: &PluginConfig, source: &str) -> Self {
        let host = plugin.host.clone();
        let state = HostState {
            host: host.clone(),
            source: source.to_string(),
            vm_id: config.vm_id.clone(),
            plugin_name: config.name.clone(),
            root_id: config.root_id.clone(),
            plugin_configuration: config.configuration.clone(),
            vm_configuration: config.vm_configuration.clone(),
            root_context: ROOT_CONTEXT,
            limits: StoreLimitsBuilder::new()
                .memory_size(host.max_memory_bytes())
                .build(),
            memory: None,
            allocator: None,
            phase: Phase::Starting,
            current_context: 0,
            effective_context: 0,
            streams: BTreeMap::new(),
            callouts: BTreeMap::new(),
            next_token: 1,
            call_reply: None,
            call_status: None,
            deferred: Vec::new(),
            tick_period: None,
            next_tick_at: None,
            metrics: HashMap::new(),
            next_metric_id: 1,
        };
        let mut store = Store::new(host.engine(), state);
        // cpp-host caps each VM's memory (`limits.h`); growing past it answers -1.
        store.limiter(|state| &mut state.limits);
        Self {
            host,
            store,
            exports: Exports::default(),
            failure_policy: config.failure_policy,
            failed: None,
            filter_missing: None,
            next_context: ROOT_CONTEXT + 1,
            local_replies_in_flight: HashSet::new(),
        }
    }

    /// Instantiates the module and runs it up to a configured root context.
    fn boot(&mut self, plugin: &Plugin, config: &PluginConfig) -> Result<(), HarnessError> {
        let store = &mut self.store;
        let instance = plugin
            .pre
            .instantiate(&mut *store)
            .map_err(|e| HarnessError::Instantiate(format!("{e:#}")))?;
        let memory = instance.get_memory(&mut *store, "memory");
        // Envoy looks for `malloc` first, then `proxy_on_memory_allocate`.
        let allocator = match optional::<i32, i32>(store, &instance, "malloc")? {
            Some(f) => f,
            None => optional(store, &instance, "proxy_on_memory_allocate")?
                .ok_or(HarnessError::MissingAllocator)?,
        };
        store.data_mut().memory = memory;
        store.data_mut().allocator = Some(allocator);
        self.exports = Exports::resolve(store, &instance)?;
        self.run_start_functions(&instance)?;
        self.store.data_mut().phase = Phase::Root;
        let create = self
            .exports
            .context_create
            .clone()
            .ok_or(HarnessError::MissingExport("proxy_on_context_create"))?;
        self.invoke(
            "proxy_on_context_create",
            Phase::Root,
            ROOT_CONTEXT,
            &create,
            (ROOT_CONTEXT as i32, 0),
        )?;
        let (vm_start, configure) = (
            self.exports.vm_start.clone(),
            self.exports.configure.clone(),
        );
        let name = &config.name;
        self.root_check(
            name,
            "proxy_on_vm_start",
            vm_start,
            config.vm_configuration.len(),
            HarnessError::VmStartRejected,
        )?;
        self.root_check(
            name,
            "proxy_on_configure",
            configure,
            config.configuration.len(),
            HarnessError::ConfigureRejected,
        )?;
        self.drain_deferred()
    }

    /// Runs a root callback that answers true or false with the size of a configuration
    /// buffer (`proxy_on_vm_start`, `proxy_on_configure`). False is `refused`, logged the way
    /// Envoy reports a plugin it will not run.
    fn root_check(
        &mut self,
        plugin: &str,
        callback: &str,
        func: Option<TypedFunc<(i32, i32), i32>>,
        size: usize,
        refused: HarnessError,
    ) -> Result<(), HarnessError> {
        let Some(func) = func else { return Ok(()) };
        if self.invoke(
            callback,
            Phase::Root,
            ROOT_CONTEXT,
            &func,
            (ROOT_CONTEXT as i32, size as i32),
        )? == 0
        {
            self.note(LogLevel::Critical, format!("plugin {plugin:?}: {refused}"));
            return Err(refused);
        }
        Ok(())
    }

    fn run_start_functions(&mut self, instance: &Instance) -> Result<(), HarnessError> {
        let initialize = optional::<(), ()>(&mut self.store, instance, "_initialize")?;
        if let Some(init) = initialize {
            self.invoke("_initialize", Phase::Starting, 0, &init, ())?;
            if let Some(main) = optional::<(i32, i32), i32>(&mut self.store, instance, "main")? {
                self.invoke("main", Phase::Starting, 0, &main, (0, 0))?;
            }
        } else if let Some(start) = optional::<(), ()>(&mut self.store, instance, "_start")? {
            self.invoke("_start", Phase::Starting, 0, &start, ())?;
        }
        Ok(())
    }
}
