//! The series a check costs, by kind: the table in docs/metrics.md held against what a check of
//! each kind renders, and the shipped configurations' average held against its bound.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Metrics;
use crate::config::Config;
use crate::netns::NetnsId;
use crate::probe::conntrack::{ConntrackReport, Events};
use crate::probe::dns::{DnsPair, DnsReport, DnsTransport};
use crate::probe::http::{HttpReport, Phase};
use crate::probe::icmp::IcmpReport;
use crate::probe::path_mtu::PathMtuReport;
use crate::probe::resolv_conf::ResolvConfReport;
use crate::probe::resolver::Family;
use crate::probe::route::{Route, RouteReport};
use crate::probe::source_ip::SourceIpReport;
use crate::probe::traceroute::{Hop, TracerouteReport};
use crate::probe::{CheckLabels, Measurements, Outcome, ProbeKind};
use crate::results::{Standing, TargetState, Transition};

const DOC: &str = include_str!("../../docs/metrics.md");
const SHIPPED: &[(&str, &str)] = &[
    ("base", include_str!("../../deploy/base/config.yaml")),
    (
        "azure-cni",
        include_str!("../../deploy/overlays/azure-cni/config.yaml"),
    ),
    (
        "kubenet",
        include_str!("../../deploy/overlays/kubenet/config.yaml"),
    ),
    (
        "no-host-privileges",
        include_str!("../../deploy/overlays/no-host-privileges/config.yaml"),
    ),
];

/// What multiplies a check's series beyond its kind: a dns check's servers × transports, an
/// http check's `https` URL.
#[derive(Clone, Copy)]
struct Shape {
    dns_pairs: usize,
    https: bool,
}

const PLAIN: Shape = Shape {
    dns_pairs: 1,
    https: false,
};

impl Shape {
    fn of(kind: &ProbeKind) -> Shape {
        match kind {
            ProbeKind::Dns(spec) => Shape {
                dns_pairs: spec.servers.len() * spec.transports.len(),
                ..PLAIN
            },
            ProbeKind::Http(spec) => Shape {
                https: spec.url.https,
                ..PLAIN
            },
            _ => PLAIN,
        }
    }
}

/// A passing round of `kind` with every optional series it can export present (an echo reply's
/// hop limit, the conntrack SNAT evidence), so the count is the most a check of the kind costs.
fn passing_round(kind: &str, shape: Shape) -> Measurements {
    let ms = Duration::from_millis;
    let addr = |a: &str| a.parse().unwrap();
    match kind {
        "tcp" => Measurements::Tcp(()),
        "icmp" => Measurements::Icmp(IcmpReport {
            sent: 3,
            received: 3,
            rtts: vec![ms(3), ms(4), ms(3)],
            hop_limit: Some(61),
        }),
        "dns" => Measurements::Dns(DnsReport {
            pairs: (0..shape.dns_pairs)
                .map(|i| DnsPair {
                    server: format!("198.19.10.{i}"),
                    transport: DnsTransport::Udp,
                    failure: None,
                    durations: vec![ms(2)],
                    followed: None,
                    mismatch: None,
                })
                .collect(),
        }),
        "source_ip" => Measurements::SourceIp(SourceIpReport {
            expected: addr("198.18.2.10"),
            observed: addr("198.18.2.10"),
            snat_observed: Some(false),
        }),
        "route" => Measurements::Route(RouteReport {
            route: Some(Route {
                destination: "198.19.0.0/16".parse().unwrap(),
                gateway: Some(addr("198.18.1.1")),
                dev: "eth0".into(),
                src: None,
                dev_mtu: 1500,
                mtu: None,
            }),
        }),
        "path_mtu" => Measurements::PathMtu(PathMtuReport {
            mtu: Some(1400),
            blackhole: false,
            tcp_mss: Some(1350),
        }),
        "traceroute" => Measurements::Traceroute(TracerouteReport {
            hops: vec![
                Some(Hop::Transit("198.18.254.2".parse().unwrap())),
                Some(Hop::Reached("198.19.10.1".parse().unwrap())),
            ],
            expected_hop_seen: Some(true),
        }),
        "http" => Measurements::Http(HttpReport {
            phases: Phase::ALL.iter().map(|p| (*p, ms(1))).collect(),
            status: Some(200),
            tls_version: shape.https.then(|| "TLS 1.3".into()),
            cert_expiry: shape.https.then_some(1_900_000_000),
            cert_problem: None,
        }),
        "resolv_conf" => Measurements::ResolvConf(ResolvConfReport {
            nameservers: 1,
            loopback: Vec::new(),
        }),
        "conntrack" => Measurements::Conntrack(ConntrackReport {
            entries: 100,
            max: 262_144,
            rise: Some(Events::default()),
        }),
        other => panic!("no passing round for kind {other}: add one"),
    }
}

/// One check of `kind` in `metrics`, after a passing round.
fn run_check(metrics: &Metrics, check: CheckLabels, kind: &'static str, shape: Shape) {
    let check = metrics.check_series(check, kind);
    let round = Ok(Outcome::new("ok", passing_round(kind, shape)));
    let standing = Standing {
        state: TargetState::Pass,
        consecutive_failures: 0,
    };
    metrics.observe(
        &check,
        &round,
        Duration::from_millis(4),
        Transition::None,
        standing,
    );
}

/// Samples in `text` that carry `probe="name"`.
fn series_of(text: &str, name: &str) -> usize {
    let label = format!("probe=\"{name}\"");
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains(&label))
        .count()
}

