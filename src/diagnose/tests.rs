//! Table-driven tests: result sets, as the lab's faults and their mixtures produce them, and the
//! diagnoses each must yield.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::config::{Config, ProbeConfig};
use crate::probe::dns::{DnsPair, DnsReport};
use crate::probe::http::{CertProblem, HttpReport, Phase};
use crate::probe::path_mtu::PathMtuReport;
use crate::probe::route::{Route, RouteReport};
use crate::probe::source_ip::SourceIpReport;
use crate::probe::traceroute::{Hop, TracerouteReport};
use crate::probe::{Failure, Outcome};
use crate::results::{CheckKey, Damping, History, Results, Sample};

mod degraded;
mod family;

use NetnsId::{Host, Pod};

/// The lab's probes: every on-prem target from both namespaces, the pod's resolver next to the
/// on-prem DNS, source-address policies, the path.
const CONFIG: &str = r#"
netns: { pod: {}, host: { path: /nonexistent } }
probes:
  - { name: ldap, tcp: { target: "198.19.10.1:389" } }
  - { name: ping, icmp: { target: 198.19.10.1 } }
  - { name: gw, icmp: { target: gateway } }
  - name: corp-db
    dns: { query: db.corp.example, servers: [system, 198.19.10.1], transport: [udp, tcp] }
  - name: pod-dns
    netns: [pod]
    dns: { query: db.corp.example, servers: ["198.19.10.53"] }
  - { name: pod-ip, source_ip: { stun: "198.19.10.1:3478" } }
  - name: kubenet
    netns: [pod]
    source_ip: { stun: "198.19.10.1:3478", masquerade: expected, to: 198.18.1.4 }
  - { name: mtu, path_mtu: { target: 198.19.10.1, min: 1400 } }
  - { name: route, netns: [host], route: { destination: 198.19.0.0/16, via: 198.18.1.1 } }
  - { name: trace, traceroute: { target: 198.19.10.1, expect_hop: 198.18.254.2 } }
  - { name: mgmt, expect: blocked, tcp: { target: "198.19.20.1:22" } }
"#;

/// Probes beside [`CONFIG`]'s, for the cases that name them: a host name, HTTPS and HTTP.
const WEB: &str = r#"
  - { name: app, tcp: { target: "app.corp.example:8443" } }
  - { name: api, http: { url: "https://api.corp.example/healthz" } }
  - { name: shop, http: { url: "http://198.19.10.1/healthz", body_regex: ok } }
"#;

/// `path_mtu` checks of names, whose family only the round knows, and of the IPv6 gateway.
const NAMED_MTU: &str = r#"
  - { name: db-mtu, path_mtu: { target: db.corp.example } }
  - { name: app-mtu, netns: [pod], path_mtu: { target: app.corp.example } }
  - { name: gw-mtu6, netns: [pod], path_mtu: { target: gateway, family: ipv6 } }
"#;

/// [`CONFIG`]'s probes and `extra` ones.
fn probes(extra: &str) -> Vec<Arc<ProbeConfig>> {
    Config::parse(&format!("{CONFIG}{extra}"), &|_| None)
        .unwrap()
        .probes
}

fn fail(reason: Reason) -> Failure {
    Failure::new(reason, format!("failed: {reason}"))
}

fn timeout() -> Failure {
    fail(Reason::Timeout)
}

/// A round whose host name resolved to `address`, then failed with `reason`.
fn resolved(reason: Reason, address: &str) -> Failure {
    Failure {
        resolved: Some(ip(address)),
        ..fail(reason)
    }
}

/// An `http` round that failed with `reason`, having connected when `connected`.
fn http(reason: Reason, connected: bool, status: Option<u16>) -> Failure {
    let mut report = HttpReport {
        status,
        ..HttpReport::default()
    };
    if connected {
        report
            .phases
            .push((Phase::Connect, Duration::from_millis(2)));
    }
    Failure {
        measurements: Measurements::Http(report),
        ..fail(reason)
    }
}

/// A refused TLS handshake and what was wrong with the certificate.
fn tls(reason: Reason, problem: CertProblem) -> Failure {
    let mut failure = http(reason, true, None);
    if let Measurements::Http(report) = &mut failure.measurements {
        report.phases.push((Phase::Tls, Duration::from_millis(3)));
        report.cert_problem = Some(Box::new(problem));
    }
    failure
}

fn expired() -> CertProblem {
    CertProblem::Expired {
        subject: "CN=api.corp.example".into(),
        not_after: 1_609_459_200,
    }
}

/// A DNS round: (server, transport, failure) per pair; the round fails with the first failure.
fn dns(pairs: &[(&str, DnsTransport, Option<Reason>)]) -> Failure {
    let reason = pairs
        .iter()
        .find_map(|(_, _, f)| *f)
        .expect("a failing pair");
    Failure {
        reason,
        detail: "dns".into(),
        measurements: Measurements::Dns(DnsReport {
            pairs: pairs
                .iter()
                .map(|(server, transport, failure)| DnsPair {
                    server: (*server).into(),
                    transport: *transport,
                    failure: *failure,
                    durations: Vec::new(),
                    followed: None,
                    mismatch: (*failure == MISMATCH).then(|| WRONG.to_owned()),
                })
                .collect(),
        }),
        resolved: None,
    }
}

/// A UDP-only round whose truncated answer was followed over TCP, and the TCP leg failed.
fn followed(server: &str, tcp: Reason) -> Failure {
    Failure {
        reason: tcp,
        detail: "dns".into(),
        measurements: Measurements::Dns(DnsReport {
            pairs: vec![DnsPair {
                server: server.into(),
                transport: UDP,
                failure: Some(tcp),
                durations: Vec::new(),
                followed: Some(crate::probe::dns::Followed {
                    udp: None,
                    tcp: Some(tcp),
                }),
                mismatch: None,
            }],
        }),
        resolved: None,
    }
}

