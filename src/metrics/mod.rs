//! The agent's Prometheus metrics: one `Metrics` value holding every family, passed down.
//!
//! Labels are bounded by construction: `probe` and `kind` come from config, `netns`, `family`
//! and `result` from closed enums. Addresses appear only on `_info` series, one per check,
//! replaced when the address changes. `family` is empty, and left out of the exposition,
//! except on the two checks of a `family: both` probe.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};

use prometheus::core::Collector;
use prometheus::proto::{MetricFamily, MetricType, Summary};
use prometheus::{
    Counter, CounterVec, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, Opts,
};

use crate::evidence::{self, CaptureOutcome};
use crate::netns::NetnsId;
use crate::probe::histogram::{self, Histograms};
use crate::probe::series::InfoSeries;
use crate::probe::{CheckLabels, Failure, Families, KindSeries, Outcome};
use crate::results::{Standing, TargetState, Transition};

mod exposition;
mod protobuf;
#[cfg(test)]
mod series_contract;
mod text;

pub use exposition::Exposition;

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
    probe_duration: GaugeVec,
    probe_runs: CounterVec,
    probe_last_success: GaugeVec,
    probe_state_changes: CounterVec,
    outage_duration: HistogramVec,
    probe_consecutive_failures: GaugeVec,
    probe_state: GaugeVec,
    /// Every probe kind's own families, registered by the kinds.
    kinds: Arc<KindSeries>,
    /// The address a check's host name resolved to in its last round, for every kind.
    resolved_address: Arc<InfoSeries>,
    /// Evidence captures by check and outcome, registered by the evidence module.
    evidence_captures: CounterVec,
    netns_available: GaugeVec,
    node_healthy: Gauge,
    /// One series per diagnosis code, always present: 1 while the diagnosis holds.
    diagnosis: GaugeVec,
    scheduler_lag: histogram::Histogram,
    config_reload_ok: Gauge,
    config_reload_time: Gauge,
    on_demand_runs: CounterVec,
}

/// How a request to run a check on demand ended: the `outcome` label, a closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDemandOutcome {
    /// The check ran and passed in every namespace it ran in.
    Success,
    /// The check ran and failed in at least one namespace.
    Failure,
    /// Refused: the check ran on demand too recently, or is running now.
    RateLimited,
    /// Refused: on-demand runs are off in the config.
    Disabled,
}

impl OnDemandOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            OnDemandOutcome::Success => "success",
            OnDemandOutcome::Failure => "failure",
            OnDemandOutcome::RateLimited => "rate_limited",
            OnDemandOutcome::Disabled => "disabled",
        }
    }
}

/// A metric family, typed so that a removed probe's series can be found and dropped.
enum Family {
    Gauges(GaugeVec),
    Counters(CounterVec),
    Histograms(Histograms),
    /// Summaries without quantiles: a count and a sum per series. The crate has no summary,
    /// so a histogram with no bucket but the implicit `+Inf` keeps them, rendered as one.
    Summaries(HistogramVec),
    Single(Box<dyn Collector>),
}

impl Family {
    fn collector(&self) -> &dyn Collector {
        match self {
            Family::Gauges(v) => v,
            Family::Counters(v) => v,
            Family::Histograms(v) => v,
            Family::Summaries(v) => v,
            Family::Single(c) => c.as_ref(),
        }
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut families = self.collector().collect();
        if let Family::Summaries(_) = self {
            families.iter_mut().for_each(as_summary);
        }
        families
    }

    /// The families with series, as the registry would gather them.
    fn present(&self) -> Vec<MetricFamily> {
        let mut families = self.collect();
        families.retain(|f| !f.get_metric().is_empty());
        families
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
                    Family::Summaries(v) => v.remove(&pairs),
                    Family::Single(_) => Ok(()),
                };
            }
        }
    }
}

/// A bucketless histogram's family as the summary it stands for: its count and sum.
fn as_summary(family: &mut MetricFamily) {
    family.set_field_type(MetricType::SUMMARY);
    for metric in family.mut_metric() {
        let histogram = metric.get_histogram();
        let mut summary = Summary::default();
        summary.set_sample_count(histogram.get_sample_count());
        summary.set_sample_sum(histogram.get_sample_sum());
        metric.set_summary(summary);
    }
}

