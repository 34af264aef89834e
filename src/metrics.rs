//! The agent's Prometheus metrics: one `Metrics` value registered on one registry, passed down.
//!
//! Labels are bounded by construction: `probe` and `kind` come from config, `netns` and `result`
//! from closed enums. Addresses appear only on `_info` series, one per check, replaced when the
//! address changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use prometheus::{
    CounterVec, Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, Opts, Registry, TextEncoder,
};

use crate::netns::NetnsId;
use crate::probe::path_mtu::PathMtuReport;
use crate::probe::route::RouteReport;
use crate::probe::traceroute::TracerouteReport;
use crate::probe::{result_label, Failure, Outcome, Reason, Report};

/// Probe and query durations: fine steps where healthy paths land, and 5 s and 10 s where
/// retransmitted SYNs and conntrack-race DNS delays land.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Every series the agent exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    probe_success: GaugeVec,
    probe_duration: HistogramVec,
    probe_runs: CounterVec,
    probe_last_success: GaugeVec,
    probe_state_changes: CounterVec,
    icmp_loss_ratio: GaugeVec,
    icmp_rtt: HistogramVec,
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
}

/// Identifies one check's series.
#[derive(Debug, Clone, Copy)]
pub struct CheckLabels<'a> {
    pub probe: &'a str,
    pub kind: &'a str,
    pub netns: NetnsId,
}

impl CheckLabels<'_> {
    fn values(&self) -> [&str; 3] {
        [self.probe, self.kind, self.netns.as_str()]
    }
}

const CHECK: &[&str] = &["probe", "kind", "netns"];
const PROBE_NETNS: &[&str] = &["probe", "netns"];

/// Per check (probe and namespace): the last route's `_info` labels, so a changed route replaces
/// its series instead of adding one, and the last hop list, to count path changes.
#[derive(Default)]
struct Previous {
    route_labels: HashMap<(String, NetnsId), [String; 2]>,
    hops: HashMap<(String, NetnsId), TracerouteReport>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid gauge");
            registry
                .register(Box::new(g.clone()))
                .expect("unique gauge");
            g
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = CounterVec::new(Opts::new(name, help), labels).expect("valid counter");
            registry
                .register(Box::new(c.clone()))
                .expect("unique counter");
            c
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let opts = HistogramOpts::new(name, help).buckets(DURATION_BUCKETS.to_vec());
            let h = HistogramVec::new(opts, labels).expect("valid histogram");
            registry
                .register(Box::new(h.clone()))
                .expect("unique histogram");
            h
        };
        let build_info = gauge(
            "hybridprobe_build_info",
            "Always 1; the version label says which build runs.",
            &["version"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1.0);
        let node_healthy = Gauge::new(
            "hybridprobe_node_healthy",
            "1 when every check on this node passes, 0 otherwise or before the first round.",
        )
        .expect("valid gauge");
        registry
            .register(Box::new(node_healthy.clone()))
            .expect("unique gauge");
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
                "Times the check went from passing to failing or back.",
                CHECK,
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
            registry,
        }
    }

    /// Creates a check's series before its first round, so dashboards see it from the start.
    pub fn declare_check(&self, check: CheckLabels<'_>) {
        let labels = check.values();
        self.probe_success.with_label_values(&labels);
        self.probe_duration.with_label_values(&labels);
        self.probe_state_changes.with_label_values(&labels);
        for result in ["success"]
            .into_iter()
            .chain(Reason::ALL.iter().map(|r| r.as_str()))
        {
            let [probe, kind, netns] = labels;
            self.probe_runs
                .with_label_values(&[probe, kind, netns, result]);
        }
        if check.kind == "traceroute" {
            let [probe, _, netns] = labels;
            self.traceroute_path_changes
                .with_label_values(&[probe, netns]);
        }
    }

    /// Records one finished round.
    pub fn observe(
        &self,
        check: CheckLabels<'_>,
        result: &Result<Outcome, Failure>,
        took: Duration,
        state_changed: bool,
    ) {
        let labels = check.values();
        let [probe, kind, netns] = labels;
        self.probe_success
            .with_label_values(&labels)
            .set(if result.is_ok() { 1.0 } else { 0.0 });
        self.probe_duration
            .with_label_values(&labels)
            .observe(took.as_secs_f64());
        self.probe_runs
            .with_label_values(&[probe, kind, netns, result_label(result)])
            .inc();
        if result.is_ok() {
            self.probe_last_success
                .with_label_values(&labels)
                .set(unix_seconds(SystemTime::now()));
        }
        if state_changed {
            self.probe_state_changes.with_label_values(&labels).inc();
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
            Report::Route(route) => self.observe_route(probe, check.netns, route),
            Report::PathMtu(path) => self.observe_path_mtu(probe, netns, path),
            Report::Traceroute(trace) => self.observe_traceroute(probe, check.netns, trace),
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
    }

    pub fn set_node_healthy(&self, healthy: bool) {
        self.node_healthy.set(if healthy { 1.0 } else { 0.0 });
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
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

    const DC1: CheckLabels = CheckLabels {
        probe: "dc1",
        kind: "icmp",
        netns: NetnsId::Pod,
    };

    #[test]
    fn a_round_updates_the_generic_and_kind_series() {
        let metrics = Metrics::new();
        metrics.declare_check(DC1);
        let failure = Failure {
            reason: Reason::Timeout,
            detail: "lost".into(),
            report: Report::Icmp(IcmpReport {
                sent: 4,
                received: 1,
                rtts: vec![Duration::from_millis(3)],
            }),
        };
        metrics.observe(DC1, &Err(failure), Duration::from_millis(1500), true);
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
        ] {
            assert!(text.contains(line), "missing {line}\n{text}");
        }
        assert!(!text.contains("hybridprobe_probe_last_success_timestamp_seconds{"));
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
        let check = CheckLabels {
            probe: "onprem-route",
            kind: "route",
            netns: NetnsId::Host,
        };
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
            false,
        );
        metrics.observe(
            check,
            &via(Some("198.18.1.1"), "eth0"),
            Duration::ZERO,
            false,
        );
        assert_eq!(
            info(&metrics.render()),
            vec![
                r#"hybridprobe_route_info{dev="eth0",gateway="198.18.1.1",netns="host",probe="onprem-route"} 1"#
            ]
        );
        metrics.observe(check, &via(None, "vpn"), Duration::ZERO, false);
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
        metrics.observe(check, &gone, Duration::ZERO, false);
        assert!(info(&metrics.render()).is_empty());
    }

    #[test]
    fn path_changes_are_counted_from_the_second_round() {
        use crate::probe::traceroute::{Hop, TracerouteReport};
        let metrics = Metrics::new();
        let check = CheckLabels {
            probe: "trace",
            kind: "traceroute",
            netns: NetnsId::Pod,
        };
        metrics.declare_check(check);
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
            metrics.observe(check, &path(hops), Duration::ZERO, false);
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
        let ok = Outcome {
            detail: "ok".into(),
            report: Report::None,
        };
        metrics.observe(DC1, &Ok(ok), Duration::from_millis(2), false);
        let text = metrics.render();
        let line = text
            .lines()
            .find(|l| l.starts_with("hybridprobe_probe_last_success_timestamp_seconds{"))
            .expect("timestamp series");
        let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(value > 1.7e9, "{line}");
    }
}