const UDP: DnsTransport = DnsTransport::Udp;
const TCP: DnsTransport = DnsTransport::Tcp;
const ONPREM_DNS: &str = "198.19.10.1";
/// A `mismatch` pair's answer, as the dns kind reports it.
const WRONG: &str = "A 198.18.99.7 (198.18.99.7 not within 198.19.0.0/16)";
const MISMATCH: Option<Reason> = Some(Reason::Mismatch);

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn source(reason: Reason, expected: &str, observed: &str, snat: Option<bool>) -> Failure {
    Failure {
        reason,
        detail: "source".into(),
        measurements: Measurements::SourceIp(SourceIpReport {
            expected: ip(expected),
            observed: ip(observed),
            snat_observed: snat,
        }),
        resolved: None,
    }
}

fn path_mtu(reason: Reason, mtu: Option<u16>, blackhole: bool) -> Failure {
    Failure {
        reason,
        detail: "path mtu".into(),
        measurements: Measurements::PathMtu(PathMtuReport {
            mtu,
            blackhole,
            tcp_mss: None,
        }),
        resolved: None,
    }
}

/// A black hole over 1400 bytes, found by a round whose name resolved to `address`.
fn blackhole_at(address: Option<&str>) -> Failure {
    Failure {
        resolved: address.map(ip),
        ..path_mtu(Reason::Blackhole, Some(1400), true)
    }
}

fn trace(reason: Reason, reached: bool) -> Failure {
    let last = if reached {
        Hop::Reached("198.19.10.1".parse().unwrap())
    } else {
        Hop::Transit("198.18.1.1".parse().unwrap())
    };
    Failure {
        reason,
        detail: "1 198.18.1.1, 2 198.18.3.1, 3 198.19.10.1 (expected a hop in 198.18.254.2/32)"
            .into(),
        measurements: Measurements::Traceroute(TracerouteReport {
            hops: vec![
                Some(Hop::Transit("198.18.1.1".parse().unwrap())),
                Some(last),
            ],
            expected_hop_seen: Some(false),
        }),
        resolved: None,
    }
}

fn wrong_route() -> Failure {
    Failure {
        reason: Reason::Mismatch,
        detail: "198.19.0.0/16 via 198.18.1.99 dev eth0 (expected via 198.18.1.1)".into(),
        measurements: Measurements::Route(RouteReport {
            route: Some(Route {
                destination: "198.19.0.0/16".parse().unwrap(),
                gateway: Some(ip("198.18.1.99")),
                dev: "eth0".into(),
                src: None,
                dev_mtu: 1500,
                mtu: None,
            }),
        }),
        resolved: None,
    }
}

/// What a dead tunnel does to every check that crosses it, in `netns`.
fn tunnel_down(netns: NetnsId) -> Vec<(&'static str, NetnsId, Failure)> {
    let mut failing = vec![
        ("ldap", netns, timeout()),
        ("ping", netns, timeout()),
        ("pod-ip", netns, timeout()),
        ("mtu", netns, path_mtu(Reason::Timeout, None, false)),
        ("trace", netns, trace(Reason::Mismatch, false)),
    ];
    let system = if netns == Pod {
        Reason::Servfail
    } else {
        Reason::Timeout
    };
    failing.push((
        "corp-db",
        netns,
        dns(&[
            ("system", UDP, Some(system)),
            ("system", TCP, Some(system)),
            (ONPREM_DNS, UDP, Some(Reason::Timeout)),
            (ONPREM_DNS, TCP, Some(Reason::Timeout)),
        ]),
    ));
    if netns == Pod {
        failing.push(("kubenet", Pod, timeout()));
        failing.push((
            "pod-dns",
            Pod,
            dns(&[("198.19.10.53", UDP, Some(Reason::Timeout))]),
        ));
    }
    failing
}

/// What a pod-only block does: everything the pod sends across fails; its resolver (the cluster
/// DNS, which forwards from the node's address) still answers.
fn pod_blocked() -> Vec<(&'static str, NetnsId, Failure)> {
    tunnel_down(Pod)
        .into_iter()
        .map(|(probe, netns, failure)| match probe {
            "corp-db" => (
                probe,
                netns,
                dns(&[
                    ("system", UDP, None),
                    ("system", TCP, None),
                    (ONPREM_DNS, UDP, Some(Reason::Timeout)),
                    (ONPREM_DNS, TCP, Some(Reason::Timeout)),
                ]),
            ),
            _ => (probe, netns, failure),
        })
        .collect()
}

