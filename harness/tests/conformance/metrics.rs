use crate::support::*;
use harness::{MetricType, Vm};

#[test]
fn counters_gauges_and_histograms_behave_as_in_envoy() {
    let (host, mut vm) = probe();
    run(&mut vm, scenario::METRICS, &[]);
    assert_eq!(report(&host, "metrics.counter_inc"), "Ok");
    assert_eq!(report(&host, "metrics.counter_negative"), "BadArgument");
    assert_eq!(
        report(&host, "metrics.counter_zero"),
        "BadArgument",
        "a counter only goes up"
    );
    assert_eq!(report(&host, "metrics.gauge_up"), "Ok");
    assert_eq!(report(&host, "metrics.gauge_down"), "Ok");
    assert_eq!(report(&host, "metrics.counter_value"), "2");
    assert_eq!(report(&host, "metrics.gauge_value"), "3");
    assert_eq!(report(&host, "metrics.hist_get"), "BadArgument");
    assert_eq!(report(&host, "metrics.unknown_id"), "NotFound");
    assert_eq!(host.counter("probe_counter"), 2);
    let hist = host.metric("probe_hist").unwrap();
    assert_eq!(
        (hist.kind, hist.samples),
        (MetricType::Histogram, vec![7, 9])
    );
}

#[test]
fn every_worker_adds_to_the_same_counter() {
    let host = host();
    let plugin = probe_plugin(&host);
    let mut first = Vm::start(&plugin, config("")).unwrap();
    let mut second = Vm::start(&plugin, config("")).unwrap();
    run(&mut first, scenario::METRICS, &[]);
    run(&mut second, scenario::METRICS, &[]);
    assert_eq!(host.counter("probe_counter"), 4);
}
