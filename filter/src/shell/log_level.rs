//! Envoy's log level, read without the SDK. The SDK's `hostcalls::get_log_level` lets the host
//! write straight into its six-value `LogLevel` enum, but Envoy answers with spdlog's level,
//! which can be 6 ("off"): an enum value that does not exist, undefined behaviour in the
//! module. Here the host writes into a plain integer, which is then clamped.

use proxy_wasm::types::LogLevel;

/// The level Envoy logs this plugin at; "off" (6, or anything above) reads as `Critical`,
/// the quietest there is. `None` when the host cannot say.
pub fn get() -> Option<LogLevel> {
    raw().map(from_raw)
}

/// Maps spdlog's levels (trace 0 .. critical 5, off 6) onto the ABI's six.
pub fn from_raw(level: u32) -> LogLevel {
    match level {
        0 => LogLevel::Trace,
        1 => LogLevel::Debug,
        2 => LogLevel::Info,
        3 => LogLevel::Warn,
        4 => LogLevel::Error,
        _ => LogLevel::Critical,
    }
}

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
fn raw() -> Option<u32> {
    #[link(wasm_import_module = "env")]
    unsafe extern "C" {
        fn proxy_get_log_level(return_level: *mut u32) -> u32;
    }
    let mut level: u32 = 0;
    // SAFETY: the host writes one u32 through a pointer to a live local of that type; any
    // value it writes is a valid u32. Status 0 is OK in the ABI.
    let status = unsafe { proxy_get_log_level(&mut level) };
    (status == 0).then_some(level)
}

/// Native builds (tests, benchmarks) have no host to ask.
#[cfg(not(target_arch = "wasm32"))]
fn raw() -> Option<u32> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_and_beyond_read_as_the_quietest_level() {
        assert_eq!(from_raw(0), LogLevel::Trace);
        assert_eq!(from_raw(2), LogLevel::Info);
        assert_eq!(from_raw(5), LogLevel::Critical);
        assert_eq!(from_raw(6), LogLevel::Critical);
        assert_eq!(from_raw(u32::MAX), LogLevel::Critical);
    }
}