/// What `f` makes fail, from the pod and from the host.
fn both(
    f: fn(NetnsId) -> Vec<(&'static str, NetnsId, Failure)>,
) -> Vec<(&'static str, NetnsId, Failure)> {
    let mut all = f(Pod);
    all.extend(f(Host));
    all
}

#[derive(Default)]
struct Case {
    name: &'static str,
    /// Checks not listed pass. A check of a probe split by `family: both` is `probe/ipv4` or
    /// `probe/ipv6`.
    failing: Vec<(&'static str, NetnsId, Failure)>,
    /// No check has finished a round.
    pending: bool,
    host_unavailable: bool,
    config_error: Option<&'static str>,
    /// Probes beside [`CONFIG`]'s (passing unless listed in `failing`).
    extra: &'static str,
    /// The recent rounds of the checks listed, oldest first; the others have none.
    history: Vec<(&'static str, NetnsId, History)>,
    want: Vec<Code>,
    /// The first diagnosis's summary, where the case checks it.
    summary: Option<&'static str>,
}

fn run(case: &Case) -> Vec<Diagnosis> {
    let probes = probes(case.extra);
    let none = History::default();
    let checks: Vec<(String, Observed)> = probes
        .iter()
        .flat_map(|probe| probe.netns.iter().map(move |netns| (probe, *netns)))
        .flat_map(|(probe, netns)| probe.families().iter().map(move |f| (probe, netns, *f)))
        .map(|(probe, netns, split)| {
            let name = match split {
                Some(family) => format!("{}/{family}", probe.name),
                None => probe.name.clone(),
            };
            let failing = case
                .failing
                .iter()
                .find(|(listed, ns, _)| *listed == name && *ns == netns);
            let seen = match failing {
                _ if case.pending => Seen::Pending,
                Some((_, _, failure)) => Seen::Failing(failure),
                None => Seen::Passing,
            };
            let history = case
                .history
                .iter()
                .find(|(listed, ns, _)| *listed == name && *ns == netns)
                .map_or(&none, |(_, _, rounds)| rounds);
            let observed = Observed {
                probe,
                netns,
                split,
                seen,
                history,
            };
            (name, observed)
        })
        .collect();
    let listed = case.failing.iter().map(|(name, netns, _)| (name, netns));
    for (name, netns) in listed.chain(case.history.iter().map(|(name, netns, _)| (name, netns))) {
        assert!(
            checks.iter().any(|(c, o)| c == name && o.netns == *netns),
            "{}: no check {name}/{netns}",
            case.name
        );
    }
    let checks: Vec<Observed> = checks.into_iter().map(|(_, observed)| observed).collect();
    let namespaces = [
        NetnsStatus {
            id: Pod,
            unavailable: None,
        },
        NetnsStatus {
            id: Host,
            unavailable: case
                .host_unavailable
                .then(|| "cannot open /nonexistent".to_owned()),
        },
    ];
    diagnose(&checks, &namespaces, case.config_error)
}

fn cases() -> Vec<Case> {
    let everywhere = |probe: &'static str, failure: Failure| {
        vec![(probe, Pod, failure.clone()), (probe, Host, failure)]
    };
    vec![
        Case {
            name: "healthy",
            ..Case::default()
        },
        Case {
            name: "nothing has run yet",
            pending: true,
            ..Case::default()
        },
        Case {
            name: "tunnel down",
            failing: both(tunnel_down),
            want: vec![Code::OnpremUnreachable],
            summary: Some(
                "no on-prem target answers from pod and host: 198.19.10.1:389 (ldap), \
                 198.19.10.1 (ping, corp-db, mtu, trace), 198.19.10.53 (pod-dns), \
                 198.19.10.1:3478 (pod-ip, kubenet)",
            ),
            ..Case::default()
        },
        Case {
            name: "tunnel down, host namespace unavailable",
            failing: {
                let mut failing = tunnel_down(Pod);
                for (probe, netns, _) in tunnel_down(Host) {
                    failing.push((probe, netns, fail(Reason::NetnsUnavailable)));
                }
                failing
            },
            host_unavailable: true,
            want: vec![Code::HostNetnsUnavailable, Code::OnpremUnreachable],
            ..Case::default()
        },
        Case {
            name: "a wrong route explains the dead tunnel",
            failing: {
                let mut failing = both(tunnel_down);
                failing.push(("route", Host, wrong_route()));
                failing
            },
            want: vec![Code::RouteMismatch],
            ..Case::default()
        },
        Case {
            name: "a wrong route while traffic still passes",
            failing: vec![("route", Host, wrong_route())],
            want: vec![Code::RouteMismatch],
            summary: Some(
                "route (host): 198.19.0.0/16 via 198.18.1.99 dev eth0 (expected via 198.18.1.1)",
            ),
            ..Case::default()
        },
        Case {
            name: "no route at all",
            failing: vec![("route", Host, fail(Reason::Unreachable))],
            want: vec![Code::RouteMismatch],
            ..Case::default()
        },
        Case {
            name: "traceroute reaches the target without the expected hop",
            failing: vec![("trace", Pod, trace(Reason::Mismatch, true))],
            want: vec![Code::RouteMismatch],
            ..Case::default()
        },
        Case {
            name: "a silent hop may have been the expected one",
            failing: vec![("trace", Pod, {
                let mut failure = trace(Reason::Mismatch, true);
                if let Measurements::Traceroute(report) = &mut failure.measurements {
                    report.hops.insert(0, None);
                }
                failure
            })],
            ..Case::default()
        },
        Case {
            name: "pod masqueraded",
            failing: vec![(
                "pod-ip",
                Pod,
                source(Reason::Masqueraded, "198.18.2.10", "198.18.1.4", Some(true)),
            )],
            want: vec![Code::PodIpMasqueraded],
            summary: Some(
                "on-prem sees 198.18.1.4 instead of the pod's own 198.18.2.10; this node SNAT'd the \
                 flow (pod-ip)",
            ),
            ..Case::default()
        },
        Case {
            name: "masquerade explains the pod-only failures",
            failing: {
                let mut failing = pod_blocked();
                failing.retain(|(probe, _, _)| *probe != "pod-ip");
                failing.push((
                    "pod-ip",
                    Pod,
                    source(Reason::Masqueraded, "198.18.2.10", "198.18.1.4", None),
                ));
                failing
            },
            want: vec![Code::PodIpMasqueraded],
            ..Case::default()
        },
        Case {
            name: "kubenet without masquerade",
            failing: vec![(
                "kubenet",
                Pod,
                source(Reason::NotMasqueraded, "198.18.2.10", "198.18.2.10", None),
            )],
            want: vec![Code::MasqueradeMissing],
            summary: Some(
                "on-prem sees the pod's own 198.18.2.10 though masquerade is expected (kubenet)",
            ),
            ..Case::default()
        },
        Case {
            name: "cluster DNS lost the stub zone",
            failing: vec![(
                "corp-db",
                Pod,
                dns(&[
                    ("system", UDP, Some(Reason::Nxdomain)),
                    ("system", TCP, Some(Reason::Nxdomain)),
                    (ONPREM_DNS, UDP, None),
                    (ONPREM_DNS, TCP, None),
                ]),
            )],
            want: vec![Code::ClusterDnsForwarding],
            summary: Some(
                "the pod's resolver fails db.corp.example (udp: nxdomain, tcp: nxdomain) while \
                 198.19.10.1 answers it directly (corp-db)",
            ),
            ..Case::default()
        },
        Case {
            name: "the host's resolver failing is not the cluster DNS",
            failing: vec![(
                "corp-db",
                Host,
                dns(&[
                    ("system", UDP, Some(Reason::Nxdomain)),
                    (ONPREM_DNS, UDP, None),
                ]),
            )],
            ..Case::default()
        },
        Case {
            name: "on-prem DNS down",
            failing: everywhere(
                "corp-db",
                dns(&[
                    ("system", UDP, Some(Reason::Servfail)),
                    ("system", TCP, Some(Reason::Servfail)),
                    (ONPREM_DNS, UDP, Some(Reason::Timeout)),
                    (ONPREM_DNS, TCP, Some(Reason::Refused)),
                ]),
            ),
            want: vec![Code::OnpremDnsDown],
            summary: Some(
                "on-prem DNS does not serve: 198.19.10.1 from pod and host (udp: timeout, tcp: refused)",
            ),
            ..Case::default()
        },
        Case {
            name: "on-prem DNS down from the pod only is the pod's path",
            failing: vec![(
                "corp-db",
                Pod,
                dns(&[
                    (ONPREM_DNS, UDP, Some(Reason::Timeout)),
                    (ONPREM_DNS, TCP, Some(Reason::Timeout)),
                ]),
            )],
            want: vec![Code::PodPathBlocked],
            ..Case::default()
        },
        Case {
            name: "a server only the pod asks is not down while the pod path is blocked",
            failing: pod_blocked(),
            want: vec![Code::PodPathBlocked],
            summary: Some(
                "from the pod no answer, from the host an answer: 198.19.10.1:389 (ldap), \
                 198.19.10.1 (ping, corp-db, mtu, trace), 198.19.10.1:3478 (pod-ip)",
            ),
            ..Case::default()
        },
        Case {
            name: "a server that only the pod asks, silent while the rest answers",
            failing: vec![(
                "pod-dns",
                Pod,
                dns(&[("198.19.10.53", UDP, Some(Reason::Timeout))]),
            )],
            want: vec![Code::OnpremDnsDown],
            ..Case::default()
        },
        Case {
            name: "NXDOMAIN from on-prem is the zone's content, not a dead server",
            failing: everywhere(
                "corp-db",
                dns(&[
                    ("system", UDP, Some(Reason::Nxdomain)),
                    ("system", TCP, Some(Reason::Nxdomain)),
                    (ONPREM_DNS, UDP, Some(Reason::Nxdomain)),
                    (ONPREM_DNS, TCP, Some(Reason::Nxdomain)),
                ]),
            ),
            ..Case::default()
        },
        Case {
            name: "a truncated UDP answer whose TCP leg is dropped",
            failing: vec![("pod-dns", Pod, followed("198.19.10.53", Reason::Timeout))],
            want: vec![Code::DnsTcpBlocked],
            summary: Some(
                "DNS over TCP fails while UDP answers: 198.19.10.53 from pod (pod-dns)",
            ),
            ..Case::default()
        },
        Case {
            name: "TCP/53 dropped across the tunnel",
            failing: vec![
                // The cluster DNS forwards a TCP query over TCP, so its TCP pair fails too.
                (
                    "corp-db",
                    Pod,
                    dns(&[
                        ("system", UDP, None),
                        ("system", TCP, Some(Reason::Timeout)),
                        (ONPREM_DNS, UDP, None),
                        (ONPREM_DNS, TCP, Some(Reason::Timeout)),
                    ]),
                ),
                (
                    "corp-db",
                    Host,
                    dns(&[
                        ("system", UDP, None),
                        ("system", TCP, Some(Reason::Timeout)),
                        (ONPREM_DNS, UDP, None),
                        (ONPREM_DNS, TCP, Some(Reason::Timeout)),
                    ]),
                ),
            ],
            want: vec![Code::DnsTcpBlocked],
            summary: Some(
                "DNS over TCP fails while UDP answers: 198.19.10.1 from pod and host (corp-db)",
            ),
            ..Case::default()
        },
        Case {
            name: "path MTU black hole",
            failing: everywhere("mtu", path_mtu(Reason::Blackhole, Some(1400), true)),
            want: vec![Code::PmtuBlackhole],
            summary: Some(
                "don't-fragment packets to 198.19.10.1 over 1400 bytes vanish without \
                 fragmentation-needed, from pod and host (mtu)",
            ),
            ..Case::default()
        },
        Case {
            name: "a name's black hole is named in the family its round used",
            extra: NAMED_MTU,
            failing: vec![
                ("db-mtu", Pod, blackhole_at(Some("2001:2:0:1910::1"))),
                ("db-mtu", Host, blackhole_at(Some("2001:2:0:1910::1"))),
                ("app-mtu", Pod, blackhole_at(Some("198.19.10.7"))),
                ("gw-mtu6", Pod, blackhole_at(None)),
            ],
            want: vec![Code::PmtuBlackhole],
            summary: Some(
                "don't-fragment packets to app.corp.example over 1400 bytes vanish without \
                 fragmentation-needed, from pod (app-mtu); don't-fragment packets to \
                 db.corp.example over 1400 bytes vanish without Packet Too Big, from pod and \
                 host (db-mtu); don't-fragment packets to gateway over 1400 bytes vanish \
                 without Packet Too Big, from pod (gw-mtu6)",
            ),
            ..Case::default()
        },
        Case {
            name: "a low path MTU is no black hole",
            failing: everywhere("mtu", path_mtu(Reason::MtuLow, Some(1300), false)),
            want: vec![Code::PathMtuLow],
            summary: Some(
                "the path MTU is below the configured minimum: 198.19.10.1 carries 1300 bytes, \
                 below the minimum 1400, from pod and host (mtu)",
            ),
            ..Case::default()
        },
        Case {
            name: "a low path MTU and a black hole are each named",
            failing: vec![
                ("mtu", Pod, path_mtu(Reason::Blackhole, Some(1400), true)),
                ("mtu", Host, path_mtu(Reason::MtuLow, Some(1300), false)),
            ],
            want: vec![Code::PmtuBlackhole, Code::PathMtuLow],
            ..Case::default()
        },
        Case {
            name: "local trouble is no evidence",
            failing: {
                let mut failing = everywhere("ldap", fail(Reason::PermissionDenied));
                failing.extend(everywhere("ping", fail(Reason::Error)));
                failing
            },
            ..Case::default()
        },
        Case {
            name: "one target down on-prem, the rest answers",
            failing: everywhere("ldap", timeout()),
            want: vec![Code::OnpremServiceDown],
            summary: Some(
                "one on-prem service does not answer while the rest of on-prem does: \
                 198.19.10.1:389 gives timeout from pod and host (ldap)",
            ),
            ..Case::default()
        },
        Case {
            name: "one port refused from the pod, silent from the host",
            failing: vec![("ldap", Pod, fail(Reason::Refused)), ("ldap", Host, timeout())],
            want: vec![Code::OnpremServiceDown],
            summary: Some(
                "one on-prem service does not answer while the rest of on-prem does: \
                 198.19.10.1:389 gives refused and timeout from pod and host (ldap)",
            ),
            ..Case::default()
        },
        Case {
            name: "a service down and an HTTPS server that does not connect",
            extra: WEB,
            failing: {
                let mut failing = everywhere("ldap", fail(Reason::Refused));
                failing.extend(everywhere("api", http(Reason::Timeout, false, None)));
                failing
            },
            want: vec![Code::OnpremServiceDown],
            summary: Some(
                "one on-prem service does not answer while the rest of on-prem does: \
                 198.19.10.1:389 gives refused from pod and host (ldap), \
                 https://api.corp.example/healthz gives timeout from pod and host (api)",
            ),
            ..Case::default()
        },
        Case {
            name: "a target failing from one namespace only is no service down",
            failing: vec![("ldap", Host, timeout())],
            ..Case::default()
        },
        Case {
            name: "a check run from the pod only cannot tell a silent service from the pod path",
            failing: vec![("kubenet", Pod, timeout())],
            ..Case::default()
        },
        Case {
            name: "a target silent from the pod only is the pod path's, not a service down",
            failing: vec![("ldap", Pod, timeout())],
            want: vec![Code::PodPathBlocked],
            ..Case::default()
        },
        Case {
            name: "a wrong route explains a service that does not answer",
            failing: {
                let mut failing = everywhere("ldap", timeout());
                failing.push(("route", Host, wrong_route()));
                failing
            },
            want: vec![Code::RouteMismatch],
            ..Case::default()
        },
        Case {
            name: "the tunnel down is named, not a service behind it",
            failing: {
                let mut failing = both(tunnel_down);
                failing.retain(|(probe, _, _)| *probe != "ldap");
                failing.extend(everywhere("ldap", fail(Reason::Unreachable)));
                failing
            },
            want: vec![Code::OnpremUnreachable],
            ..Case::default()
        },
        Case {
            name: "the on-prem server answers wrong, and the cluster DNS forwards it",
            failing: everywhere(
                "corp-db",
                dns(&[
                    ("system", UDP, MISMATCH),
                    ("system", TCP, MISMATCH),
                    (ONPREM_DNS, UDP, MISMATCH),
                    (ONPREM_DNS, TCP, MISMATCH),
                ]),
            ),
            want: vec![Code::OnpremDnsWrongAnswer],
            summary: Some(
                "the on-prem DNS server answers wrong: 198.19.10.1 answers db.corp.example with \
                 A 198.18.99.7 (198.18.99.7 not within 198.19.0.0/16) from pod and host (corp-db)",
            ),
            ..Case::default()
        },
        Case {
            name: "only the cluster resolver answers wrong",
            failing: vec![(
                "corp-db",
                Pod,
                dns(&[
                    ("system", UDP, MISMATCH),
                    ("system", TCP, MISMATCH),
                    (ONPREM_DNS, UDP, None),
                    (ONPREM_DNS, TCP, None),
                ]),
            )],
            want: vec![Code::ClusterDnsWrongAnswer],
            summary: Some(
                "the pod's resolver answers db.corp.example with A 198.18.99.7 (198.18.99.7 not \
                 within 198.19.0.0/16) while 198.19.10.1 answers it as expected (corp-db)",
            ),
            ..Case::default()
        },
        Case {
            name: "a wrong answer with nothing to compare it to names no resolver",
            failing: vec![(
                "corp-db",
                Pod,
                dns(&[
                    ("system", UDP, MISMATCH),
                    (ONPREM_DNS, UDP, Some(Reason::Timeout)),
                ]),
            )],
            want: vec![Code::PodPathBlocked],
            ..Case::default()
        },
        Case {
            name: "a wrong answer and masquerade are each named",
            failing: vec![
                (
                    "corp-db",
                    Pod,
                    dns(&[("system", UDP, MISMATCH), (ONPREM_DNS, UDP, None)]),
                ),
                (
                    "pod-ip",
                    Pod,
                    source(Reason::Masqueraded, "198.18.2.10", "198.18.1.4", Some(true)),
                ),
            ],
            want: vec![Code::PodIpMasqueraded, Code::ClusterDnsWrongAnswer],
            ..Case::default()
        },
        Case {
            name: "masqueraded to an unexpected address",
            failing: vec![(
                "kubenet",
                Pod,
                source(
                    Reason::UnexpectedSource,
                    "198.18.2.10",
                    "198.18.1.9",
                    Some(false),
                ),
            )],
            want: vec![Code::MasqueradeUnexpected],
            summary: Some(
                "on-prem sees the pod's 198.18.2.10 masqueraded to 198.18.1.9 instead of \
                 198.18.1.4; this node did not SNAT the flow (kubenet)",
            ),
            ..Case::default()
        },
        Case {
            name: "an unexpected masquerade address explains the pod-only failures",
            failing: {
                let mut failing = pod_blocked();
                failing.retain(|(probe, _, _)| *probe != "kubenet");
                failing.push((
                    "kubenet",
                    Pod,
                    source(Reason::UnexpectedSource, "198.18.2.10", "198.18.1.9", None),
                ));
                failing
            },
            want: vec![Code::MasqueradeUnexpected],
            ..Case::default()
        },
        Case {
            name: "a blocked target answers",
            failing: vec![("mgmt", Pod, fail(Reason::NotBlocked))],
            want: vec![Code::BlockedTargetReachable],
            summary: Some("a target that must stay blocked answers: 198.19.20.1:22 from pod (mgmt)"),
            ..Case::default()
        },
        Case {
            name: "a blocked target answering says nothing of the dead tunnel",
            failing: {
                let mut failing = both(tunnel_down);
                failing.extend(everywhere("mgmt", fail(Reason::NotBlocked)));
                failing
            },
            want: vec![Code::BlockedTargetReachable, Code::OnpremUnreachable],
            ..Case::default()
        },
        Case {
            name: "a name resolves, its address does not answer",
            extra: WEB,
            failing: everywhere("app", resolved(Reason::Timeout, "198.19.10.7")),
            want: vec![Code::ResolvedAddressDown],
            summary: Some(
                "the name resolves, the address does not answer: app.corp.example:8443 resolves \
                 to 198.19.10.7, which gives timeout from pod and host (app)",
            ),
            ..Case::default()
        },
        Case {
            name: "a resolved address refused from the pod, silent from the host",
            extra: WEB,
            failing: vec![
                ("app", Pod, resolved(Reason::Refused, "198.19.10.7")),
                ("app", Host, resolved(Reason::Timeout, "198.19.10.7")),
            ],
            want: vec![Code::ResolvedAddressDown],
            summary: Some(
                "the name resolves, the address does not answer: app.corp.example:8443 resolves \
                 to 198.19.10.7, which gives refused and timeout from pod and host (app)",
            ),
            ..Case::default()
        },
        Case {
            name: "a resolved address that fails from the pod only is the pod path's",
            extra: WEB,
            failing: {
                let mut failing = pod_blocked();
                failing.push(("app", Pod, resolved(Reason::Timeout, "198.19.10.7")));
                failing
            },
            want: vec![Code::PodPathBlocked],
            ..Case::default()
        },
        Case {
            name: "the tunnel down is named, not the address of a name",
            extra: WEB,
            failing: {
                let mut failing = both(tunnel_down);
                failing.extend(everywhere("app", resolved(Reason::Timeout, "198.19.10.7")));
                failing.extend(everywhere("api", http(Reason::Timeout, false, None)));
                failing.extend(everywhere("shop", http(Reason::Timeout, false, None)));
                failing
            },
            want: vec![Code::OnpremUnreachable],
            ..Case::default()
        },
        Case {
            name: "a wrong route explains a resolved address that does not answer",
            extra: WEB,
            failing: vec![
                ("route", Host, wrong_route()),
                ("app", Host, resolved(Reason::Timeout, "198.19.10.7")),
            ],
            want: vec![Code::RouteMismatch],
            ..Case::default()
        },
        Case {
            name: "a name that does not resolve says nothing of an address",
            extra: WEB,
            failing: everywhere("app", fail(Reason::ResolveFailed)),
            ..Case::default()
        },
        Case {
            name: "an expired certificate",
            extra: WEB,
            failing: everywhere("api", tls(Reason::TlsExpired, expired())),
            want: vec![Code::TlsFailure],
            summary: Some(
                "the server answers TCP, TLS fails: https://api.corp.example/healthz from pod and \
                 host (api): certificate \"CN=api.corp.example\" expired 2021-01-01T00:00:00Z",
            ),
            ..Case::default()
        },
        Case {
            name: "an untrusted certificate from the pod only is TLS, not the pod path",
            extra: WEB,
            failing: vec![(
                "api",
                Pod,
                tls(
                    Reason::TlsUntrusted,
                    CertProblem::Untrusted {
                        subject: "CN=api.corp.example".into(),
                        issuer: "CN=Azure Firewall inspection CA".into(),
                    },
                ),
            )],
            want: vec![Code::TlsFailure],
            summary: Some(
                "the server answers TCP, TLS fails: https://api.corp.example/healthz from pod \
                 (api): certificate \"CN=api.corp.example\" is issued by \"CN=Azure Firewall \
                 inspection CA\", which no trusted CA vouches for",
            ),
            ..Case::default()
        },
        Case {
            name: "a certificate for another name",
            extra: WEB,
            failing: everywhere(
                "api",
                tls(
                    Reason::TlsNameMismatch,
                    CertProblem::NameMismatch {
                        asked: "api.corp.example".into(),
                        names: vec!["other.corp.example".into()],
                    },
                ),
            ),
            want: vec![Code::TlsFailure],
            summary: Some(
                "the server answers TCP, TLS fails: https://api.corp.example/healthz from pod and \
                 host (api): certificate names [other.corp.example], not api.corp.example",
            ),
            ..Case::default()
        },
        Case {
            name: "a handshake that stalls after the TCP connect is TLS, not the pod path",
            extra: WEB,
            failing: vec![("api", Pod, http(Reason::Timeout, true, None))],
            want: vec![Code::TlsFailure],
            summary: Some(
                "the server answers TCP, TLS fails: https://api.corp.example/healthz from pod \
                 (api): the handshake stalls after the TCP connect (timeout)",
            ),
            ..Case::default()
        },
        Case {
            name: "a PMTU black hole explains a stalled handshake",
            extra: WEB,
            failing: {
                let mut failing = everywhere("mtu", path_mtu(Reason::Blackhole, Some(1400), true));
                failing.extend(everywhere("api", http(Reason::Timeout, true, None)));
                failing
            },
            want: vec![Code::PmtuBlackhole],
            ..Case::default()
        },
        Case {
            name: "an HTTPS connect that times out is no TLS failure",
            extra: WEB,
            failing: vec![("api", Pod, http(Reason::Timeout, false, None))],
            want: vec![Code::PodPathBlocked],
            ..Case::default()
        },
        Case {
            name: "a plain HTTP round that times out after connecting is no TLS failure",
            extra: WEB,
            failing: everywhere("shop", http(Reason::Timeout, true, None)),
            ..Case::default()
        },
        Case {
            name: "a 5xx from one service while the path answers",
            extra: WEB,
            failing: everywhere("api", http(Reason::HttpStatus, true, Some(503))),
            want: vec![Code::ServiceError],
            summary: Some(
                "the service fails while its path answers: https://api.corp.example/healthz \
                 from pod and host (api): answers 503",
            ),
            ..Case::default()
        },
        Case {
            name: "a body that does not match while the path answers",
            extra: WEB,
            failing: vec![("shop", Host, http(Reason::BodyMismatch, true, Some(200)))],
            want: vec![Code::ServiceError],
            summary: Some(
                "the service fails while its path answers: http://198.19.10.1/healthz from \
                 host (shop): answers 200 without the expected body",
            ),
            ..Case::default()
        },
        Case {
            name: "a 4xx is the check's own business",
            extra: WEB,
            failing: everywhere("api", http(Reason::HttpStatus, true, Some(404))),
            ..Case::default()
        },
        Case {
            name: "a 5xx where nothing else passes from its namespace is not called the service's",
            extra: WEB,
            failing: {
                let mut failing = pod_blocked();
                failing.push(("app", Pod, resolved(Reason::Timeout, "198.19.10.7")));
                failing.push(("shop", Pod, http(Reason::Timeout, false, None)));
                failing.push(("api", Pod, http(Reason::HttpStatus, true, Some(502))));
                failing
            },
            want: vec![Code::PodPathBlocked],
            ..Case::default()
        },
        Case {
            name: "a certificate, a service and an address at once are each named",
            extra: WEB,
            failing: vec![
                ("app", Host, resolved(Reason::Refused, "198.19.10.7")),
                ("api", Pod, tls(Reason::TlsExpired, expired())),
                ("shop", Pod, http(Reason::HttpStatus, true, Some(500))),
            ],
            want: vec![
                Code::ResolvedAddressDown,
                Code::TlsFailure,
                Code::ServiceError,
            ],
            ..Case::default()
        },
        Case {
            name: "independent causes are each reported",
            failing: {
                let mut failing = everywhere("mtu", path_mtu(Reason::Blackhole, Some(1400), true));
                failing.push((
                    "pod-ip",
                    Pod,
                    source(Reason::Masqueraded, "198.18.2.10", "198.18.1.4", Some(true)),
                ));
                failing.push((
                    "corp-db",
                    Pod,
                    dns(&[
                        ("system", UDP, Some(Reason::Nxdomain)),
                        (ONPREM_DNS, UDP, None),
                        (ONPREM_DNS, TCP, Some(Reason::Timeout)),
                    ]),
                ));
                failing
            },
            config_error: Some("probes[0].tcp.target: \"x\" is not a valid address"),
            want: vec![
                Code::ConfigReloadFailed,
                Code::PodIpMasqueraded,
                Code::DnsTcpBlocked,
                Code::ClusterDnsForwarding,
                Code::PmtuBlackhole,
            ],
            ..Case::default()
        },
    ]
}

/// Probes beside [`CONFIG`]'s for the node-local causes.
const NODE_LOCAL: &str = r#"
  - { name: resolv, resolv_conf: {} }
  - { name: ct, netns: [host], conntrack: {} }
  - name: bridge-route
    netns: [host]
    route: { destination: 198.19.0.0/16, via: 198.18.1.1, not_dev: [docker0, cbr0] }
"#;

/// The route into docker0 that a 198.19.0.0/16 bridge takes, against `bridge-route`.
fn into_bridge() -> Failure {
    let route = Route {
        destination: "198.19.0.0/16".parse().unwrap(),
        gateway: None,
        dev: "docker0".into(),
        src: Some(ip("198.19.0.1")),
        dev_mtu: 1500,
        mtu: None,
    };
    Failure {
        reason: Reason::Mismatch,
        detail: format!("{route} (expected via 198.18.1.1, not dev docker0)"),
        measurements: Measurements::Route(RouteReport { route: Some(route) }),
        resolved: None,
    }
}

fn node_local_cases() -> Vec<Case> {
    let stub = || {
        Failure::new(
            Reason::LoopbackResolver,
            "/etc/resolv.conf names the loopback nameserver 127.0.0.53 (1 of 1)",
        )
    };
    let cluster_dns_fails = || {
        dns(&[
            ("system", UDP, Some(Reason::Timeout)),
            ("system", TCP, Some(Reason::Timeout)),
            (ONPREM_DNS, UDP, None),
            (ONPREM_DNS, TCP, None),
        ])
    };
    let full = || Failure::new(Reason::ConntrackFull, "conntrack 250000 of 262144 entries");
    let dead_tunnel = || {
        let mut failing = tunnel_down(Pod);
        failing.extend(tunnel_down(Host));
        failing
    };
    vec![
        Case {
            name: "a loopback stub in the pod explains its resolver failing",
            extra: NODE_LOCAL,
            failing: vec![
                ("resolv", Pod, stub()),
                ("corp-db", Pod, cluster_dns_fails()),
            ],
            want: vec![Code::DnsLoopbackStub],
            summary: Some(
                "resolv.conf sends queries to a loopback stub: resolv (pod): /etc/resolv.conf \
                 names the loopback nameserver 127.0.0.53 (1 of 1)",
            ),
            ..Case::default()
        },
        Case {
            name: "the host's stub does not explain the cluster DNS",
            extra: NODE_LOCAL,
            failing: vec![
                ("resolv", Host, stub()),
                ("corp-db", Pod, cluster_dns_fails()),
            ],
            want: vec![Code::DnsLoopbackStub, Code::ClusterDnsForwarding],
            ..Case::default()
        },
        Case {
            name: "a full conntrack table explains nothing answering",
            extra: NODE_LOCAL,
            failing: {
                let mut failing = dead_tunnel();
                failing.push(("ct", Host, full()));
                failing
            },
            want: vec![Code::ConntrackExhausted],
            summary: Some(
                "connection tracking loses flows: ct (host): conntrack 250000 of 262144 entries",
            ),
            ..Case::default()
        },
        Case {
            name: "conntrack drops do not explain a dead tunnel",
            extra: NODE_LOCAL,
            failing: {
                let mut failing = dead_tunnel();
                failing.push(("ct", Host, fail(Reason::ConntrackDrops)));
                failing
            },
            want: vec![Code::ConntrackExhausted, Code::OnpremUnreachable],
            ..Case::default()
        },
        Case {
            name: "conntrack drops while the path answers",
            extra: NODE_LOCAL,
            failing: vec![("ct", Host, fail(Reason::ConntrackDrops))],
            want: vec![Code::ConntrackExhausted],
            ..Case::default()
        },
        Case {
            name: "a route into a bridge is the overlap, not a wrong route or a dead tunnel",
            extra: NODE_LOCAL,
            failing: {
                let mut failing = dead_tunnel();
                failing.push(("bridge-route", Host, into_bridge()));
                failing
            },
            want: vec![Code::RouteOverlap],
            summary: Some(
                "on-prem traffic overlaps a node or cluster range: bridge-route (host): 198.19.0.0/16 \
                 dev docker0 src 198.19.0.1 (expected via 198.18.1.1, not dev docker0)",
            ),
            ..Case::default()
        },
        Case {
            name: "an overlap and a wrong route in other checks are each named",
            extra: NODE_LOCAL,
            failing: vec![
                ("bridge-route", Host, into_bridge()),
                ("route", Host, wrong_route()),
            ],
            want: vec![Code::RouteMismatch, Code::RouteOverlap],
            ..Case::default()
        },
        Case {
            name: "a local stub, a full table and a route overlap at once",
            extra: NODE_LOCAL,
            failing: vec![
                ("resolv", Pod, stub()),
                ("ct", Host, full()),
                ("bridge-route", Host, into_bridge()),
            ],
            want: vec![
                Code::RouteOverlap,
                Code::DnsLoopbackStub,
                Code::ConntrackExhausted,
            ],
            ..Case::default()
        },
    ]
}

#[test]
fn each_result_set_yields_its_diagnoses_and_no_others() {
    for case in cases()
        .into_iter()
        .chain(degraded::cases())
        .chain(family::cases())
        .chain(node_local_cases())
    {
        let found = run(&case);
        let got: Vec<&str> = found.iter().map(|d| d.code).collect();
        let want: Vec<&str> = case.want.iter().map(|c| c.as_str()).collect();
        assert_eq!(got, want, "case {:?}", case.name);
        if let Some(summary) = case.summary {
            assert_eq!(found[0].summary, summary, "case {:?}", case.name);
        }
    }
}

#[test]
fn codes_are_distinct_snake_case_and_each_has_a_hint() {
    let mut names: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
    for code in Code::ALL {
        let name = code.as_str();
        assert!(
            name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{name}"
        );
        assert!(code.hint().len() > 40, "{name}: {}", code.hint());
    }
    for (code, names) in [
        (Code::OnpremUnreachable, "VPN"),
        (Code::PodIpMasqueraded, "nonMasqueradeCIDRs"),
        (Code::ClusterDnsForwarding, "coredns-custom"),
        (Code::PmtuBlackhole, "1350"),
        (Code::PmtuBlackhole, "type 3 code 4"),
        (Code::PmtuBlackhole, "ICMPv6 type 2"),
        (Code::RouteMismatch, "(UDR)"),
        (Code::PodPathBlocked, "IPsec traffic selectors"),
        (Code::DnsTcpBlocked, "TCP/53"),
        (Code::ResolvedAddressDown, "stale DNS record"),
        (Code::TlsFailure, "ca_file"),
        (Code::ServiceError, "not at fault"),
        (Code::OnpremServiceDown, "the VPN is fine"),
        (Code::OnpremDnsWrongAnswer, "record in its zone"),
        (Code::ClusterDnsWrongAnswer, "coredns-custom"),
        (Code::PathMtuLow, "MSS clamping"),
        (Code::MasqueradeUnexpected, "`to`"),
        (Code::BlockedTargetReachable, "segmentation"),
        (Code::TunnelLossy, "packet drops"),
        (Code::PathSlower, "backup VPN"),
        (Code::RouteOverlap, "--service-cidr"),
        (Code::DnsLoopbackStub, "resolvConf"),
        (Code::ConntrackExhausted, "nf_conntrack_max"),
        (Code::OnpremFamilyUnreachable, "UDR"),
        (Code::OnpremFamilyUnreachable, "IPv6 prefixes"),
    ] {
        assert!(code.hint().contains(names), "{code}: {}", code.hint());
    }
    let count = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), count);
    assert_eq!(count, 26);
}

