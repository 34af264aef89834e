//! The agent's Prometheus metrics: one `Metrics` value holding every family, passed down.
//!
//! Labels are bounded by construction: `probe` and `kind` come from config, `netns` and `result`
//! from closed enums. Addresses appear only on `_info` series, one per check, replaced when the
//! address changes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};

use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use prometheus::core::Collector;
use prometheus::{
    Counter, CounterVec, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, Opts,
};

use crate::diagnose::Code;
use crate::netns::NetnsId;
use crate::probe::path_mtu::PathMtuReport;
use crate::probe::route::RouteReport;
use crate::probe::source_ip::SourceIpReport;
use crate::probe::traceroute::TracerouteReport;
use crate::probe::{Failure, Outcome, Report};
use crate::results::Transition;

mod text;

/// Probe and query durations: fine steps where healthy paths land, and 5 s and 10 s where
/// retransmitted SYNs and conntrack-race DNS delays land.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Outages: from one missed round to a day.
const OUTAGE_BUCKETS: &[f64] = &[
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
];

/// Scheduler lag: timer resolution is a millisecond, so a healthy agent lands in the lowest
/// buckets; the upper ones show a runtime too busy to start rounds on time.
const LAG_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Every series the agent exports.
#[derive(Clone)]
pub struct Metrics {
    /// Every metric family, in exposition order. Rendered one family at a time rather than
    /// through `Registry::gather`, which would materialise every series at once and set the
    /// agent's peak memory.
    families: Arc<Vec<Family>>,
    last_render_len: Arc<AtomicUsize>,
    /// The last rendering, shared by every scrape until a series changes: concurrent scrapers
    /// then cost one render, not one each. Every method that changes a series ends with
    /// [`Metrics::changed`], which drops it, so between changes no copy is kept.
    exposition: Arc<Mutex<Option<Exposition>>>,
    probe_success: GaugeVec,
    probe_duration: HistogramVec,
    probe_runs: CounterVec,
    probe_last_success: GaugeVec,
    probe_state_changes: CounterVec,
    outage_duration: HistogramVec,
    icmp_loss_ratio: GaugeVec,
    icmp_rtt: HistogramVec,
    source_ip_preserved: GaugeVec,
    source_ip_info: GaugeVec,
    snat_observed: GaugeVec,
    dns_success: GaugeVec,
    dns_query_duration: HistogramVec,
    route_info: GaugeVec,
    path_mtu_bytes: GaugeVec,
    path_mtu_blackhole: GaugeVec,
    tcp_mss_bytes: GaugeVec,
    traceroute_hops: GaugeVec,
    traceroute_expected_hop_seen: GaugeVec,
    traceroute_path_changes: CounterVec,
    /// What the last round of each check saw, where a series depends on the one before.
    previous: Arc<Mutex<Previous>>,
    netns_available: GaugeVec,
    node_healthy: Gauge,
    /// One series per diagnosis code, always present: 1 while the diagnosis holds.
    diagnosis: GaugeVec,
    scheduler_lag: Histogram,
    config_reload_ok: Gauge,
    config_reload_time: Gauge,
}

/// A metric family, typed so that a removed probe's series can be found and dropped.
enum Family {
    Gauges(GaugeVec),
    Counters(CounterVec),
    Histograms(HistogramVec),
    Single(Box<dyn Collector>),
}

impl Family {
    fn collector(&self) -> &dyn Collector {
        match self {
            Family::Gauges(v) => v,
            Family::Counters(v) => v,
            Family::Histograms(v) => v,
            Family::Single(c) => c.as_ref(),
        }
    }

    /// Removes every series whose labels include all of `labels`.
    fn forget(&self, labels: &[(&str, &str)]) {
        for family in self.collector().collect() {
            for metric in family.get_metric() {
                let pairs: HashMap<&str, &str> = metric
                    .get_label()
                    .iter()
                    .map(|pair| (pair.name(), pair.value()))
                    .collect();
                if !labels.iter().all(|(k, v)| pairs.get(k) == Some(v)) {
                    continue;
                }
                // Err only when the series is already gone, which is the goal.
                let _ = match self {
                    Family::Gauges(v) => v.remove(&pairs),
                    Family::Counters(v) => v.remove(&pairs),
                    Family::Histograms(v) => v.remove(&pairs),
                    Family::Single(_) => Ok(()),
                };
            }
        }
    }
}

/// One check's own series, resolved once so that recording a round hashes no labels.
pub struct CheckSeries {
    probe: String,
    kind: &'static str,
    netns: NetnsId,
    success: Gauge,
    duration: Histogram,
    runs_success: Counter,
    /// Created on the first success: a timestamp of 0 would read as "passed in 1970".
    last_success: OnceLock<Gauge>,
    state_changes: Counter,
    outage: Histogram,
}

