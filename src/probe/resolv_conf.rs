//! The `resolv_conf` probe: does the namespace's resolv.conf send queries to a loopback stub?
//!
//! A nameserver in 127.0.0.0/8 or `::1` works on the node that runs the stub (systemd-resolved
//! on 127.0.0.53) and nowhere else: copied into a pod, or into CoreDNS's upstream through the
//! kubelet's `--resolv-conf`, the queries loop back into the asker (CoreDNS's `loop` plugin then
//! stops the server). The file is only read; nothing is sent.

use std::net::IpAddr;
use std::time::Duration;

use prometheus::GaugeVec;
use serde::Deserialize;

use super::dns::ResolvConf;
use super::{
    conclude, CheckLabels, Failure, Families, Measurements, Outcome, Probe, Reason, Target,
};
use crate::netns::NetnsContext;

/// No settings: the file is the one the namespace's `resolv_conf` names.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolvConfSpec {}

/// What one read of the file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvConfReport {
    pub nameservers: usize,
    /// The loopback nameservers, or `127.0.0.1` when the file names none (glibc's fallback).
    pub loopback: Vec<IpAddr>,
}

pub struct ResolvConfSeries {
    nameservers: GaugeVec,
    loopback: GaugeVec,
}

impl ResolvConfReport {
    pub fn of(conf: &ResolvConf) -> ResolvConfReport {
        let loopback = if conf.nameservers.is_empty() {
            vec![IpAddr::from([127, 0, 0, 1])]
        } else {
            conf.nameservers
                .iter()
                .copied()
                .filter(IpAddr::is_loopback)
                .collect()
        };
        ResolvConfReport {
            nameservers: conf.nameservers.len(),
            loopback,
        }
    }

    /// `nameserver 127.0.0.53 is a loopback stub`, or why the file is fine.
    fn judge(&self, path: &str) -> (Option<Reason>, String) {
        if self.nameservers == 0 {
            return (
                Some(Reason::LoopbackResolver),
                format!("{path} names no nameserver, so glibc asks 127.0.0.1"),
            );
        }
        if self.loopback.is_empty() {
            return (None, format!("{path}: {} nameservers", self.nameservers));
        }
        let stubs: Vec<String> = self.loopback.iter().map(ToString::to_string).collect();
        (
            Some(Reason::LoopbackResolver),
            format!(
                "{path} names the loopback nameserver {} ({} of {}): a node-local stub, \
                 unreachable from pods",
                stubs.join(", "),
                self.loopback.len(),
                self.nameservers
            ),
        )
    }
}

impl Probe for ResolvConfSpec {
    type Measurements = ResolvConfReport;
    type Series = ResolvConfSeries;

    fn register(families: &mut dyn Families) -> ResolvConfSeries {
        ResolvConfSeries {
            nameservers: families.gauges(
                "hybridprobe_resolv_conf_nameservers",
                "Nameservers the namespace's resolv.conf names.",
                &CheckLabels::names(&[]),
            ),
            loopback: families.gauges(
                "hybridprobe_resolv_conf_loopback_nameservers",
                "Loopback nameservers (127.0.0.0/8, ::1) in the namespace's resolv.conf; 1 when \
                 it names none, since glibc then asks 127.0.0.1.",
                &CheckLabels::names(&[]),
            ),
        }
    }

    fn describe(&self) -> String {
        "resolv.conf nameservers".to_owned()
    }

    async fn run(&self, ctx: &NetnsContext, _budget: Duration) -> Result<Outcome, Failure> {
        let conf = ResolvConf::read(&ctx.resolv_conf)
            .await
            .map_err(|e| Failure::new(Reason::Error, e))?;
        let report = ResolvConfReport::of(&conf);
        let (failure, detail) = report.judge(&ctx.resolv_conf.display().to_string());
        conclude(failure, detail, Measurements::ResolvConf(report))
    }

    fn observe(series: &ResolvConfSeries, check: CheckLabels<'_>, measured: &ResolvConfReport) {
        let labels = check.values();
        series
            .nameservers
            .with_label_values(&labels)
            .set(measured.nameservers as f64);
        series
            .loopback
            .with_label_values(&labels)
            .set(measured.loopback.len() as f64);
    }

    /// Reading a local file reaches nothing.
    fn targets(&self, _failure: Option<&Failure>) -> Vec<Target> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(text: &str) -> (Option<Reason>, String) {
        ResolvConfReport::of(&ResolvConf::parse(text)).judge("/etc/resolv.conf")
    }

    #[test]
    fn a_cluster_resolver_passes() {
        let (failure, detail) = judged("search corp.example\nnameserver 10.0.0.10\n");
        assert_eq!(failure, None);
        assert_eq!(detail, "/etc/resolv.conf: 1 nameservers");
    }

    #[test]
    fn the_systemd_resolved_stub_fails() {
        let (failure, detail) = judged("nameserver 127.0.0.53\noptions edns0 trust-ad\n");
        assert_eq!(failure, Some(Reason::LoopbackResolver));
        assert!(
            detail.contains("loopback nameserver 127.0.0.53 (1 of 1)"),
            "{detail}"
        );
    }

    #[test]
    fn any_loopback_among_others_fails_and_is_named() {
        let text = "nameserver 10.0.0.10\nnameserver ::1\nnameserver 127.1.2.3\n";
        let report = ResolvConfReport::of(&ResolvConf::parse(text));
        assert_eq!(report.nameservers, 3);
        assert_eq!(
            report.loopback,
            vec![
                "::1".parse::<IpAddr>().unwrap(),
                "127.1.2.3".parse().unwrap()
            ]
        );
        let (failure, detail) = report.judge("/etc/resolv.conf");
        assert_eq!(failure, Some(Reason::LoopbackResolver));
        assert!(detail.contains("::1, 127.1.2.3 (2 of 3)"), "{detail}");
    }

    #[test]
    fn no_nameserver_is_glibcs_loopback_fallback() {
        let (failure, detail) = judged("search corp.example\n# nameserver 10.0.0.10\n");
        assert_eq!(failure, Some(Reason::LoopbackResolver));
        assert!(detail.contains("names no nameserver"), "{detail}");
    }

    #[test]
    fn the_spec_takes_no_keys() {
        assert!(serde_norway::from_str::<ResolvConfSpec>("{}").is_ok());
        let err = serde_norway::from_str::<ResolvConfSpec>("{path: /x}").unwrap_err();
        assert!(err.to_string().contains("unknown field `path`"), "{err}");
    }
}