/// The rows of a table of docs/metrics.md's `section` whose first cell is code, by that cell.
fn table(section: &str) -> BTreeMap<String, Vec<String>> {
    let text = DOC
        .split(&format!("\n## {section}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("docs/metrics.md has no section \"{section}\""));
    text.lines()
        .take_while(|l| !l.starts_with("## "))
        .filter_map(|l| {
            let cells: Vec<String> = l.split('|').map(|c| c.trim().to_owned()).collect();
            let key = cells
                .get(1)?
                .strip_prefix('`')?
                .strip_suffix('`')?
                .to_owned();
            Some((key, cells[2..].to_vec()))
        })
        .collect()
}

/// The number a cell starts with, after an optional `+`.
fn number(cell: &str) -> usize {
    let digits: String = cell
        .trim_start_matches('+')
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no count in {cell:?}"))
}

#[test]
fn every_kind_exports_the_documented_series_per_check() {
    let documented = table("Series per check, by kind");
    let mut kinds = ProbeKind::NAMES.to_vec();
    kinds.sort_unstable();
    assert_eq!(
        documented.keys().collect::<Vec<_>>(),
        kinds,
        "one row per kind"
    );
    for kind in kinds {
        let row = &documented[kind];
        let base = number(&row[0]);
        // What the table's multiplier column applies to, and how many times.
        let (shape, times) = match kind {
            "dns" => (
                Shape {
                    dns_pairs: 4,
                    ..PLAIN
                },
                3,
            ),
            "http" => (
                Shape {
                    https: true,
                    ..PLAIN
                },
                1,
            ),
            _ => (PLAIN, 0),
        };
        let each = if times == 0 {
            assert!(
                row[1].is_empty(),
                "{kind}: nothing multiplies it, yet {row:?}"
            );
            0
        } else {
            number(&row[1])
        };
        for (shape, expected) in [(PLAIN, base), (shape, base + times * each)] {
            let metrics = Metrics::new(&[]);
            run_check(&metrics, labels("c", NetnsId::Pod, ""), kind, shape);
            let text = metrics.render();
            assert_eq!(series_of(&text, "c"), expected, "{kind}:\n{text}");
        }
    }
}

/// A check's labels, with `family` as given.
fn labels<'a>(probe: &'a str, netns: NetnsId, family: &'static str) -> CheckLabels<'a> {
    CheckLabels {
        probe,
        netns,
        family,
    }
}

/// A `family: both` probe is two checks in each namespace, each costing its kind's row, each
/// series carrying its family; a check that is not split writes no `family` at all.
#[test]
fn a_probe_split_by_family_costs_two_checks_each_labelled() {
    assert!(
        DOC.contains("A probe with `family: both` is two checks in each namespace"),
        "docs/metrics.md says what a split probe costs"
    );
    for kind in ProbeKind::NAMES {
        let metrics = Metrics::new(&[]);
        run_check(&metrics, labels("whole", NetnsId::Pod, ""), kind, PLAIN);
        for family in ["ipv4", "ipv6"] {
            run_check(&metrics, labels("split", NetnsId::Pod, family), kind, PLAIN);
        }
        let text = metrics.render();
        assert_eq!(
            series_of(&text, "split"),
            2 * series_of(&text, "whole"),
            "{kind}:\n{text}"
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let split = line.contains("probe=\"split\"");
            let labelled = line.contains("family=\"ipv4\"") || line.contains("family=\"ipv6\"");
            assert_eq!(split, labelled, "{kind}: {line}");
            assert!(!line.contains("family=\"\""), "{kind}: {line}");
        }
    }
}

#[test]
fn the_node_exports_the_documented_series_besides_its_checks() {
    let codes = ["a", "b", "c"];
    let metrics = Metrics::new(&codes);
    metrics.set_netns_available(NetnsId::Pod, true);
    metrics.set_netns_available(NetnsId::Host, true);
    let text = metrics.render();
    let samples = text.lines().filter(|l| !l.starts_with('#')).count();
    let per_node = table("Series per node");
    assert_eq!(
        samples,
        number(&per_node["node"][0]) + codes.len(),
        "{text}"
    );
}

#[test]
fn the_shipped_configs_cost_what_docs_say_and_stay_within_20_per_check() {
    let documented = table("Series in the shipped configurations");
    // no-host-privileges probes the pod namespace alone, where its DNS check weighs a sixth of
    // the checks: docs/metrics.md says why it stays above.
    let within_budget = ["base", "azure-cni", "kubenet"];
    for (name, text) in SHIPPED {
        let env = |var: &str| (var == "HOST_IP").then(|| "198.18.1.4".to_owned());
        let config = Config::parse(text, &env).unwrap_or_else(|e| panic!("{name}: {e}"));
        let metrics = Metrics::new(&[]);
        let mut checks = Vec::new();
        for probe in &config.probes {
            for (&netns, family) in probe
                .netns
                .iter()
                .flat_map(|n| probe.families().iter().map(move |f| (n, Family::label(*f))))
            {
                let check = format!("{}-{}-{family}", probe.name, netns.as_str());
                let kind = probe.kind.name();
                run_check(
                    &metrics,
                    labels(&check, netns, family),
                    kind,
                    Shape::of(&probe.kind),
                );
                checks.push(check);
            }
        }
        let rendered = metrics.render();
        let total: usize = checks.iter().map(|c| series_of(&rendered, c)).sum();
        let row = &documented[*name];
        assert_eq!(
            (checks.len(), total),
            (number(&row[0]), number(&row[1])),
            "{name}: checks and series"
        );
        let average = total as f64 / checks.len() as f64;
        assert_eq!(row[2], format!("{average:.1}"), "{name}: series per check");
        if within_budget.contains(name) {
            assert!(average <= 20.0, "{name}: {average:.1} series per check");
        }
    }
}