const CHECK: &[&str] = &["probe", "kind", "netns"];
/// `server` is `system` or an address from config, so it stays bounded.
const DNS_PAIR: &[&str] = &["probe", "netns", "server", "transport"];

const PROBE_NETNS: &[&str] = &["probe", "netns"];

/// Per check (probe and namespace): the labels of its `_info` series, so a change replaces the
/// series instead of adding one, and the last hop list, to count path changes.
#[derive(Default)]
struct Previous {
    route_labels: HashMap<(String, NetnsId), [String; 2]>,
    /// The `expected` and `observed` addresses of a source-IP check.
    source_ip_labels: HashMap<(String, NetnsId), [String; 2]>,
    hops: HashMap<(String, NetnsId), TracerouteReport>,
}

impl Previous {
    fn forget(&mut self, key: &(String, NetnsId)) {
        self.route_labels.remove(key);
        self.source_ip_labels.remove(key);
        self.hops.remove(key);
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let families: RefCell<Vec<Family>> = RefCell::default();
        let register = |f: Family| families.borrow_mut().push(f);
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid gauge");
            register(Family::Gauges(g.clone()));
            g
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = CounterVec::new(Opts::new(name, help), labels).expect("valid counter");
            register(Family::Counters(c.clone()));
            c
        };
        let histogram_with = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
            let h = HistogramVec::new(opts, labels).expect("valid histogram");
            register(Family::Histograms(h.clone()));
            h
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            histogram_with(name, help, labels, DURATION_BUCKETS)
        };
        let build_info = gauge(
            "hybridprobe_build_info",
            "Always 1; the version label says which build runs.",
            &["version"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1.0);
        let single = |name: &str, help: &str| {
            let g = Gauge::new(name, help).expect("valid gauge");
            register(Family::Single(Box::new(g.clone())));
            g
        };
        let node_healthy = single(
            "hybridprobe_node_healthy",
            "1 when every check on this node passes, 0 otherwise or before the first round.",
        );
        let diagnosis = gauge(
            "hybridprobe_diagnosis",
            "1 while the diagnosis `code` holds on this node, 0 otherwise; every code is always \
             present.",
            &["code"],
        );
        for code in Code::ALL {
            diagnosis.with_label_values(&[code.as_str()]).set(0.0);
        }
        let scheduler_lag = {
            let opts = HistogramOpts::new(
                "hybridprobe_scheduler_lag_seconds",
                "How late rounds start after their scheduled time, over every check.",
            )
            .buckets(LAG_BUCKETS.to_vec());
            let h = Histogram::with_opts(opts).expect("valid histogram");
            register(Family::Single(Box::new(h.clone())));
            h
        };
        Metrics {
            probe_success: gauge(
                "hybridprobe_probe_success",
                "1 if the last round of the check passed, 0 if it failed.",
                CHECK,
            ),
            probe_duration: histogram(
                "hybridprobe_probe_duration_seconds",
                "How long each round of the check took.",
                CHECK,
            ),
            probe_runs: counter(
                "hybridprobe_probe_runs_total",
                "Rounds of the check, by result (success or the failure class).",
                &["probe", "kind", "netns", "result"],
            ),
            probe_last_success: gauge(
                "hybridprobe_probe_last_success_timestamp_seconds",
                "Unix time of the check's last passing round.",
                CHECK,
            ),
            probe_state_changes: counter(
                "hybridprobe_probe_state_changes_total",
                "Times the check went from passing to failing or back (after flap damping).",
                CHECK,
            ),
            outage_duration: histogram_with(
                "hybridprobe_outage_duration_seconds",
                "How long each finished outage of the check lasted, observed at recovery.",
                CHECK,
                OUTAGE_BUCKETS,
            ),
            icmp_loss_ratio: gauge(
                "hybridprobe_icmp_loss_ratio",
                "Share of echo requests in the last round that got no reply (0 to 1).",
                &["probe", "netns"],
            ),
            icmp_rtt: histogram(
                "hybridprobe_icmp_rtt_seconds",
                "Round-trip time of each echo reply.",
                &["probe", "netns"],
            ),
            source_ip_preserved: gauge(
                "hybridprobe_source_ip_preserved",
                "1 if on-prem saw the namespace's own source address in the last observation, 0 if \
                 it saw another (masquerade).",
                &["probe", "netns"],
            ),
            source_ip_info: gauge(
                "hybridprobe_source_ip_info",
                "Always 1: the source address the namespace sends from and the one on-prem saw, \
                 as of the last observation.",
                &["probe", "netns", "expected", "observed"],
            ),
            snat_observed: gauge(
                "hybridprobe_snat_observed",
                "1 if the host's conntrack shows this node SNAT'd the probe's flow, 0 if not; \
                 absent when conntrack could not be read.",
                &["probe", "netns"],
            ),
            dns_success: gauge(
                "hybridprobe_dns_success",
                "1 if every nameserver of the pair answered as expected in the last round; \
                 server is `system` for the namespace's resolv.conf nameservers.",
                DNS_PAIR,
            ),
            dns_query_duration: histogram(
                "hybridprobe_dns_query_duration_seconds",
                "How long each DNS query took, answered or not.",
                DNS_PAIR,
            ),
            route_info: gauge(
                "hybridprobe_route_info",
                "Always 1; the gateway and dev labels say where the kernel routes the \
                 destination (gateway empty when on-link).",
                &["probe", "netns", "gateway", "dev"],
            ),
            path_mtu_bytes: gauge(
                "hybridprobe_path_mtu_bytes",
                "The largest IP packet that crossed the path without fragmentation.",
                PROBE_NETNS,
            ),
            path_mtu_blackhole: gauge(
                "hybridprobe_path_mtu_blackhole",
                "1 when larger don't-fragment packets vanish without a fragmentation-needed \
                 reply while smaller ones pass.",
                PROBE_NETNS,
            ),
            tcp_mss_bytes: gauge(
                "hybridprobe_tcp_mss_bytes",
                "The TCP maximum segment size the kernel settled on for a test connection.",
                PROBE_NETNS,
            ),
            traceroute_hops: gauge(
                "hybridprobe_traceroute_hops",
                "Hops to the target, or to the last hop that answered when it was not reached.",
                PROBE_NETNS,
            ),
            traceroute_expected_hop_seen: gauge(
                "hybridprobe_traceroute_expected_hop_seen",
                "1 when a hop of the last traceroute was in expect_hop, 0 when none was.",
                PROBE_NETNS,
            ),
            traceroute_path_changes: counter(
                "hybridprobe_traceroute_path_changes_total",
                "Rounds whose hop list differed from the round before (silent hops aside).",
                PROBE_NETNS,
            ),
            previous: Arc::default(),
            netns_available: gauge(
                "hybridprobe_netns_available",
                "1 if the agent can run probes in the namespace, 0 if it cannot enter it.",
                &["netns"],
            ),
            node_healthy,
            diagnosis,
            scheduler_lag,
            config_reload_ok: single(
                "hybridprobe_config_last_reload_successful",
                "1 if the config file last read is the one running, 0 if it was rejected.",
            ),
            config_reload_time: single(
                "hybridprobe_config_last_reload_success_timestamp_seconds",
                "Unix time of the last successful config load.",
            ),
            families: Arc::new(families.into_inner()),
            last_render_len: Arc::default(),
            exposition: Arc::default(),
        }
    }

    /// Creates a check's series before its first round, so dashboards see it from the start.
    pub fn check_series(&self, probe: &str, kind: &'static str, netns: NetnsId) -> CheckSeries {
        let labels = [probe, kind, netns.as_str()];
        if kind == "traceroute" {
            // A counter of path changes exists from the start, so increase() sees the first one.
            self.traceroute_path_changes
                .with_label_values(&[probe, netns.as_str()]);
        }
        let series = CheckSeries {
            probe: probe.to_owned(),
            kind,
            netns,
            success: self.probe_success.with_label_values(&labels),
            duration: self.probe_duration.with_label_values(&labels),
            runs_success: self.probe_runs.with_label_values(&[
                probe,
                kind,
                netns.as_str(),
                "success",
            ]),
            last_success: OnceLock::new(),
            state_changes: self.probe_state_changes.with_label_values(&labels),
            outage: self.outage_duration.with_label_values(&labels),
        };
        self.changed();
        series
    }

    /// Records one finished round.
    pub fn observe(
        &self,
        check: &CheckSeries,
        result: &Result<Outcome, Failure>,
        took: Duration,
        transition: Transition,
    ) {
        let (probe, netns) = (check.probe.as_str(), check.netns.as_str());
        check.success.set(if result.is_ok() { 1.0 } else { 0.0 });
        check.duration.observe(took.as_secs_f64());
        match result {
            Ok(_) => {
                check.runs_success.inc();
                let labels = [probe, check.kind, netns];
                check
                    .last_success
                    .get_or_init(|| self.probe_last_success.with_label_values(&labels))
                    .set(unix_seconds(SystemTime::now()));
            }
            Err(failure) => self
                .probe_runs
                .with_label_values(&[probe, check.kind, netns, failure.reason.as_str()])
                .inc(),
        }
        match transition {
            Transition::None => {}
            Transition::Failed => check.state_changes.inc(),
            Transition::Recovered { outage } => {
                check.state_changes.inc();
                check.outage.observe(outage.as_secs_f64());
            }
        }
        let report = match result {
            Ok(outcome) => &outcome.report,
            Err(failure) => &failure.report,
        };
        match report {
            Report::None => {}
            Report::Icmp(icmp) => {
                self.icmp_loss_ratio
                    .with_label_values(&[probe, netns])
                    .set(icmp.loss_ratio());
                let rtt = self.icmp_rtt.with_label_values(&[probe, netns]);
                for sample in &icmp.rtts {
                    rtt.observe(sample.as_secs_f64());
                }
            }
            Report::SourceIp(source_ip) => self.observe_source_ip(probe, check.netns, source_ip),
            Report::Dns(dns) => {
                for pair in &dns.pairs {
                    let labels = [probe, netns, pair.server.as_str(), pair.transport.as_str()];
                    self.dns_success
                        .with_label_values(&labels)
                        .set(if pair.ok() { 1.0 } else { 0.0 });
                    let duration = self.dns_query_duration.with_label_values(&labels);
                    for took in &pair.durations {
                        duration.observe(took.as_secs_f64());
                    }
                }
            }
            Report::Route(route) => self.observe_route(probe, check.netns, route),
            Report::PathMtu(path) => self.observe_path_mtu(probe, netns, path),
            Report::Traceroute(trace) => self.observe_traceroute(probe, check.netns, trace),
        }
        self.changed();
    }

    /// Drops every series of a check that no longer exists, so /metrics shows only the
    /// configured checks.
    pub fn forget_check(&self, probe: &str, netns: NetnsId) {
        let labels = [("probe", probe), ("netns", netns.as_str())];
        for family in self.families.iter() {
            family.forget(&labels);
        }
        self.previous().forget(&(probe.to_owned(), netns));
        self.changed();
    }

    /// Keeps one `_info` series per check: a new pair of addresses replaces the old series.
    fn observe_source_ip(&self, probe: &str, netns: NetnsId, report: &SourceIpReport) {
        let labels = [probe, netns.as_str()];
        self.source_ip_preserved
            .with_label_values(&labels)
            .set(if report.preserved() { 1.0 } else { 0.0 });
        let addresses = [report.expected.to_string(), report.observed.to_string()];
        let previous = self
            .previous()
            .source_ip_labels
            .insert((probe.to_owned(), netns), addresses.clone());
        if let Some([expected, observed]) = previous.filter(|p| *p != addresses) {
            let _ = self.source_ip_info.remove_label_values(&[
                probe,
                netns.as_str(),
                &expected,
                &observed,
            ]);
        }
        let [expected, observed] = &addresses;
        self.source_ip_info
            .with_label_values(&[probe, netns.as_str(), expected, observed])
            .set(1.0);
        match report.snat_observed {
            Some(snat) => {
                self.snat_observed
                    .with_label_values(&labels)
                    .set(if snat { 1.0 } else { 0.0 })
            }
            None => {
                let _ = self.snat_observed.remove_label_values(&labels);
            }
        }
    }

    /// One `_info` series per check: a new route replaces the old series; no route removes it.
    fn observe_route(&self, probe: &str, netns: NetnsId, report: &RouteReport) {
        let labels = report.route.as_ref().map(|route| {
            [
                route.gateway.map(|g| g.to_string()).unwrap_or_default(),
                route.dev.clone(),
            ]
        });
        let mut previous = self.previous();
        let key = (probe.to_owned(), netns);
        if let Some([gateway, dev]) = previous.route_labels.get(&key) {
            if labels.as_ref() != Some(&[gateway.clone(), dev.clone()]) {
                let _ = self
                    .route_info
                    .remove_label_values(&[probe, netns.as_str(), gateway, dev]);
            }
        }
        match labels {
            Some(labels) => {
                let [gateway, dev] = &labels;
                self.route_info
                    .with_label_values(&[probe, netns.as_str(), gateway, dev])
                    .set(1.0);
                previous.route_labels.insert(key, labels);
            }
            None => {
                previous.route_labels.remove(&key);
            }
        }
    }

    fn observe_path_mtu(&self, probe: &str, netns: &str, report: &PathMtuReport) {
        let labels = [probe, netns];
        // Without a single reply nothing was measured: the last known values stand.
        if let Some(mtu) = report.mtu {
            self.path_mtu_bytes
                .with_label_values(&labels)
                .set(f64::from(mtu));
            self.path_mtu_blackhole
                .with_label_values(&labels)
                .set(if report.blackhole { 1.0 } else { 0.0 });
        }
        if let Some(mss) = report.tcp_mss {
            self.tcp_mss_bytes
                .with_label_values(&labels)
                .set(f64::from(mss));
        }
    }

    fn observe_traceroute(&self, probe: &str, netns: NetnsId, report: &TracerouteReport) {
        let labels = [probe, netns.as_str()];
        self.traceroute_hops
            .with_label_values(&labels)
            .set(report.hop_count() as f64);
        if let Some(seen) = report.expected_hop_seen {
            self.traceroute_expected_hop_seen
                .with_label_values(&labels)
                .set(if seen { 1.0 } else { 0.0 });
        }
        let mut previous = self.previous();
        if let Some(before) = previous
            .hops
            .insert((probe.to_owned(), netns), report.clone())
        {
            if report.path_changed(&before) {
                self.traceroute_path_changes
                    .with_label_values(&labels)
                    .inc();
            }
        }
    }

    fn previous(&self) -> std::sync::MutexGuard<'_, Previous> {
        // Each update is one insert or remove, so a poisoned lock still holds consistent data.
        self.previous.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_netns_available(&self, netns: NetnsId, available: bool) {
        self.netns_available
            .with_label_values(&[netns.as_str()])
            .set(if available { 1.0 } else { 0.0 });
        self.changed();
    }

    pub fn set_config_reloaded(&self, ok: bool) {
        self.config_reload_ok.set(if ok { 1.0 } else { 0.0 });
        if ok {
            self.config_reload_time.set(unix_seconds(SystemTime::now()));
        }
        self.changed();
    }

    /// How late a round started: the time between its scheduled tick and now.
    pub fn observe_scheduler_lag(&self, lag: Duration) {
        self.scheduler_lag.observe(lag.as_secs_f64());
        self.changed();
    }

    /// Set before every scrape from that scrape's verdict, so only a change counts as one: an
    /// unchanged value keeps the shared rendering.
    pub fn set_node_healthy(&self, healthy: bool) {
        let value = if healthy { 1.0 } else { 0.0 };
        if self.node_healthy.get() != value {
            self.node_healthy.set(value);
            self.changed();
        }
    }

    /// Like `set_node_healthy`: set from every verdict, so only a change counts as one.
    pub fn set_diagnosis(&self, code: Code, active: bool) {
        let value = if active { 1.0 } else { 0.0 };
        let gauge = self.diagnosis.with_label_values(&[code.as_str()]);
        if gauge.get() != value {
            gauge.set(value);
            self.changed();
        }
    }

    /// A series changed: the next scrape renders afresh.
    fn changed(&self) {
        *self.exposition() = None;
    }

    fn exposition(&self) -> MutexGuard<'_, Option<Exposition>> {
        // Holds a finished rendering or nothing, so a poisoned lock still holds consistent data.
        self.exposition.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The Prometheus text exposition of every series: the shared rendering if no series
    /// changed since it was made, else a new one. Concurrent scrapes wait for one render.
    pub fn render(&self) -> Exposition {
        let mut shared = self.exposition();
        if let Some(text) = shared.as_ref() {
            return text.clone();
        }
        let text = Exposition(Arc::new(self.encode()));
        *shared = Some(text.clone());
        text
    }

    fn encode(&self) -> String {
        // Sized from the last render: growing by doubling would briefly hold two copies.
        let expected = self.last_render_len.load(Ordering::Relaxed);
        let mut out = String::with_capacity(expected + expected / 8 + 4096);
        for family in self.families.iter() {
            let collected = family.collector().collect();
            // A vector with no series yet renders nothing, as the registry would.
            let present: Vec<_> = collected
                .into_iter()
                .filter(|f| !f.get_metric().is_empty())
                .collect();
            text::encode(&present, &mut out);
        }
        self.last_render_len.store(out.len(), Ordering::Relaxed);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// A rendering of every series, shared without copying by the scrapes that asked for it. It
/// reads as a `str` and is an HTTP response body.
#[derive(Clone, Debug)]
pub struct Exposition(Arc<String>);

impl std::ops::Deref for Exposition {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Exposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Lends the shared text to a response body without copying it.
struct Shared(Arc<String>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl IntoResponse for Exposition {
    fn into_response(self) -> Response {
        Bytes::from_owner(Shared(self.0)).into_response()
    }
}

pub fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::icmp::IcmpReport;
    use crate::probe::Reason;

    /// Dashboards and alerts need a series for every code from the first scrape on.
    #[test]
    fn every_diagnosis_code_is_exported_from_the_start() {
        let metrics = Metrics::new();
        metrics.set_diagnosis(Code::PmtuBlackhole, true);
        let text = metrics.render();
        for code in Code::ALL {
            let on = if *code == Code::PmtuBlackhole { 1 } else { 0 };
            let line = format!("hybridprobe_diagnosis{{code=\"{code}\"}} {on}");
            assert!(text.contains(&line), "missing {line}\n{text}");
        }
    }

    #[test]
    fn a_round_updates_the_generic_and_kind_series() {
        let metrics = Metrics::new();
        let dc1 = metrics.check_series("dc1", "icmp", NetnsId::Pod);
        let failure = Failure {
            reason: Reason::Timeout,
            detail: "lost".into(),
            report: Report::Icmp(IcmpReport {
                sent: 4,
                received: 1,
                rtts: vec![Duration::from_millis(3)],
            }),
        };
        metrics.observe(
            &dc1,
            &Err(failure),
            Duration::from_millis(1500),
            Transition::Failed,
        );
        let text = metrics.render();
        for line in [
            r#"hybridprobe_probe_success{kind="icmp",netns="pod",probe="dc1"} 0"#,
            r#"hybridprobe_probe_runs_total{kind="icmp",netns="pod",probe="dc1",result="timeout"} 1"#,
            r#"hybridprobe_probe_runs_total{kind="icmp",netns="pod",probe="dc1",result="success"} 0"#,
            r#"hybridprobe_probe_state_changes_total{kind="icmp",netns="pod",probe="dc1"} 1"#,
            r#"hybridprobe_probe_duration_seconds_bucket{kind="icmp",netns="pod",probe="dc1",le="2.5"} 1"#,
            r#"hybridprobe_probe_duration_seconds_bucket{kind="icmp",netns="pod",probe="dc1",le="10"} 1"#,
            r#"hybridprobe_icmp_loss_ratio{netns="pod",probe="dc1"} 0.75"#,
            r#"hybridprobe_icmp_rtt_seconds_count{netns="pod",probe="dc1"} 1"#,
            r#"hybridprobe_build_info{version=""#,
            "# TYPE hybridprobe_probe_runs_total counter",
        ] {
            assert!(text.contains(line), "missing {line}\n{text}");
        }
        assert!(!text.contains("hybridprobe_probe_last_success_timestamp_seconds"));
        assert!(
            !text.contains("hybridprobe_netns_available"),
            "no series, no family"
        );
    }

    #[test]
    fn a_rendering_is_shared_until_a_series_changes() {
        let metrics = Metrics::new();
        let check = metrics.check_series("dc1", "tcp", NetnsId::Pod);
        let first = metrics.render();
        assert!(Arc::ptr_eq(&first.0, &metrics.render().0), "rendered twice");
        metrics.set_node_healthy(false);
        assert!(
            Arc::ptr_eq(&first.0, &metrics.render().0),
            "an unchanged value renders again"
        );
        // Every kind of change reaches the next scrape.
        let ok = Ok(Outcome {
            detail: String::new(),
            report: Report::None,
        });
        let changes: [(&dyn Fn(), &str); 7] = [
            (
                &|| metrics.observe(&check, &ok, Duration::ZERO, Transition::None),
                r#"hybridprobe_probe_success{kind="tcp",netns="pod",probe="dc1"} 1"#,
            ),
            (
                &|| drop(metrics.check_series("dc2", "tcp", NetnsId::Host)),
                r#"probe="dc2""#,
            ),
            (
                &|| metrics.forget_check("dc2", NetnsId::Host),
                "!probe=\"dc2\"",
            ),
            (
                &|| metrics.set_node_healthy(true),
                "hybridprobe_node_healthy 1",
            ),
            (
                &|| metrics.set_netns_available(NetnsId::Host, false),
                r#"hybridprobe_netns_available{netns="host"} 0"#,
            ),
            (
                &|| metrics.set_config_reloaded(false),
                "hybridprobe_config_last_reload_successful 0",
            ),
            (
                &|| metrics.observe_scheduler_lag(Duration::from_millis(1)),
                "hybridprobe_scheduler_lag_seconds_count 1",
            ),
        ];
        for (change, expect) in changes {
            let _before = metrics.render();
            change();
            let text = metrics.render();
            match expect.strip_prefix('!') {
                Some(gone) => assert!(!text.contains(gone), "still {gone}:\n{text}"),
                None => assert!(text.contains(expect), "missing {expect}:\n{text}"),
            }
        }
    }

    #[test]
    fn scheduler_lag_is_one_unlabelled_histogram() {
        let metrics = Metrics::new();
        metrics.observe_scheduler_lag(Duration::from_micros(300));
        metrics.observe_scheduler_lag(Duration::from_millis(80));
        let text = metrics.render();
        for line in [
            r#"hybridprobe_scheduler_lag_seconds_bucket{le="0.0005"} 1"#,
            r#"hybridprobe_scheduler_lag_seconds_bucket{le="0.05"} 1"#,
            r#"hybridprobe_scheduler_lag_seconds_bucket{le="0.1"} 2"#,
            "hybridprobe_scheduler_lag_seconds_count 2",
        ] {
            assert!(text.contains(line), "missing {line}\n{text}");
        }
    }

    #[test]
    fn source_ip_keeps_one_info_series_per_check() {
        let metrics = Metrics::new();
        let check = metrics.check_series("pod-ip", "source_ip", NetnsId::Pod);
        let round = |observed: &str, snat: Option<bool>| {
            let report = Report::SourceIp(SourceIpReport {
                expected: "198.18.2.10".parse().unwrap(),
                observed: observed.parse().unwrap(),
                snat_observed: snat,
            });
            let failure = Failure {
                reason: Reason::Masqueraded,
                detail: String::new(),
                report,
            };
            metrics.observe(
                &check,
                &Err(failure),
                Duration::from_millis(3),
                Transition::None,
            );
            metrics.render()
        };
        let text = round("198.18.1.4", Some(true));
        assert!(text.contains(r#"hybridprobe_source_ip_info{expected="198.18.2.10",netns="pod",observed="198.18.1.4",probe="pod-ip"} 1"#), "{text}");
        assert!(text.contains(r#"hybridprobe_source_ip_preserved{netns="pod",probe="pod-ip"} 0"#));
        assert!(text.contains(r#"hybridprobe_snat_observed{netns="pod",probe="pod-ip"} 1"#));
        let text = round("198.18.2.10", None);
        assert_eq!(
            text.matches("hybridprobe_source_ip_info{").count(),
            1,
            "{text}"
        );
        assert!(text.contains(r#"observed="198.18.2.10""#));
        assert!(text.contains(r#"hybridprobe_source_ip_preserved{netns="pod",probe="pod-ip"} 1"#));
        assert!(
            !text.contains("hybridprobe_snat_observed{"),
            "unknown evidence is absent"
        );
    }

    #[test]
    fn dns_pairs_get_their_own_series() {
        use crate::net::Transport;
        use crate::probe::dns::{DnsPair, DnsReport};
        let metrics = Metrics::new();
        let check = metrics.check_series("corp-db", "dns", NetnsId::Host);
        let pair = |server: &str, transport, failure, ms: &[u64]| DnsPair {
            server: server.into(),
            transport,
            failure,
            durations: ms.iter().map(|m| Duration::from_millis(*m)).collect(),
        };
        let failure = Failure {
            reason: Reason::Timeout,
            detail: "x".into(),
            report: Report::Dns(DnsReport {
                pairs: vec![
                    pair("system", Transport::Udp, None, &[2, 3]),
                    pair(
                        "198.19.10.1",
                        Transport::Tcp,
                        Some(Reason::Timeout),
                        &[1900],
                    ),
                ],
            }),
        };
        metrics.observe(
            &check,
            &Err(failure),
            Duration::from_secs(2),
            Transition::None,
        );
        let text = metrics.render();
        for line in [
            r#"hybridprobe_dns_success{netns="host",probe="corp-db",server="system",transport="udp"} 1"#,
            r#"hybridprobe_dns_success{netns="host",probe="corp-db",server="198.19.10.1",transport="tcp"} 0"#,
            r#"hybridprobe_dns_query_duration_seconds_count{netns="host",probe="corp-db",server="system",transport="udp"} 2"#,
            r#"hybridprobe_dns_query_duration_seconds_bucket{netns="host",probe="corp-db",server="198.19.10.1",transport="tcp",le="1"} 0"#,
            r#"hybridprobe_dns_query_duration_seconds_bucket{netns="host",probe="corp-db",server="198.19.10.1",transport="tcp",le="2.5"} 1"#,
            r#"hybridprobe_dns_query_duration_seconds_bucket{netns="host",probe="corp-db",server="198.19.10.1",transport="tcp",le="10"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line}\n{text}");
        }
    }

    fn round(report: Report) -> Result<Outcome, Failure> {
        Ok(Outcome {
            detail: String::new(),
            report,
        })
    }

    #[test]
    fn a_changed_route_replaces_its_info_series_and_no_route_removes_it() {
        use crate::probe::route::{Route, RouteReport};
        let metrics = Metrics::new();
        let check = &metrics.check_series("onprem-route", "route", NetnsId::Host);
        let via = |gateway: Option<&str>, dev: &str| {
            round(Report::Route(RouteReport {
                route: Some(Route {
                    destination: "198.19.0.0/16".parse().unwrap(),
                    gateway: gateway.map(|g| g.parse().unwrap()),
                    dev: dev.into(),
                    src: None,
                    dev_mtu: 1500,
                }),
            }))
        };
        let info = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| l.starts_with("hybridprobe_route_info{"))
                .map(str::to_owned)
                .collect()
        };
        metrics.observe(
            check,
            &via(Some("198.18.1.1"), "eth0"),
            Duration::ZERO,
            Transition::None,
        );
        metrics.observe(
            check,
            &via(Some("198.18.1.1"), "eth0"),
            Duration::ZERO,
            Transition::None,
        );
        assert_eq!(
            info(&metrics.render()),
            vec![
                r#"hybridprobe_route_info{dev="eth0",gateway="198.18.1.1",netns="host",probe="onprem-route"} 1"#
            ]
        );
        metrics.observe(check, &via(None, "vpn"), Duration::ZERO, Transition::None);
        assert_eq!(
            info(&metrics.render()),
            vec![
                r#"hybridprobe_route_info{dev="vpn",gateway="",netns="host",probe="onprem-route"} 1"#
            ]
        );
        let gone = Err(Failure {
            reason: Reason::Unreachable,
            detail: "no route".into(),
            report: Report::Route(RouteReport { route: None }),
        });
        metrics.observe(check, &gone, Duration::ZERO, Transition::None);
        assert!(info(&metrics.render()).is_empty());
    }

    #[test]
    fn path_changes_are_counted_from_the_second_round() {
        use crate::probe::traceroute::{Hop, TracerouteReport};
        let metrics = Metrics::new();
        let check = &metrics.check_series("trace", "traceroute", NetnsId::Pod);
        let path = |hops: &[&str]| {
            round(Report::Traceroute(TracerouteReport {
                hops: hops
                    .iter()
                    .map(|h| Some(Hop::Transit(h.parse().unwrap())))
                    .collect(),
                expected_hop_seen: Some(true),
            }))
        };
        let changes = |metrics: &Metrics| {
            let text = metrics.render();
            let line = r#"hybridprobe_traceroute_path_changes_total{netns="pod",probe="trace"}"#;
            text.lines()
                .find_map(|l| l.strip_prefix(line))
                .map(|v| v.trim().to_owned())
        };
        assert_eq!(changes(&metrics).as_deref(), Some("0"), "declared at zero");
        for hops in [
            &["198.18.2.1", "198.18.1.1"][..],
            &["198.18.2.1", "198.18.1.1"],
            &["198.18.2.1", "198.18.1.9"],
        ] {
            metrics.observe(check, &path(hops), Duration::ZERO, Transition::None);
        }
        assert_eq!(changes(&metrics).as_deref(), Some("1"));
        let text = metrics.render();
        assert!(
            text.contains(r#"hybridprobe_traceroute_hops{netns="pod",probe="trace"} 2"#),
            "{text}"
        );
        assert!(text
            .contains(r#"hybridprobe_traceroute_expected_hop_seen{netns="pod",probe="trace"} 1"#));
    }

    #[test]
    fn success_sets_the_last_success_timestamp() {
        let metrics = Metrics::new();
        let dc1 = metrics.check_series("dc1", "tcp", NetnsId::Host);
        let ok = Outcome {
            detail: "ok".into(),
            report: Report::None,
        };
        metrics.observe(
            &dc1,
            &Ok(ok),
            Duration::from_millis(2),
            Transition::Recovered {
                outage: Duration::from_secs(90),
            },
        );
        let text = metrics.render();
        let line = text
            .lines()
            .find(|l| l.starts_with("hybridprobe_probe_last_success_timestamp_seconds{"))
            .expect("timestamp series");
        let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(value > 1.7e9, "{line}");
        assert!(text.contains(r#"hybridprobe_outage_duration_seconds_bucket{kind="tcp",netns="host",probe="dc1",le="120"} 1"#));
    }

    #[test]
    fn forgetting_a_check_removes_only_its_series() {
        let metrics = Metrics::new();
        let gone = metrics.check_series("gone", "icmp", NetnsId::Pod);
        let kept = metrics.check_series("gone", "icmp", NetnsId::Host);
        let failure = || Failure {
            reason: Reason::Timeout,
            detail: String::new(),
            report: Report::Icmp(IcmpReport {
                sent: 1,
                received: 0,
                rtts: vec![],
            }),
        };
        metrics.observe(&gone, &Err(failure()), Duration::ZERO, Transition::None);
        metrics.observe(&kept, &Err(failure()), Duration::ZERO, Transition::None);
        metrics.forget_check("gone", NetnsId::Pod);
        let text = metrics.render();
        assert!(!text.contains(r#"netns="pod",probe="gone""#), "{text}");
        assert!(
            text.contains(r#"hybridprobe_probe_success{kind="icmp",netns="host",probe="gone"} 0"#)
        );
        assert!(text.contains(r#"hybridprobe_icmp_loss_ratio{netns="host",probe="gone"} 1"#));
    }
}