/// Flap damping decides whether a check counts; its latest failure stays the evidence until it
/// has recovered.
#[test]
fn evidence_follows_the_damped_state() {
    let probe = probes("").remove(0);
    let key = CheckKey {
        probe: probe.name.clone(),
        netns: Pod,
        family: None,
    };
    let mut results = Results::default();
    results.declare(key.clone(), probe, 0);
    let damping = Damping {
        fail_after: 2,
        recover_after: 2,
    };
    let passed: Result<Outcome, Failure> = Ok(Outcome {
        detail: "connected".into(),
        measurements: Measurements::None,
        resolved: None,
    });
    let seen = |results: &Results| {
        let (_, state) = results.in_order()[0];
        match Seen::of(state) {
            Seen::Pending => "pending",
            Seen::Passing => "passing",
            Seen::Failing(failure) => failure.reason.as_str(),
        }
    };
    assert_eq!(seen(&results), "pending");
    let mut at = SystemTime::UNIX_EPOCH;
    let mut round = |results: &mut Results, result: &Result<Outcome, Failure>| {
        at += Duration::from_secs(1);
        results.record(&key, result, Duration::ZERO, at, damping);
        seen(results)
    };
    assert_eq!(round(&mut results, &passed), "passing");
    assert_eq!(round(&mut results, &Err(timeout())), "passing", "one blip");
    assert_eq!(round(&mut results, &Err(fail(Reason::Refused))), "refused");
    assert_eq!(round(&mut results, &passed), "refused", "still recovering");
    assert_eq!(round(&mut results, &passed), "passing");
}
