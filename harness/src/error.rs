//! Everything that can go wrong when loading or driving a module, as values with messages that
//! say what happened and where.

/// An error from the harness. Module traps are values too: the host never panics on them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HarnessError {
    #[error("cannot read module {path}: {message}")]
    Read { path: String, message: String },
    #[error("cannot compile module: {0}")]
    Compile(String),
    #[error(
        "module exports no proxy_abi_version_0_2_1 or _0_2_0 marker; this host speaks ABI 0.2.x"
    )]
    MissingAbiMarker,
    #[error("cannot link module: {0}")]
    Link(String),
    #[error(
        "module exports neither malloc nor proxy_on_memory_allocate, so the host cannot return data to it"
    )]
    MissingAllocator,
    #[error("module export {name} has the wrong signature: {message}")]
    BadExport { name: String, message: String },
    #[error("module does not export {0}")]
    MissingExport(&'static str),
    #[error("cannot instantiate module: {0}")]
    Instantiate(String),
    #[error("module trapped in {callback}: {message}")]
    Trap { callback: String, message: String },
    #[error("proxy_on_vm_start returned false: the VM refused its configuration")]
    VmStartRejected,
    #[error("proxy_on_configure returned false: the plugin refused its configuration")]
    ConfigureRejected,
    #[error("the VM failed earlier and runs no more callbacks: {0}")]
    VmFailed(String),
    #[error("no stream with context id {0}")]
    UnknownStream(u32),
    #[error("no pending callout with token {0}")]
    UnknownCallout(u32),
    #[error("{0}")]
    Usage(String),
}