/// One check's own series, resolved once so that recording a round hashes no labels.
pub struct CheckSeries {
    probe: String,
    kind: &'static str,
    netns: NetnsId,
    family: &'static str,
    success: Gauge,
    duration: Gauge,
    runs_success: Counter,
    /// Created on the first success: a timestamp of 0 would read as "passed in 1970".
    last_success: OnceLock<Gauge>,
    state_changes: Counter,
    outage: Histogram,
    consecutive_failures: Gauge,
    /// One per [`TargetState::ALL`], in that order: 1 for the check's state, 0 for the others.
    state: Vec<Gauge>,
}

impl CheckSeries {
    fn labels(&self) -> CheckLabels<'_> {
        CheckLabels {
            probe: &self.probe,
            netns: self.netns,
            family: self.family,
        }
    }
}

/// A check's labels in the generic series; `family` is empty, and so left out of the
/// exposition, unless the probe is split (`family: both`).
const CHECK: &[&str] = &["probe", "kind", "netns", "family"];

/// Collects the families as they are made, in exposition order.
#[derive(Default)]
struct Registrar(Vec<Family>);

impl Registrar {
    fn single(&mut self, name: &str, help: &str) -> Gauge {
        let g = Gauge::new(name, help).expect("valid gauge");
        self.0.push(Family::Single(Box::new(g.clone())));
        g
    }

    /// A summary family without quantiles: per series only `_count` and `_sum`, for durations
    /// whose totals are read but whose distribution is not.
    fn summaries(&mut self, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
        let opts = HistogramOpts::new(name, help).buckets(vec![f64::INFINITY]);
        let h = HistogramVec::new(opts, labels).expect("valid summary");
        self.0.push(Family::Summaries(h.clone()));
        h
    }
}

impl Families for Registrar {
    fn gauges(&mut self, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
        let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid gauge");
        self.0.push(Family::Gauges(g.clone()));
        g
    }

    fn counters(&mut self, name: &str, help: &str, labels: &[&str]) -> CounterVec {
        let c = CounterVec::new(Opts::new(name, help), labels).expect("valid counter");
        self.0.push(Family::Counters(c.clone()));
        c
    }

