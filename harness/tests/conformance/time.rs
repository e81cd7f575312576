use crate::support::*;
use harness::{DEFAULT_START_NANOS, LogLevel, Vm};
use std::time::Duration;

#[test]
fn time_comes_from_the_host_clock() {
    let (host, mut vm) = probe();
    run(&mut vm, scenario::TIME, &[]);
    assert_eq!(report(&host, "time.now"), DEFAULT_START_NANOS.to_string());
    vm.advance(Duration::from_millis(1500)).unwrap();
    run(&mut vm, scenario::TIME, &[]);
    assert_eq!(
        report(&host, "time.now"),
        (DEFAULT_START_NANOS + 1_500_000_000).to_string()
    );
}

#[test]
fn ticks_follow_the_clock_and_stop_when_the_period_is_zero() {
    let host = host();
    let plugin = probe_plugin(&host);
    let mut vm = Vm::start(&plugin, config("tick=100")).unwrap();
    let ticks = |host: &harness::Host| {
        reports(host)
            .into_iter()
            .filter(|(w, _)| w == "tick")
            .map(|(_, v)| v)
            .collect::<Vec<_>>()
    };
    vm.advance(Duration::from_millis(99)).unwrap();
    assert!(
        ticks(&host).is_empty(),
        "the first tick comes one period after the call"
    );
    vm.advance(Duration::from_millis(1)).unwrap();
    assert_eq!(
        ticks(&host),
        vec![format!("1 at {}", DEFAULT_START_NANOS + 100_000_000)]
    );
    vm.advance(Duration::from_millis(250)).unwrap();
    assert_eq!(ticks(&host).len(), 3, "one tick per elapsed period");
    assert_eq!(
        ticks(&host)[2],
        format!("3 at {}", DEFAULT_START_NANOS + 300_000_000)
    );
    vm.advance(Duration::from_secs(10)).unwrap();
    assert_eq!(ticks(&host).len(), 3, "period 0 disabled the timer");
    assert_eq!(host.counter("probe_ticks"), 3);
}

#[test]
fn log_level_is_the_hosts_and_lower_lines_are_dropped() {
    let (host, mut vm) = probe();
    host.set_log_level(LogLevel::Info);
    run(&mut vm, scenario::LOG_LEVEL, &[]);
    assert_eq!(report(&host, "log_level"), "Ok(Info)");
    assert!(!host.logged("debug line"));
    assert!(host.logged("warn line"));
    let warn = host
        .logs()
        .into_iter()
        .find(|l| l.message.contains("warn line"))
        .unwrap();
    assert_eq!(warn.level, LogLevel::Warn);
}

#[test]
fn one_clock_drives_every_worker() {
    let host = host();
    let plugin = probe_plugin(&host);
    let mut first = Vm::start_named(&plugin, config("tick=100"), "w1").unwrap();
    let mut second = Vm::start_named(&plugin, config("tick=100"), "w2").unwrap();
    host.clock().advance(Duration::from_millis(100));
    assert_eq!(host.clock().now_nanos(), DEFAULT_START_NANOS + 100_000_000);
    first.run_timers().unwrap();
    second.run_timers().unwrap();
    assert_eq!(host.counter("probe_ticks"), 2, "each worker ticked once");
    run(&mut first, scenario::TIME, &[]);
    assert_eq!(
        report(&host, "time.now"),
        (DEFAULT_START_NANOS + 100_000_000).to_string()
    );
}

/// Envoy's `Context::getLogLevel` returns spdlog's level as is, and Envoy's logger can be
/// off: 6, one past the SDK's 0..=5 enum.
#[test]
fn log_level_off_is_reported_as_six_and_keeps_no_lines() {
    let (host, mut vm) = probe();
    host.clear_logs();
    host.set_log_level(LogLevel::Off);
    let id = run(&mut vm, scenario::LOG_LEVEL_RAW, &[]);
    let upstream = vm.stream(id).unwrap().upstream.clone().unwrap();
    assert_eq!(upstream.header("x-log-level"), Some("Ok 6"));
    assert!(
        reports(&host).is_empty(),
        "no line is kept at off: {:?}",
        host.logs()
    );
    host.set_log_level(LogLevel::Critical);
    let id = run(&mut vm, scenario::LOG_LEVEL_RAW, &[]);
    let upstream = vm.stream(id).unwrap().upstream.clone().unwrap();
    assert_eq!(upstream.header("x-log-level"), Some("Ok 5"));
}

/// Envoy's `Context::getCurrentTimeNanoseconds` reads the wall clock (`systemTime`), which
/// can step back; its timers (ticks, callout timeouts) run on the monotonic clock and do not.
#[test]
fn the_wall_clock_can_step_back_while_timers_keep_their_schedule() {
    let host = host();
    let plugin = probe_plugin(&host);
    let mut vm = Vm::start(&plugin, config("tick=100")).unwrap();
    host.clock().step_back(Duration::from_secs(5));
    run(&mut vm, scenario::TIME, &[]);
    assert_eq!(
        report(&host, "time.now"),
        (DEFAULT_START_NANOS - 5_000_000_000).to_string()
    );
    vm.advance(Duration::from_millis(100)).unwrap();
    assert_eq!(
        report(&host, "tick"),
        format!("1 at {}", DEFAULT_START_NANOS + 100_000_000 - 5_000_000_000),
        "the tick comes on time; the module reads the stepped wall clock"
    );
    run(&mut vm, scenario::CALLOUT, &[("x-timeout-ms", "300")]);
    host.clock().step_back(Duration::from_secs(60));
    vm.advance(Duration::from_millis(300)).unwrap();
    assert!(
        vm.pending_callouts().is_empty(),
        "a step back does not hold back a callout's timeout"
    );
    assert_eq!(report(&host, "callout.status"), "504");
}
