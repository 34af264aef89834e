//! The agent's Prometheus metrics: one `Metrics` value registered on one registry, passed down.
//!
//! Labels are bounded by construction: `probe` and `kind` come from config, `netns` and `result`
//! from closed enums. Addresses never become label values here.

use std::time::{Duration, SystemTime};

use prometheus::{
    CounterVec, Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, Opts, Registry, TextEncoder,
};

use crate::netns::NetnsId;
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
    dns_success: GaugeVec,
    dns_query_duration: HistogramVec,
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
/// `server` is `system` or an address from config, so it stays bounded.
const DNS_PAIR: &[&str] = &["probe", "netns", "server", "transport"];

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
        if let Report::Icmp(icmp) = report {
            self.icmp_loss_ratio
                .with_label_values(&[probe, netns])
                .set(icmp.loss_ratio());
            let rtt = self.icmp_rtt.with_label_values(&[probe, netns]);
            for sample in &icmp.rtts {
                rtt.observe(sample.as_secs_f64());
            }
        }
        if let Report::Dns(dns) = report {
            for pair in &dns.pairs {
                let labels = [probe, netns, pair.server.as_str(), pair.transport.as_str()];
                self.dns_success
                    .with_label_values(&labels)
                    .set(if pair.ok { 1.0 } else { 0.0 });
                let duration = self.dns_query_duration.with_label_values(&labels);
                for took in &pair.durations {
                    duration.observe(took.as_secs_f64());
                }
            }
        }
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

    #[test]
    fn dns_pairs_get_their_own_series() {
        use crate::probe::dns::{DnsPair, DnsReport, Transport};
        let metrics = Metrics::new();
        let labels = CheckLabels {
            probe: "corp-db",
            kind: "dns",
            netns: NetnsId::Host,
        };
        let pair = |server: &str, transport, ok, ms: &[u64]| DnsPair {
            server: server.into(),
            transport,
            ok,
            durations: ms.iter().map(|m| Duration::from_millis(*m)).collect(),
        };
        let failure = Failure {
            reason: Reason::Timeout,
            detail: "x".into(),
            report: Report::Dns(DnsReport {
                pairs: vec![
                    pair("system", Transport::Udp, true, &[2, 3]),
                    pair("198.19.10.1", Transport::Tcp, false, &[1900]),
                ],
            }),
        };
        metrics.observe(labels, &Err(failure), Duration::from_secs(2), false);
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