    fn histograms(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> Histograms {
        let h = Histograms::new(name, help, labels, buckets);
        self.0.push(Family::Histograms(h.clone()));
        h
    }
}

impl Metrics {
    /// Every series, with one `hybridprobe_diagnosis` per code in `diagnosis_codes`: the
    /// caller names the codes, so metrics knows no diagnosis engine.
    pub fn new(diagnosis_codes: &[&str]) -> Metrics {
        let mut r = Registrar::default();
        let build_info = r.gauges(
            "hybridprobe_build_info",
            "Always 1; the version label says which build runs.",
            &["version"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1.0);
        let node_healthy = r.single(
            "hybridprobe_node_healthy",
            "1 when every check on this node passes, 0 otherwise or before the first round.",
        );
        let diagnosis = r.gauges(
            "hybridprobe_diagnosis",
            "1 while the diagnosis `code` holds on this node, 0 otherwise; every code is always \
             present.",
            &["code"],
        );
        for code in diagnosis_codes {
            diagnosis.with_label_values(&[*code]).set(0.0);
        }
        // A family without labels, so that it has native buckets too; its one series is made
        // here, so it is exposed from the start as a lone histogram would be.
        let scheduler_lag = r
            .histograms(
                "hybridprobe_scheduler_lag_seconds",
                "How late rounds start after their scheduled time, over every check.",
                &[],
                LAG_BUCKETS,
            )
            .with_label_values(&[]);
        Metrics {
            probe_success: r.gauges(
                "hybridprobe_probe_success",
                "1 if the last round of the check passed, 0 if it failed.",
                CHECK,
            ),
            probe_duration: r.gauges(
                "hybridprobe_probe_duration_seconds",
                "How long the check's last round took.",
                CHECK,
            ),
            probe_runs: r.counters(
                "hybridprobe_probe_runs_total",
                "Rounds of the check, by result (success or the failure class).",
                &["probe", "kind", "netns", "family", "result"],
            ),
            probe_last_success: r.gauges(
                "hybridprobe_probe_last_success_timestamp_seconds",
                "Unix time of the check's last passing round.",
                CHECK,
            ),
            probe_state_changes: r.counters(
                "hybridprobe_probe_state_changes_total",
                "Times the check went from passing to failing or back (after flap damping).",
                CHECK,
            ),
            outage_duration: r.summaries(
                "hybridprobe_outage_duration_seconds",
                "How long each finished outage of the check lasted, observed at recovery.",
                CHECK,
            ),
            probe_consecutive_failures: r.gauges(
                "hybridprobe_probe_consecutive_failures",
                "Failed rounds in a row up to the check's latest; 0 when the latest passed.",
                CHECK,
            ),
            probe_state: r.gauges(
                "hybridprobe_probe_state",
                "1 for the check's state over its recent rounds (pass, warning, fail, or \
                 unknown before enough rounds ran), 0 for the other states.",
                &["probe", "kind", "netns", "family", "state"],
            ),
            kinds: Arc::new(KindSeries::register(&mut r)),
            resolved_address: Arc::new(InfoSeries::new(r.gauges(
                "hybridprobe_resolved_address_info",
                "Always 1; the address the check's host name resolved to in its last round, \
                 in the namespace it ran in. Absent when the target is an address or the name \
                 did not resolve.",
                &CheckLabels::names(&["address"]),
            ))),
            evidence_captures: evidence::register(&mut r),
            netns_available: r.gauges(
                "hybridprobe_netns_available",
                "1 if the agent can run probes in the namespace, 0 if it cannot enter it.",
                &["netns"],
            ),
            node_healthy,
            diagnosis,
            scheduler_lag,
            config_reload_ok: r.single(
                "hybridprobe_config_last_reload_successful",
                "1 if the config file last read is the one running, 0 if it was rejected.",
            ),
            config_reload_time: r.single(
                "hybridprobe_config_last_reload_success_timestamp_seconds",
                "Unix time of the last successful config load.",
            ),
            on_demand_runs: r.counters(
                "hybridprobe_on_demand_runs_total",
                "Requests to run a configured check now (POST /checks/<name>/run), by outcome.",
                &["probe", "outcome"],
            ),
            families: Arc::new(r.0),
            last_render_len: Arc::default(),
            exposition: Arc::default(),
        }
    }

    /// Creates a check's series before its first round, so dashboards see it from the start.
    pub fn check_series(&self, check: CheckLabels<'_>, kind: &'static str) -> CheckSeries {
        let [probe, netns, family] = check.values();
        let labels = [probe, kind, netns, family];
        self.kinds.declare(kind, check);
        let series = CheckSeries {
            probe: probe.to_owned(),
            kind,
            netns: check.netns,
            family: check.family,
            success: self.probe_success.with_label_values(&labels),
            duration: self.probe_duration.with_label_values(&labels),
            runs_success: self
                .probe_runs
                .with_label_values(&[probe, kind, netns, family, "success"]),
            last_success: OnceLock::new(),
            state_changes: self.probe_state_changes.with_label_values(&labels),
            outage: self.outage_duration.with_label_values(&labels),
            consecutive_failures: self.probe_consecutive_failures.with_label_values(&labels),
            state: TargetState::ALL
                .iter()
                .map(|state| {
                    let gauge = self.probe_state.with_label_values(&[
                        probe,
                        kind,
                        netns,
                        family,
                        state.as_str(),
                    ]);
                    gauge.set(f64::from(*state == TargetState::Unknown));
                    gauge
                })
                .collect(),
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
        standing: Standing,
    ) {
        let labels = check.labels();
        let [probe, netns, family] = labels.values();
        check
            .consecutive_failures
            .set(f64::from(standing.consecutive_failures));
        for (gauge, state) in check.state.iter().zip(TargetState::ALL) {
            gauge.set(f64::from(state == standing.state));
        }
        check.success.set(if result.is_ok() { 1.0 } else { 0.0 });
        check.duration.set(took.as_secs_f64());
        match result {
            Ok(_) => {
                check.runs_success.inc();
                let labels = [probe, check.kind, netns, family];
                check
                    .last_success
                    .get_or_init(|| self.probe_last_success.with_label_values(&labels))
                    .set(unix_seconds(SystemTime::now()));
            }
            Err(failure) => self
                .probe_runs
                .with_label_values(&[probe, check.kind, netns, family, failure.reason.as_str()])
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
        let (measurements, resolved) = match result {
            Ok(outcome) => (&outcome.measurements, outcome.resolved),
            Err(failure) => (&failure.measurements, failure.resolved),
        };
        self.kinds.observe(labels, measurements);
        self.resolved_address
            .set(labels, resolved.map(|ip| vec![ip.to_string()]));
        self.changed();
    }

    /// Drops every series of a check that no longer exists, so /metrics shows only the
    /// configured checks.
    pub fn forget_check(&self, check: CheckLabels<'_>) {
        let [probe, netns, family] = check.values();
        let labels = [("probe", probe), ("netns", netns), ("family", family)];
        for family in self.families.iter() {
            family.forget(&labels);
        }
        self.kinds.forget(check);
        self.resolved_address.forget(check);
        self.changed();
    }

    /// Counts an evidence capture asked for a check, by how it ended.
    pub fn count_capture(&self, check: CheckLabels<'_>, outcome: CaptureOutcome) {
        self.evidence_captures
            .with_label_values(&check.with(&[outcome.as_str()]))
            .inc();
        self.changed();
    }

    /// Counts a request to run `probe` on demand; `probe` must be a configured probe's name,
    /// so the label stays bounded.
    pub fn count_on_demand(&self, probe: &str, outcome: OnDemandOutcome) {
        self.on_demand_runs
            .with_label_values(&[probe, outcome.as_str()])
            .inc();
        self.changed();
    }

    /// Drops the on-demand series of a probe that is no longer configured.
    pub fn forget_on_demand(&self, probe: &str) {
        Family::Counters(self.on_demand_runs.clone()).forget(&[("probe", probe)]);
        self.changed();
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

    /// Set by every publish of the verdict, which sets every diagnosis code too. Only a change
    /// drops the shared rendering: the comparison costs one load, and a publish that changed
    /// no value (most of them) keeps the rendering scrapes made since the round before it.
    pub fn set_node_healthy(&self, healthy: bool) {
        let value = if healthy { 1.0 } else { 0.0 };
        if self.node_healthy.get() != value {
            self.node_healthy.set(value);
            self.changed();
        }
    }

    /// Like `set_node_healthy`: set by every publish, so only a change counts as one.
    pub fn set_diagnosis(&self, code: &str, active: bool) {
        let value = if active { 1.0 } else { 0.0 };
        let gauge = self.diagnosis.with_label_values(&[code]);
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
            text::encode(&family.present(), &mut out);
        }
        self.last_render_len.store(out.len(), Ordering::Relaxed);
        out
    }

    /// The protobuf exposition, with native histograms: the same families, series and values
    /// as the text. Rendered for each scrape rather than shared, since the scrapers that ask
    /// for it are a node's one Prometheus (or an HA pair) with native histograms turned on.
    pub fn render_protobuf(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for family in self.families.iter() {
            // The native buckets first: see `Histograms::natives`.
            let natives = match family {
                Family::Histograms(h) => Some(h.natives()),
                _ => None,
            };
            protobuf::encode(&family.present(), natives.as_ref(), &mut out);
        }
        out
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
    use crate::probe::source_ip::SourceIpReport;
    use crate::probe::{Measurements, Reason};

    const STANDING: Standing = Standing {
        state: TargetState::Pass,
        consecutive_failures: 0,
    };

    /// The labels of a check that is not split by family.
    fn whole(probe: &str, netns: NetnsId) -> CheckLabels<'_> {
        CheckLabels {
            probe,
            netns,
            family: "",
        }
    }

    /// The two checks of a `family: both` probe are series of their own, told apart by
    /// `family`, and each goes on its own.
    #[test]
    fn the_checks_of_a_split_probe_are_apart_by_family() {
        let metrics = Metrics::new(&[]);
        let half = |family| CheckLabels {
            family,
            ..whole("dual", NetnsId::Pod)
        };
        let v4 = metrics.check_series(half("ipv4"), "icmp");
        let v6 = metrics.check_series(half("ipv6"), "icmp");
        let echo = |received| {
            Measurements::Icmp(IcmpReport {
                sent: 2,
                received,
                rtts: vec![Duration::from_millis(3); received as usize],
                hop_limit: None,
            })
        };
        let passed = Ok(Outcome::new("2/2", echo(2)));
        let failed = Err(Failure {
            measurements: echo(0),
            ..Failure::new(Reason::Timeout, "0/2")
        });
        metrics.observe(&v4, &passed, Duration::ZERO, Transition::None, STANDING);
        metrics.observe(&v6, &failed, Duration::ZERO, Transition::Failed, STANDING);
        let text = metrics.render();
        for line in [
            r#"hybridprobe_probe_success{family="ipv4",kind="icmp",netns="pod",probe="dual"} 1"#,
            r#"hybridprobe_probe_success{family="ipv6",kind="icmp",netns="pod",probe="dual"} 0"#,
            r#"hybridprobe_probe_runs_total{family="ipv6",kind="icmp",netns="pod",probe="dual",result="timeout"} 1"#,
            r#"hybridprobe_icmp_loss_ratio{family="ipv4",netns="pod",probe="dual"} 0"#,
            r#"hybridprobe_icmp_loss_ratio{family="ipv6",netns="pod",probe="dual"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line}\n{text}");
        }
        metrics.forget_check(half("ipv6"));
        let text = metrics.render();
        assert!(!text.contains(r#"family="ipv6""#), "{text}");
        assert!(text.contains(
            r#"hybridprobe_probe_success{family="ipv4",kind="icmp",netns="pod",probe="dual"} 1"#
        ));
    }

    /// Dashboards and alerts need a series for every code from the first scrape on.
    #[test]
    fn every_diagnosis_code_is_exported_from_the_start() {
        let codes = ["route_mismatch", "pmtu_blackhole"];
        let metrics = Metrics::new(&codes);
        metrics.set_diagnosis("pmtu_blackhole", true);
        let text = metrics.render();
        for code in codes {
            let on = if code == "pmtu_blackhole" { 1 } else { 0 };
            let line = format!("hybridprobe_diagnosis{{code=\"{code}\"}} {on}");
            assert!(text.contains(&line), "missing {line}\n{text}");
        }
    }

    /// Every kind's rounds say the address a name resolved to, one series per check.
    #[test]
    fn the_resolved_address_is_one_series_replaced_on_change() {
        let metrics = Metrics::new(&[]);
        let ldap = metrics.check_series(whole("ldap", NetnsId::Host), "tcp");
        let round = |ip: Option<&str>| Outcome {
            resolved: ip.map(|ip| ip.parse().unwrap()),
            ..Outcome::new("connected", Measurements::None)
        };
        let series = |ip: &str| {
            format!("hybridprobe_resolved_address_info{{address=\"{ip}\",netns=\"host\",probe=\"ldap\"}} 1")
        };
        metrics.observe(
            &ldap,
            &Ok(round(Some("198.19.10.1"))),
            Duration::ZERO,
            Transition::None,
            STANDING,
        );
        let text = metrics.render();
        assert!(text.contains(&series("198.19.10.1")), "{text}");
        metrics.observe(
            &ldap,
            &Ok(round(Some("198.19.10.2"))),
            Duration::ZERO,
            Transition::None,
            STANDING,
        );
        let text = metrics.render();
        assert!(text.contains(&series("198.19.10.2")), "{text}");
        assert!(!text.contains(&series("198.19.10.1")), "{text}");
        let failed = Failure::new(Reason::ResolveFailed, "resolve ldap: nxdomain");
        metrics.observe(
            &ldap,
            &Err(failed),
            Duration::ZERO,
            Transition::Failed,
            STANDING,
        );
        assert!(!metrics.render().contains("address=\"198.19.10"));
        metrics.observe(
            &ldap,
            &Ok(round(Some("198.19.10.1"))),
            Duration::ZERO,
            Transition::None,
            STANDING,
        );
        metrics.forget_check(whole("ldap", NetnsId::Host));
        assert!(!metrics.render().contains("address=\"198.19.10"));
    }

    #[test]
    fn a_round_updates_the_generic_and_kind_series() {
        let metrics = Metrics::new(&[]);
        let dc1 = metrics.check_series(whole("dc1", NetnsId::Pod), "icmp");
        let failure = Failure {
            reason: Reason::Timeout,
            detail: "lost".into(),
            measurements: Measurements::Icmp(IcmpReport {
                sent: 4,
                received: 2,
                rtts: vec![Duration::from_millis(3), Duration::from_millis(5)],
                hop_limit: Some(61),
            }),
            resolved: None,
        };
        metrics.observe(
            &dc1,
            &Err(failure),
            Duration::from_millis(1500),
            Transition::Failed,
            STANDING,
        );
        let text = metrics.render();
        for line in [
            r#"hybridprobe_probe_success{kind="icmp",netns="pod",probe="dc1"} 0"#,
            r#"hybridprobe_probe_runs_total{kind="icmp",netns="pod",probe="dc1",result="timeout"} 1"#,
            r#"hybridprobe_probe_runs_total{kind="icmp",netns="pod",probe="dc1",result="success"} 0"#,
            r#"hybridprobe_probe_state_changes_total{kind="icmp",netns="pod",probe="dc1"} 1"#,
            r#"hybridprobe_probe_duration_seconds{kind="icmp",netns="pod",probe="dc1"} 1.5"#,
            r#"hybridprobe_icmp_loss_ratio{netns="pod",probe="dc1"} 0.5"#,
            r#"hybridprobe_icmp_rtt_seconds_count{netns="pod",probe="dc1"} 2"#,
            r#"hybridprobe_icmp_jitter_seconds{netns="pod",probe="dc1"} 0.002"#,
            r#"hybridprobe_icmp_reply_hop_limit{netns="pod",probe="dc1"} 61"#,
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
        let metrics = Metrics::new(&[]);
        let check = metrics.check_series(whole("dc1", NetnsId::Pod), "tcp");
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
            measurements: Measurements::None,
            resolved: None,
        });
        let changes: [(&dyn Fn(), &str); 7] = [
            (
                &|| metrics.observe(&check, &ok, Duration::ZERO, Transition::None, STANDING),
                r#"hybridprobe_probe_success{kind="tcp",netns="pod",probe="dc1"} 1"#,
            ),
            (
                &|| drop(metrics.check_series(whole("dc2", NetnsId::Host), "tcp")),
                r#"probe="dc2""#,
            ),
            (
                &|| metrics.forget_check(whole("dc2", NetnsId::Host)),
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
        let metrics = Metrics::new(&[]);
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
        let metrics = Metrics::new(&[]);
        let check = metrics.check_series(whole("pod-ip", NetnsId::Pod), "source_ip");
        let round = |observed: &str, snat: Option<bool>| {
            let measurements = Measurements::SourceIp(SourceIpReport {
                expected: "198.18.2.10".parse().unwrap(),
                observed: observed.parse().unwrap(),
                snat_observed: snat,
            });
            let failure = Failure {
                reason: Reason::Masqueraded,
                detail: String::new(),
                measurements,
                resolved: None,
            };
            metrics.observe(
                &check,
                &Err(failure),
                Duration::from_millis(3),
                Transition::None,
                STANDING,
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
        use crate::probe::dns::{DnsPair, DnsReport, DnsTransport};
        let metrics = Metrics::new(&[]);
        let check = metrics.check_series(whole("corp-db", NetnsId::Host), "dns");
        let pair = |server: &str, transport, failure, ms: &[u64]| DnsPair {
            server: server.into(),
            transport,
            failure,
            durations: ms.iter().map(|m| Duration::from_millis(*m)).collect(),
            followed: None,
            mismatch: None,
        };
        let failure = Failure {
            reason: Reason::Timeout,
            detail: "x".into(),
            measurements: Measurements::Dns(DnsReport {
                pairs: vec![
                    pair("system", DnsTransport::Udp, None, &[2, 3]),
                    pair(
                        "198.19.10.1",
                        DnsTransport::Tcp,
                        Some(Reason::Timeout),
                        &[1900],
                    ),
                ],
            }),
            resolved: None,
        };
        metrics.observe(
            &check,
            &Err(failure),
            Duration::from_secs(2),
            Transition::None,
            STANDING,
        );
        let text = metrics.render();
        for line in [
            r#"hybridprobe_dns_success{netns="host",probe="corp-db",server="system",transport="udp"} 1"#,
            r#"hybridprobe_dns_success{netns="host",probe="corp-db",server="198.19.10.1",transport="tcp"} 0"#,
            r#"hybridprobe_dns_query_duration_seconds_count{netns="host",probe="corp-db",server="system",transport="udp"} 2"#,
            r#"hybridprobe_dns_query_duration_seconds_bucket{netns="host",probe="corp-db",server="system",transport="udp",le="0.005"} 2"#,
            r#"hybridprobe_dns_query_duration_seconds_bucket{netns="host",probe="corp-db",server="198.19.10.1",transport="tcp",le="0.5"} 0"#,
            r#"hybridprobe_dns_query_duration_seconds_bucket{netns="host",probe="corp-db",server="198.19.10.1",transport="tcp",le="+Inf"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line}\n{text}");
        }
    }

    fn round(measurements: Measurements) -> Result<Outcome, Failure> {
        Ok(Outcome {
            detail: String::new(),
            measurements,
            resolved: None,
        })
    }

    #[test]
    fn a_changed_route_replaces_its_info_series_and_no_route_removes_it() {
        use crate::probe::route::{Route, RouteReport};
        let metrics = Metrics::new(&[]);
        let check = &metrics.check_series(whole("onprem-route", NetnsId::Host), "route");
        let via = |gateway: Option<&str>, dev: &str| {
            round(Measurements::Route(RouteReport {
                route: Some(Route {
                    destination: "198.19.0.0/16".parse().unwrap(),
                    gateway: gateway.map(|g| g.parse().unwrap()),
                    dev: dev.into(),
                    src: None,
                    dev_mtu: 1500,
                    mtu: None,
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
            STANDING,
        );
        metrics.observe(
            check,
            &via(Some("198.18.1.1"), "eth0"),
            Duration::ZERO,
            Transition::None,
            STANDING,
        );
        assert_eq!(
            info(&metrics.render()),
            vec![
                r#"hybridprobe_route_info{dev="eth0",gateway="198.18.1.1",netns="host",probe="onprem-route"} 1"#
            ]
        );
        metrics.observe(
            check,
            &via(None, "vpn"),
            Duration::ZERO,
            Transition::None,
            STANDING,
        );
        assert_eq!(
            info(&metrics.render()),
            vec![
                r#"hybridprobe_route_info{dev="vpn",gateway="",netns="host",probe="onprem-route"} 1"#
            ]
        );
        let gone = Err(Failure {
            reason: Reason::Unreachable,
            detail: "no route".into(),
            measurements: Measurements::Route(RouteReport { route: None }),
            resolved: None,
        });
        metrics.observe(check, &gone, Duration::ZERO, Transition::None, STANDING);
        assert!(info(&metrics.render()).is_empty());
    }

    #[test]
    fn path_changes_are_counted_from_the_second_round() {
        use crate::probe::traceroute::{Hop, TracerouteReport};
        let metrics = Metrics::new(&[]);
        let check = &metrics.check_series(whole("trace", NetnsId::Pod), "traceroute");
        let path = |hops: &[&str]| {
            round(Measurements::Traceroute(TracerouteReport {
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
            metrics.observe(
                check,
                &path(hops),
                Duration::ZERO,
                Transition::None,
                STANDING,
            );
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
        let metrics = Metrics::new(&[]);
        let dc1 = metrics.check_series(whole("dc1", NetnsId::Host), "tcp");
        let ok = Outcome {
            detail: "ok".into(),
            measurements: Measurements::None,
            resolved: None,
        };
        metrics.observe(
            &dc1,
            &Ok(ok),
            Duration::from_millis(2),
            Transition::Recovered {
                outage: Duration::from_secs(90),
            },
            STANDING,
        );
        let text = metrics.render();
        let line = text
            .lines()
            .find(|l| l.starts_with("hybridprobe_probe_last_success_timestamp_seconds{"))
            .expect("timestamp series");
        let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(value > 1.7e9, "{line}");
        for line in [
            "# TYPE hybridprobe_outage_duration_seconds summary",
            r#"hybridprobe_outage_duration_seconds_sum{kind="tcp",netns="host",probe="dc1"} 90"#,
            r#"hybridprobe_outage_duration_seconds_count{kind="tcp",netns="host",probe="dc1"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line}\n{text}");
        }
        assert!(!text.contains("hybridprobe_outage_duration_seconds_bucket"));
    }

    #[test]
    fn state_is_one_of_four_series_and_failures_count_in_a_row() {
        let metrics = Metrics::new(&[]);
        let check = metrics.check_series(whole("dc1", NetnsId::Pod), "tcp");
        let state = |text: &str, state: &str| {
            let line = format!(
                r#"hybridprobe_probe_state{{kind="tcp",netns="pod",probe="dc1",state="{state}"}} "#
            );
            let value = text.lines().find_map(|l| l.strip_prefix(line.as_str()));
            value
                .unwrap_or_else(|| panic!("no {line} in {text}"))
                .to_owned()
        };
        let text = metrics.render();
        assert_eq!(state(&text, "unknown"), "1", "before the first round");
        for other in ["pass", "warning", "fail"] {
            assert_eq!(state(&text, other), "0");
        }
        let failing = Standing {
            state: TargetState::Fail,
            consecutive_failures: 3,
        };
        let failed = Err(Failure::new(Reason::Timeout, ""));
        metrics.observe(&check, &failed, Duration::ZERO, Transition::None, failing);
        let text = metrics.render();
        assert_eq!(state(&text, "fail"), "1");
        assert_eq!(state(&text, "unknown"), "0");
        assert!(
            text.contains(
                r#"hybridprobe_probe_consecutive_failures{kind="tcp",netns="pod",probe="dc1"} 3"#
            ),
            "{text}"
        );
    }

    #[test]
    fn forgetting_a_check_removes_only_its_series() {
        let metrics = Metrics::new(&[]);
        let gone = metrics.check_series(whole("gone", NetnsId::Pod), "icmp");
        let kept = metrics.check_series(whole("gone", NetnsId::Host), "icmp");
        let failure = || Failure {
            reason: Reason::Timeout,
            detail: String::new(),
            measurements: Measurements::Icmp(IcmpReport {
                sent: 1,
                received: 0,
                rtts: vec![],
                hop_limit: None,
            }),
            resolved: None,
        };
        metrics.observe(
            &gone,
            &Err(failure()),
            Duration::ZERO,
            Transition::None,
            STANDING,
        );
        metrics.observe(
            &kept,
            &Err(failure()),
            Duration::ZERO,
            Transition::None,
            STANDING,
        );
        metrics.forget_check(whole("gone", NetnsId::Pod));
        let text = metrics.render();
        assert!(!text.contains(r#"netns="pod",probe="gone""#), "{text}");
        assert!(
            text.contains(r#"hybridprobe_probe_success{kind="icmp",netns="host",probe="gone"} 0"#)
        );
        assert!(text.contains(r#"hybridprobe_icmp_loss_ratio{netns="host",probe="gone"} 1"#));
    }
}
