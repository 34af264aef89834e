//! Diagnoses: from the current state of every check, in both namespaces, to the likely causes,
//! one per root cause, each with a fixed code and a hint at the fix.
//!
//! # Precedence
//!
//! A broken path fails many checks at once; only its cause is reported, not each symptom:
//!
//! 1. `config_reload_failed` and `host_netns_unavailable` are about the agent itself and are
//!    always reported, and so is `blocked_target_reachable`, a segmentation breach. Checks with
//!    `expect: blocked` are no evidence for any other diagnosis: their passing is silence.
//! 2. `route_mismatch`: the local route is wrong; `route_overlap`: it leaves by a bridge or
//!    the destination overlaps a cluster range. Each explains `onprem_unreachable`,
//!    `pod_path_blocked` and `onprem_dns_down`, which are then not reported. Beside them, the
//!    node-local causes read from files: `dns_loopback_stub` explains the pod's resolver
//!    failing (`cluster_dns_forwarding`) when the pod's resolv.conf names it, and
//!    `conntrack_exhausted` with a full table explains `onprem_unreachable`.
//! 3. `onprem_unreachable`: no on-prem target answers from any namespace. Every other diagnosis
//!    below is a symptom of that and is not reported.
//!    Then `onprem_family_unreachable`: over one address family (IPv6, or IPv4) no on-prem
//!    target answers from any namespace, at two addresses or more, while targets of the other
//!    family answer. A wrong route explains it too. The checks that asked over that family
//!    alone, and its targets and DNS servers in the others, are then no evidence for anything
//!    below: the other family's checks are read as usual.
//!    Then `tunnel_lossy`: several checks across the tunnel lose a share of their packets.
//!    Silence is then the loss's: timeouts (and a resolver's SERVFAIL) are no evidence for
//!    anything below, which keeps DNS timeouts from reading as `dns_tcp_blocked`,
//!    `cluster_dns_forwarding`, `onprem_dns_down` or `onprem_service_down`. It explains
//!    `path_slower`: round trips well above the same checks' own baseline, not an outage.
//! 4. `pod_ip_masqueraded`, `masquerade_missing` and `masquerade_unexpected`: the pod's source
//!    address is not what on-prem expects. They explain `pod_path_blocked`.
//! 5. `pod_path_blocked`: targets fail from the pod but answer the host. A DNS server that only
//!    the pod asks is then not called down.
//! 6. `onprem_dns_down`, `dns_tcp_blocked`, `cluster_dns_forwarding`, `onprem_dns_wrong_answer`,
//!    `cluster_dns_wrong_answer`, `pmtu_blackhole`, `path_mtu_low`: each from its own evidence;
//!    they cannot be symptoms of one another. A wrong answer is never a forwarding failure, and
//!    an on-prem server answering wrong explains the resolvers that forward to it.
//! 7. `onprem_service_down` and `resolved_address_down`: one service does not answer from any
//!    namespace that asks it while the rest of on-prem does; a target behind a name that
//!    resolved is `resolved_address_down`'s. A wrong route explains both, and a target that
//!    fails only from the pod is `pod_path_blocked`'s.
//! 8. `tls_failure` and `service_error`: the server answered, so the path is not at fault. A
//!    PMTU black hole explains a TLS handshake that stalls after the connect.

mod degraded;
mod family;
mod observed;
pub mod table;
#[cfg(test)]
pub(crate) mod test_util;
#[cfg(test)]
mod tests;
pub mod verdict;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use observed::{address, dns_pairs, reaches, remote, Asked, Family, Pair, Reach};
pub use observed::{Observed, Seen};

use crate::netns::NetnsId;
use crate::netns::NetnsStatus;
use crate::probe::dns::DnsTransport;
use crate::probe::expect::Expect;
use crate::probe::http::{HttpReport, HttpSpec, Phase};
use crate::probe::path_mtu::{PathMtuReport, PathMtuSpec};
use crate::probe::resolver;
use crate::probe::source_ip::Policy;
use crate::probe::target::Host;
use crate::probe::{Failure, Measurements, ProbeKind, Reason};

/// A likely cause, named by a fixed code, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnosis {
    pub code: &'static str,
    /// One line naming the probes, namespaces and addresses involved.
    pub summary: String,
    pub hint: &'static str,
}

/// Every diagnosis the agent can make: a closed set, since `code` is a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Code {
    ConfigReloadFailed,
    HostNetnsUnavailable,
    BlockedTargetReachable,
    RouteMismatch,
    RouteOverlap,
    DnsLoopbackStub,
    ConntrackExhausted,
    OnpremUnreachable,
    OnpremFamilyUnreachable,
    TunnelLossy,
    PathSlower,
    PodIpMasqueraded,
    MasqueradeMissing,
    MasqueradeUnexpected,
    PodPathBlocked,
    OnpremDnsDown,
    DnsTcpBlocked,
    ClusterDnsForwarding,
    OnpremDnsWrongAnswer,
    ClusterDnsWrongAnswer,
    PmtuBlackhole,
    PathMtuLow,
    OnpremServiceDown,
    ResolvedAddressDown,
    TlsFailure,
    ServiceError,
}

impl Code {
    /// In precedence order, which is also the order diagnoses are listed in.
    pub const ALL: &'static [Code] = &[
        Code::ConfigReloadFailed,
        Code::HostNetnsUnavailable,
        Code::BlockedTargetReachable,
        Code::RouteMismatch,
        Code::RouteOverlap,
        Code::DnsLoopbackStub,
        Code::ConntrackExhausted,
        Code::OnpremUnreachable,
        Code::OnpremFamilyUnreachable,
        Code::TunnelLossy,
        Code::PathSlower,
        Code::PodIpMasqueraded,
        Code::MasqueradeMissing,
        Code::MasqueradeUnexpected,
        Code::PodPathBlocked,
        Code::OnpremDnsDown,
        Code::DnsTcpBlocked,
        Code::ClusterDnsForwarding,
        Code::OnpremDnsWrongAnswer,
        Code::ClusterDnsWrongAnswer,
        Code::PmtuBlackhole,
        Code::PathMtuLow,
        Code::OnpremServiceDown,
        Code::ResolvedAddressDown,
        Code::TlsFailure,
        Code::ServiceError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::ConfigReloadFailed => "config_reload_failed",
            Code::HostNetnsUnavailable => "host_netns_unavailable",
            Code::BlockedTargetReachable => "blocked_target_reachable",
            Code::RouteMismatch => "route_mismatch",
            Code::RouteOverlap => "route_overlap",
            Code::DnsLoopbackStub => "dns_loopback_stub",
            Code::ConntrackExhausted => "conntrack_exhausted",
            Code::OnpremUnreachable => "onprem_unreachable",
            Code::OnpremFamilyUnreachable => "onprem_family_unreachable",
            Code::TunnelLossy => "tunnel_lossy",
            Code::PathSlower => "path_slower",
            Code::PodIpMasqueraded => "pod_ip_masqueraded",
            Code::MasqueradeMissing => "masquerade_missing",
            Code::MasqueradeUnexpected => "masquerade_unexpected",
            Code::PodPathBlocked => "pod_path_blocked",
            Code::OnpremDnsDown => "onprem_dns_down",
            Code::DnsTcpBlocked => "dns_tcp_blocked",
            Code::ClusterDnsForwarding => "cluster_dns_forwarding",
            Code::OnpremDnsWrongAnswer => "onprem_dns_wrong_answer",
            Code::ClusterDnsWrongAnswer => "cluster_dns_wrong_answer",
            Code::PmtuBlackhole => "pmtu_blackhole",
            Code::PathMtuLow => "path_mtu_low",
            Code::OnpremServiceDown => "onprem_service_down",
            Code::ResolvedAddressDown => "resolved_address_down",
            Code::TlsFailure => "tls_failure",
            Code::ServiceError => "service_error",
        }
    }

    /// The likely fix, for the person on call.
    pub fn hint(self) -> &'static str {
        match self {
            Code::ConfigReloadFailed => {
                "fix the ConfigMap (hybridprobe validate --config FILE names each problem); the \
                 agent picks up the fix within seconds"
            }
            Code::HostNetnsUnavailable => {
                "run the agent with hostPID: true, CAP_SYS_ADMIN and CAP_SYS_PTRACE, or list only \
                 `pod` under netns in the config"
            }
            Code::BlockedTargetReachable => {
                "segmentation is breached: restore the rule that keeps this namespace away from \
                 the target (an NSG or Azure Firewall deny for the pod CIDR or node subnet, an \
                 on-prem ACL, a network policy), and look for a new route, peering or VPN \
                 traffic selector that bypasses it"
            }
            Code::RouteMismatch => {
                "on-prem traffic takes the wrong route: compare `ip route get <target>` on the node \
                 with the expected gateway, then the route table (UDR) on the AKS subnet: a missing \
                 on-prem prefix, BGP route propagation disabled, or 0.0.0.0/0 to an appliance"
            }
            Code::RouteOverlap => {
                "an on-prem range overlaps a range of the node or the cluster, which takes its \
                 traffic: a bridge (docker0's 172.17.0.0/16: set the Docker daemon's bip, or \
                 remove Docker), the kubenet pod CIDR on cbr0, or the Service CIDR; give the \
                 cluster ranges (--pod-cidr, --service-cidr) that no on-prem network uses"
            }
            Code::DnsLoopbackStub => {
                "a nameserver on 127.0.0.0/8 or ::1 answers only on the node that runs the stub \
                 (systemd-resolved's 127.0.0.53): point the kubelet's resolvConf at \
                 /run/systemd/resolve/resolv.conf (the real upstreams), then restart the \
                 CoreDNS pods and the affected pods; CoreDNS's loop plugin stops a server that \
                 forwards to itself"
            }
            Code::ConntrackExhausted => {
                "the node's connection tracking loses flows: when full, raise \
                 net.netfilter.nf_conntrack_max (and nf_conntrack_buckets) and find what fills \
                 the table (`conntrack -S`, `conntrack -L`); insert_failed rising is the \
                 SNAT/DNS insert race: NodeLocal DNSCache, `single-request-reopen` or DNS over \
                 TCP, and SNAT with --random-fully"
            }
            Code::OnpremUnreachable => {
                "the site-to-site VPN or ExpressRoute is down: check the connection status of the \
                 VPN gateway and the IKE/IPsec security associations on both ends, then the route \
                 table (UDR) on the AKS subnet and BGP route propagation"
            }
            Code::OnpremFamilyUnreachable => {
                "one address family crosses the tunnel, the other does not: check the VPN \
                 gateway's configuration for that family (for IPv6 a dual-stack gateway, the \
                 IPv6 prefixes in the local network gateway's address space and the IPsec \
                 traffic selectors, ExpressRoute's IPv6 private peering), the route table (UDR) \
                 on the AKS subnet for that family's on-prem prefix, and NSG and on-prem \
                 firewall rules written for one family only"
            }
            Code::TunnelLossy => {
                "the tunnel drops a share of its packets: check the VPN gateway's metrics \
                 (tunnel ingress/egress packet drops, bandwidth against the SKU's limit), the \
                 on-prem VPN device's CPU and interface errors, and the ISP link; failing DNS \
                 and TCP checks are the loss's symptoms"
            }
            Code::PathSlower => {
                "on-prem answers, but slower than before: the path changed (ExpressRoute failed \
                 over to the backup VPN: check the circuit's BGP sessions and the gateway's \
                 connections) or a gateway is congested (its bandwidth against the SKU's limit); \
                 compare hybridprobe_icmp_reply_hop_limit for a changed hop count"
            }
            Code::PodIpMasqueraded => {
                "add the on-prem ranges to nonMasqueradeCIDRs in the azure-ip-masq-agent-config \
                 ConfigMap (kube-system); if this node did not SNAT the flow \
                 (hybridprobe_snat_observed 0), an appliance on the path (NVA, Azure Firewall) \
                 translates it"
            }
            Code::MasqueradeMissing => {
                "kubenet pod addresses are not routable on-prem: keep the on-prem ranges out of \
                 nonMasqueradeCIDRs in azure-ip-masq-agent-config (only the pod CIDR belongs there) \
                 and keep ipMasq on in the bridge CNI config"
            }
            Code::MasqueradeUnexpected => {
                "pod traffic reaches on-prem from another address than the configured `to`: an \
                 appliance on the path (Azure Firewall, an NVA, a NAT gateway) translates it, or \
                 the node masquerades out of another interface; fix the SNAT or the expected \
                 address, since on-prem rules that allow only it drop the rest"
            }
            Code::PodPathBlocked => {
                "the path filters pod addresses while node addresses pass: allow the pod CIDR in \
                 the NSG rules and on-prem firewalls and add it to the IPsec traffic selectors \
                 (the local network gateway's address space); with kubenet, pods must be \
                 masqueraded"
            }
            Code::OnpremDnsDown => {
                "the on-prem DNS server does not serve queries: check the DNS service and its \
                 host's health, and on-prem firewall rules for port 53; other on-prem traffic \
                 passes"
            }
            Code::DnsTcpBlocked => {
                "allow TCP/53 through the tunnel firewall, NSGs and on-prem ACLs: answers too \
                 large for UDP (many records, DNSSEC) fall back to TCP and fail"
            }
            Code::ClusterDnsForwarding => {
                "the cluster DNS does not forward the corporate zone: add a stub zone to the \
                 coredns-custom ConfigMap (a <zone>.server key with `forward . <on-prem DNS>`), \
                 check the CoreDNS pods, and let the on-prem DNS answer pod addresses"
            }
            Code::OnpremDnsWrongAnswer => {
                "the on-prem DNS server itself answers outside the expectation: fix the record in \
                 its zone (a stale A record, a split-horizon view that hands out the public \
                 address), then wait out the TTL; the cluster DNS only forwards what it says"
            }
            Code::ClusterDnsWrongAnswer => {
                "only the namespace's own resolver answers wrong, the on-prem server is right: a \
                 hosts or rewrite entry in the coredns-custom ConfigMap, a stub zone forwarding to \
                 the wrong server, or on the node the VNET's DNS (an Azure private DNS zone \
                 shadowing the corporate zone); fix it there and restart the CoreDNS pods"
            }
            Code::PmtuBlackhole => {
                "clamp TCP MSS at 1350 on the VPN device (or set the tunnel interface MTU to 1400) \
                 and let ICMP type 3 code 4 (fragmentation needed) and ICMPv6 type 2 (Packet Too \
                 Big) through NSGs and firewalls"
            }
            Code::PathMtuLow => {
                "the path carries smaller packets than the configured minimum: the tunnel MTU \
                 or an extra encapsulation on the way (a backup path, GRE or IPsec in an NVA) \
                 changed; set the VPN device's tunnel MTU (1400) and MSS clamping (1350) again, \
                 or lower `min` if the path is meant to be so"
            }
            Code::OnpremServiceDown => {
                "one on-prem service does not answer while the rest of on-prem does: the VPN is \
                 fine; check that service and its host (is it running and listening on the \
                 port?) and the host's own firewall"
            }
            Code::ResolvedAddressDown => {
                "the name resolves, but nothing answers at its address: a stale DNS record (the \
                 service moved: fix the on-prem record, or a CoreDNS hosts or rewrite entry, and \
                 wait out its TTL), or the host behind the address is down or firewalls the port"
            }
            Code::TlsFailure => {
                "the server answers TCP, TLS fails: renew an expired certificate (intermediates \
                 too), add the issuing CA to the probe's ca_file and the clients' trust stores, or \
                 reissue the certificate with the name clients ask for; a handshake that stalls \
                 after connecting is a TLS-inspecting firewall or a PMTU black hole"
            }
            Code::ServiceError => {
                "the path and the server answer, the service does not: check the service's health, \
                 logs and backends (a load balancer with no healthy backend answers 502/503); the \
                 VPN and firewalls are not at fault"
            }
        }
    }

    /// `lead: part, part (+2 more)`, or nothing without parts.
    fn listing(self, lead: &str, parts: Vec<String>) -> Option<Diagnosis> {
        (!parts.is_empty()).then(|| self.with(format!("{lead}: {}", named(parts))))
    }

    fn with(self, summary: String) -> Diagnosis {
        Diagnosis {
            code: self.as_str(),
            summary,
            hint: self.hint(),
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`diagnose`] reads of one check besides its probe and namespace. Checks that read
/// alike give the same diagnoses, so a caller may keep the ones it has while no check reads
/// differently: the rounds of a passing check mostly add nothing here.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    Pending,
    Passing(degraded::Recent),
    Failing(Failure, degraded::Recent),
}

impl Reading {
    pub fn of(check: &Observed) -> Reading {
        match check.seen {
            Seen::Pending => Reading::Pending,
            Seen::Passing => Reading::Passing(degraded::recent(check.history)),
            Seen::Failing(failure) => {
                Reading::Failing(failure.clone(), degraded::recent(check.history))
            }
        }
    }
}

/// Diagnoses the node, in [`Code::ALL`] order, each code at most once.
pub fn diagnose(
    checks: &[Observed],
    namespaces: &[NetnsStatus],
    config_error: Option<&str>,
) -> Vec<Diagnosis> {
    let mut found = Vec::new();
    if let Some(error) = config_error {
        found.push(Code::ConfigReloadFailed.with(format!(
            "the new config was rejected; the last good one keeps running: {error}"
        )));
    }
    for ns in namespaces.iter().filter(|ns| ns.id == NetnsId::Host) {
        if let Some(reason) = &ns.unavailable {
            found.push(
                Code::HostNetnsUnavailable.with(format!("host-side checks cannot run: {reason}")),
            );
        }
    }
    found.extend(blocked_target_reachable(checks));
    // A blocked check passes on silence and fails when the path works: neither is evidence of
    // what the other diagnoses read.
    let checks: Vec<Observed> = checks
        .iter()
        .copied()
        .filter(|c| c.probe.expect == Expect::Reachable)
        .collect();
    let checks = checks.as_slice();
    let reach: Vec<Reach> = checks.iter().flat_map(reaches).collect();
    let pairs: Vec<Pair> = checks.iter().flat_map(dns_pairs).collect();

    let route = route_mismatch(checks);
    let overlap = route_overlap(checks);
    let routed = route.is_some() || overlap.is_some();
    let nothing_answers = !reach.is_empty() && reach.iter().all(|r| !r.answered);
    found.extend(route);
    found.extend(overlap);
    let stub = dns_loopback_stub(checks);
    let pod_stub = stub
        .as_ref()
        .is_some_and(|(netns, _)| netns.contains(&NetnsId::Pod));
    found.extend(stub.map(|(_, diagnosis)| diagnosis));
    let (conntrack, table_full) = conntrack_exhausted(checks);
    found.extend(conntrack);
    if nothing_answers && !routed && !table_full {
        found.push(onprem_unreachable(&reach));
    }
    if nothing_answers {
        return found;
    }
    let family = family::onprem_family_unreachable(&reach).filter(|_| !routed);
    let down = family.as_ref().map(|(down, _)| *down);
    found.extend(family.map(|(_, diagnosis)| diagnosis));
    // The family that does not cross is set aside: what is left is read as usual.
    let kept = |of: Option<Family>| down.is_none() || of != down;
    let other_family;
    let (checks, mut reach, mut pairs) = match down {
        Some(down) => {
            other_family = family::without(down, checks);
            (&other_family[..], reach, pairs)
        }
        None => (checks, reach, pairs),
    };
    reach.retain(|r| kept(r.family));
    pairs.retain(|p| kept(p.family));
    let lossy = degraded::tunnel_lossy(checks);
    let discounted;
    let (checks, reach, pairs) = if lossy.is_some() {
        discounted = degraded::discount_loss(checks);
        let mut pairs = pairs;
        degraded::discount_dns(&mut pairs);
        let reach: Vec<Reach> = discounted
            .iter()
            .flat_map(reaches)
            .filter(|r| kept(r.family))
            .collect();
        (&discounted[..], reach, pairs)
    } else {
        (checks, reach, pairs)
    };
    let slower = degraded::path_slower(checks).filter(|_| lossy.is_none());
    found.extend(lossy);
    found.extend(slower);
    let masqueraded = pod_source_address(checks, Reason::Masqueraded);
    let missing = pod_source_address(checks, Reason::NotMasqueraded);
    let unexpected = pod_source_address(checks, Reason::UnexpectedSource);
    // Pod-only failures, whatever explains them, make a server only the pod asks no evidence,
    // and the address of a name no suspect.
    let pod_failures = pod_only(&reach);
    let pod_only = pod_path_blocked(&pod_failures);
    let dns_down = onprem_dns_down(&pairs, pod_only.is_some()).filter(|_| !routed);
    let address_down = resolved_address_down(checks, &pod_failures).filter(|_| !routed);
    let source_explains = masqueraded.is_some() || missing.is_some() || unexpected.is_some();
    let blocked = pod_only.filter(|_| !routed && !source_explains);
    found.extend(masqueraded.map(|s| Code::PodIpMasqueraded.with(s)));
    found.extend(missing.map(|s| Code::MasqueradeMissing.with(s)));
    found.extend(unexpected.map(|s| Code::MasqueradeUnexpected.with(s)));
    found.extend(blocked);
    found.extend(dns_down);
    found.extend(dns_tcp_blocked(&pairs));
    found.extend(cluster_dns_forwarding(&pairs).filter(|_| !pod_stub));
    found.extend(onprem_dns_wrong_answer(&pairs));
    found.extend(cluster_dns_wrong_answer(&pairs));
    let blackhole = pmtu_blackhole(checks);
    let stalls_explained = blackhole.is_some();
    found.extend(blackhole);
    found.extend(path_mtu_low(checks));
    found.extend(onprem_service_down(checks).filter(|_| !routed));
    found.extend(address_down);
    found.extend(tls_failure(checks, stalls_explained));
    found.extend(service_error(checks));
    found
}

/// Checks with `expect: blocked` whose target answered: the segmentation they prove is gone.
fn blocked_target_reachable(checks: &[Observed]) -> Option<Diagnosis> {
    let mut reached: BTreeMap<String, Witnesses> = BTreeMap::new();
    for check in checks.iter().filter(|c| c.probe.expect == Expect::Blocked) {
        if check.failure().map(|f| f.reason) != Some(Reason::NotBlocked) {
            continue;
        }
        let targets: Vec<String> = check
            .probe
            .kind
            .targets(None)
            .into_iter()
            .map(|t| t.text)
            .collect();
        reached
            .entry(targets.join(", "))
            .or_default()
            .add(check.netns, &check.probe.name);
    }
    let parts: Vec<String> = reached
        .into_iter()
        .map(|(target, witnesses)| format!("{target} {witnesses}"))
        .collect();
    Code::BlockedTargetReachable.listing("a target that must stay blocked answers", parts)
}

/// A route check that finds the wrong route or none, or a traceroute that reached its target,
/// every hop answering, without the hop it must pass.
fn route_mismatch(checks: &[Observed]) -> Option<Diagnosis> {
    let wrong: Vec<String> = checks
        .iter()
        .filter_map(|check| {
            let failure = check.failure()?;
            let wrong = match (&check.probe.kind, &failure.measurements) {
                (ProbeKind::Route(_), _) => {
                    matches!(failure.reason, Reason::Mismatch | Reason::Unreachable)
                        && !overlapping(check)
                }
                // A silent hop may have been the expected one (routers rate-limit time
                // exceeded), so only a path that answered at every hop shows another way.
                (ProbeKind::Traceroute(_), Measurements::Traceroute(trace)) => {
                    failure.reason == Reason::Mismatch
                        && trace.reached()
                        && trace.hops.iter().all(Option::is_some)
                }
                _ => false,
            };
            wrong.then(|| failed_as(check, failure))
        })
        .collect();
    (!wrong.is_empty()).then(|| Code::RouteMismatch.with(wrong.join("; ")))
}

/// Route checks that fail because the route or the destination overlaps what must stay apart
/// from it (`not_dev`, `not_overlapping`); `route_mismatch` leaves them to this.
fn route_overlap(checks: &[Observed]) -> Option<Diagnosis> {
    let found: Vec<String> = checks
        .iter()
        .filter(|check| overlapping(check))
        .filter_map(|check| Some(failed_as(check, check.failure()?)))
        .collect();
    (!found.is_empty()).then(|| {
        Code::RouteOverlap.with(format!(
            "on-prem traffic overlaps a node or cluster range: {}",
            found.join("; ")
        ))
    })
}

/// Whether a failing route check's route or destination overlaps a range it must not.
fn overlapping(check: &Observed) -> bool {
    match (&check.probe.kind, check.failure().map(|f| &f.measurements)) {
        (ProbeKind::Route(spec), Some(Measurements::Route(report))) => report
            .route
            .as_ref()
            .is_some_and(|route| !spec.overlaps(route).is_empty()),
        _ => false,
    }
}

/// `resolv_conf` checks that find a loopback nameserver, and the namespaces they run in: the
/// pod's stub explains its own resolver failing where on-prem answers directly.
fn dns_loopback_stub(checks: &[Observed]) -> Option<(Vec<NetnsId>, Diagnosis)> {
    let found = failing_with(checks, &[Reason::LoopbackResolver]);
    (!found.is_empty()).then(|| {
        let netns = found.iter().map(|(netns, _)| *netns).collect();
        let parts: Vec<String> = found.into_iter().map(|(_, part)| part).collect();
        let diagnosis = Code::DnsLoopbackStub.with(format!(
            "resolv.conf sends queries to a loopback stub: {}",
            parts.join("; ")
        ));
        (netns, diagnosis)
    })
}

/// `conntrack` checks finding the table full or losing flows, and whether a table is full: a
/// full table drops every new flow, which explains no on-prem target answering.
fn conntrack_exhausted(checks: &[Observed]) -> (Option<Diagnosis>, bool) {
    let full = !failing_with(checks, &[Reason::ConntrackFull]).is_empty();
    let found = failing_with(checks, &[Reason::ConntrackFull, Reason::ConntrackDrops]);
    let parts: Vec<String> = found.into_iter().map(|(_, part)| part).collect();
    let diagnosis = (!parts.is_empty()).then(|| {
        Code::ConntrackExhausted.with(format!(
            "connection tracking loses flows: {}",
            parts.join("; ")
        ))
    });
    (diagnosis, full)
}

/// Failing checks whose reason is one of `reasons`: their namespace, and how each failed.
fn failing_with(checks: &[Observed], reasons: &[Reason]) -> Vec<(NetnsId, String)> {
    checks
        .iter()
        .filter_map(|check| {
            let failure = check.failure().filter(|f| reasons.contains(&f.reason))?;
            Some((check.netns, failed_as(check, failure)))
        })
        .collect()
}

/// `probe (netns): detail`, or `probe (netns, ipv6): detail` for a split probe's check.
fn failed_as(check: &Observed, failure: &Failure) -> String {
    format!("{}: {}", check.name(), failure.detail)
}

fn onprem_unreachable(reach: &[Reach]) -> Diagnosis {
    let from = namespaces(reach.iter().map(|r| r.netns));
    Code::OnpremUnreachable.with(format!(
        "no on-prem target answers from {from}: {}",
        by_target(reach.iter())
    ))
}

/// The pod's source-address checks failing with `reason`: what on-prem saw instead. The host's
/// own traffic is the node address whatever the masquerade policy, so only the pod's count.
fn pod_source_address(checks: &[Observed], reason: Reason) -> Option<String> {
    let mut seen: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for check in checks.iter().filter(|c| c.netns == NetnsId::Pod) {
        let Some(failure) = check.failure().filter(|f| f.reason == reason) else {
            continue;
        };
        let Measurements::SourceIp(report) = &failure.measurements else {
            continue;
        };
        let snat = match report.snat_observed {
            Some(true) => "; this node SNAT'd the flow",
            Some(false) => "; this node did not SNAT the flow",
            None => "",
        };
        let what = match (reason, &check.probe.kind) {
            (Reason::NotMasqueraded, _) => format!(
                "on-prem sees the pod's own {} though masquerade is expected",
                report.observed
            ),
            (Reason::UnexpectedSource, ProbeKind::SourceIp(spec)) => {
                let to = match spec.policy {
                    Policy::Expected { to: Some(to) } => to.to_string(),
                    _ => "the expected address".to_owned(),
                };
                format!(
                    "on-prem sees the pod's {} masqueraded to {} instead of {to}{snat}",
                    report.expected, report.observed
                )
            }
            _ => format!(
                "on-prem sees {} instead of the pod's own {}{snat}",
                report.observed, report.expected
            ),
        };
        seen.entry(what).or_default().push(&check.probe.name);
    }
    let parts: Vec<String> = seen
        .into_iter()
        .map(|(what, probes)| format!("{what} ({})", probes.join(", ")))
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Targets that fail from the pod but answer the same check from the host.
fn pod_only<'r, 'a>(reach: &'r [Reach<'a>]) -> Vec<&'r Reach<'a>> {
    let answered_by_host: HashSet<(&str, _, &str)> = reach
        .iter()
        .filter(|h| h.netns == NetnsId::Host && h.answered)
        .map(|h| (h.probe, h.split, h.target.as_str()))
        .collect();
    reach
        .iter()
        .filter(|r| r.netns == NetnsId::Pod && !r.answered)
        .filter(|r| answered_by_host.contains(&(r.probe, r.split, r.target.as_str())))
        .collect()
}

fn pod_path_blocked(blocked: &[&Reach]) -> Option<Diagnosis> {
    (!blocked.is_empty()).then(|| {
        Code::PodPathBlocked.with(format!(
            "from the pod no answer, from the host an answer: {}",
            by_target(blocked.iter().copied())
        ))
    })
}

/// Whether a pair's failure means the server is not serving: no answer, a refused connection,
/// SERVFAIL or REFUSED. A wrong or negative answer is the zone's content, not the server's health.
fn not_serving(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::Timeout
            | Reason::Unreachable
            | Reason::Refused
            | Reason::Reset
            | Reason::Servfail
            | Reason::DnsRefused
    )
}

/// On-prem servers that serve no pair from any namespace that asks them. With the pod path
/// blocked, a server counts only if the host asks it too.
fn onprem_dns_down(pairs: &[Pair], pod_blocked: bool) -> Option<Diagnosis> {
    let mut servers: BTreeMap<&str, Vec<&Pair>> = BTreeMap::new();
    for pair in pairs.iter().filter(|p| p.asked == Asked::Onprem) {
        servers.entry(&pair.server).or_default().push(pair);
    }
    let down: Vec<String> = servers
        .into_iter()
        .filter(|(_, pairs)| pairs.iter().all(|p| p.failure.is_some_and(not_serving)))
        .filter(|(_, pairs)| !pod_blocked || pairs.iter().any(|p| p.netns == NetnsId::Host))
        .map(|(server, pairs)| {
            let from = namespaces(pairs.iter().map(|p| p.netns));
            format!("{server} from {from} ({})", pair_results(&pairs))
        })
        .collect();
    (!down.is_empty()).then(|| {
        Code::OnpremDnsDown.with(format!("on-prem DNS does not serve: {}", down.join("; ")))
    })
}

/// On-prem servers that answer over UDP but not over TCP, in the same check and namespace.
fn dns_tcp_blocked(pairs: &[Pair]) -> Option<Diagnosis> {
    let udp_answers: HashSet<(&str, NetnsId, &str)> = pairs
        .iter()
        .filter(|p| p.transport == DnsTransport::Udp)
        .filter(|p| p.failure.map_or(Some(true), Reason::answered) == Some(true))
        .map(|p| (p.probe, p.netns, p.server.as_str()))
        .collect();
    let blocked: Vec<&Pair> = pairs
        .iter()
        .filter(|p| p.asked == Asked::Onprem && p.transport == DnsTransport::Tcp)
        .filter(|p| {
            p.failure.is_some_and(|r| {
                matches!(
                    r,
                    Reason::Timeout | Reason::Unreachable | Reason::Refused | Reason::Reset
                )
            })
        })
        .filter(|p| udp_answers.contains(&(p.probe, p.netns, p.server.as_str())))
        .collect();
    (!blocked.is_empty()).then(|| {
        Code::DnsTcpBlocked.with(format!(
            "DNS over TCP fails while UDP answers: {}",
            pairs_by_server(&blocked)
        ))
    })
}

/// The pod's own resolver fails a name that an on-prem server, asked directly by the same check
/// from the pod over the same transport, answers. Comparing like with like keeps a TCP/53 block,
/// which fails the cluster DNS's own TCP forwarding too, out of this.
fn cluster_dns_forwarding(pairs: &[Pair]) -> Option<Diagnosis> {
    let pod = |p: &&Pair| p.netns == NetnsId::Pod;
    let mut answered_directly: HashMap<(&str, &str), &str> = HashMap::new();
    for p in pairs.iter().filter(pod) {
        if p.asked == Asked::Onprem && p.failure.is_none() {
            answered_directly
                .entry((p.probe, p.transport.as_str()))
                .or_insert(&p.server);
        }
    }
    let mut failing: BTreeMap<(&str, &str, &str), Vec<&Pair>> = BTreeMap::new();
    for system in pairs
        .iter()
        .filter(pod)
        .filter(|p| p.asked == Asked::System)
    {
        // A wrong answer is an answer: `cluster_dns_wrong_answer`'s, not a forwarding failure.
        if matches!(system.failure, None | Some(Reason::Mismatch)) {
            continue;
        }
        if let Some(direct) = answered_directly.get(&(system.probe, system.transport.as_str())) {
            failing
                .entry((system.probe, system.query, direct))
                .or_default()
                .push(system);
        }
    }
    let parts: Vec<String> = failing
        .into_iter()
        .map(|((probe, query, direct), system)| {
            format!(
                "the pod's resolver fails {query} ({}) while {direct} answers it directly ({probe})",
                pair_results(&system)
            )
        })
        .collect();
    (!parts.is_empty()).then(|| Code::ClusterDnsForwarding.with(parts.join("; ")))
}

fn pmtu_blackhole(checks: &[Observed]) -> Option<Diagnosis> {
    let parts = path_mtu_findings(checks, |spec, failure, report| {
        let over = report
            .mtu
            .map(|m| format!(" over {m} bytes"))
            .unwrap_or_default();
        let missing = match round_family(spec, failure) {
            Family::Ipv6 => "Packet Too Big",
            Family::Ipv4 => "fragmentation-needed",
        };
        report.blackhole.then(|| {
            format!(
                "don't-fragment packets to {}{over} vanish without {missing}",
                spec.target
            )
        })
    });
    (!parts.is_empty()).then(|| Code::PmtuBlackhole.with(parts.join("; ")))
}

/// The family a `path_mtu` round measured: its literal target's, the one its name resolved to,
/// or, when the round never said (a gateway), the one the spec asks for.
fn round_family(spec: &PathMtuSpec, failure: &Failure) -> Family {
    match (address(&spec.target, Some(failure)), spec.family) {
        (Some(ip), _) => Family::of(ip),
        (None, resolver::Family::Ipv6) => Family::Ipv6,
        (None, _) => Family::Ipv4,
    }
}

/// `path_mtu` checks whose path carries less than their `min` and answers the larger sizes with
/// fragmentation-needed: no black hole, but a narrower path than the one configured.
fn path_mtu_low(checks: &[Observed]) -> Option<Diagnosis> {
    let parts = path_mtu_findings(checks, |spec, failure, report| {
        let (Reason::MtuLow, Some(mtu), Some(min)) = (failure.reason, report.mtu, spec.min) else {
            return None;
        };
        Some(format!(
            "{} carries {mtu} bytes, below the minimum {min}",
            spec.target
        ))
    });
    Code::PathMtuLow.listing("the path MTU is below the configured minimum", parts)
}

/// What `finding` says of each failing `path_mtu` check, one entry per finding with its
/// witnesses: `... vanish without fragmentation-needed, from pod and host (mtu)`.
fn path_mtu_findings(
    checks: &[Observed],
    finding: impl Fn(&PathMtuSpec, &Failure, &PathMtuReport) -> Option<String>,
) -> Vec<String> {
    let mut found: BTreeMap<String, Witnesses> = BTreeMap::new();
    for check in checks {
        let (ProbeKind::PathMtu(spec), Some(failure)) = (&check.probe.kind, check.failure()) else {
            continue;
        };
        let Measurements::PathMtu(report) = &failure.measurements else {
            continue;
        };
        if let Some(what) = finding(spec, failure, report) {
            found
                .entry(what)
                .or_default()
                .add(check.netns, &check.probe.name);
        }
    }
    found
        .into_iter()
        .map(|(what, witnesses)| format!("{what}, {witnesses}"))
        .collect()
}

/// On-prem servers that answer a name outside the check's expectation, from any namespace.
fn onprem_dns_wrong_answer(pairs: &[Pair]) -> Option<Diagnosis> {
    let mut wrong: BTreeMap<(&str, &str, &str), Witnesses> = BTreeMap::new();
    for p in pairs.iter().filter(|p| p.asked == Asked::Onprem) {
        if let Some(answer) = p.wrong {
            wrong
                .entry((&p.server, p.query, answer))
                .or_default()
                .add(p.netns, p.probe);
        }
    }
    let parts: Vec<String> = wrong
        .into_iter()
        .map(|((server, query, answer), witnesses)| {
            format!("{server} answers {query} with {answer} {witnesses}")
        })
        .collect();
    Code::OnpremDnsWrongAnswer.listing("the on-prem DNS server answers wrong", parts)
}

/// A namespace's own resolver answers a name outside the expectation while an on-prem server,
/// asked directly by the same check from the same namespace, answers it as expected: the fault
/// is the resolver's (a CoreDNS entry, a forward elsewhere), not on-prem's.
fn cluster_dns_wrong_answer(pairs: &[Pair]) -> Option<Diagnosis> {
    let mut right: HashMap<(&str, NetnsId), &str> = HashMap::new();
    for p in pairs
        .iter()
        .filter(|p| p.asked == Asked::Onprem && p.failure.is_none())
    {
        right.entry((p.probe, p.netns)).or_insert(&p.server);
    }
    let mut wrong: BTreeSet<(NetnsId, &str, &str, &str, &str)> = BTreeSet::new();
    for p in pairs.iter().filter(|p| p.asked == Asked::System) {
        if let (Some(answer), Some(direct)) = (p.wrong, right.get(&(p.probe, p.netns))) {
            wrong.insert((p.netns, p.query, answer, direct, p.probe));
        }
    }
    let parts: Vec<String> = wrong
        .into_iter()
        .map(|(netns, query, answer, direct, probe)| {
            format!(
                "the {netns}'s resolver answers {query} with {answer} while {direct} answers it \
                 as expected ({probe})"
            )
        })
        .collect();
    (!parts.is_empty()).then(|| Code::ClusterDnsWrongAnswer.with(named(parts)))
}

/// Checks of one on-prem service that time out or are refused from every namespace that runs
/// them, the host's among them, while in each of these namespaces another on-prem check
/// passes: the path works, the service (or its host's firewall) does not. An address a name resolved to is
/// `resolved_address_down`'s.
fn onprem_service_down(checks: &[Observed]) -> Option<Diagnosis> {
    let mut down: BTreeMap<String, Gives> = BTreeMap::new();
    for check in checks {
        let Some((failure, targets)) = service_failure(check) else {
            continue;
        };
        let mut runs = checks.iter().filter(|c| c.probe.name == check.probe.name);
        let everywhere = runs.clone().all(|c| {
            matches!(c.seen, Seen::Pending)
                || (service_failure(c).is_some() && path_answers(checks, c))
        });
        // From the pod alone a silent service and a filtered pod path look the same.
        let host_too = runs.any(|c| c.netns == NetnsId::Host && c.failure().is_some());
        if !(everywhere && host_too) {
            continue;
        }
        for target in targets {
            down.entry(target)
                .or_default()
                .add(failure.reason, check.netns, &check.probe.name);
        }
    }
    let parts: Vec<String> = down
        .into_iter()
        .map(|(target, gives)| format!("{target} {gives}"))
        .collect();
    Code::OnpremServiceDown.listing(
        "one on-prem service does not answer while the rest of on-prem does",
        parts,
    )
}

/// A failing check's on-prem targets that time out or refuse before anything else came back,
/// for the kinds that ask a service (not a DNS server, which is `onprem_dns_down`'s, nor the
/// path itself); none for a name that resolved.
fn service_failure<'a>(check: &Observed<'a>) -> Option<(&'a Failure, Vec<String>)> {
    let failure = check.failure().filter(|f| f.resolved.is_none())?;
    let asks_a_service = matches!(
        check.probe.kind,
        ProbeKind::Tcp(_) | ProbeKind::Icmp(_) | ProbeKind::Http(_) | ProbeKind::SourceIp(_)
    );
    if !asks_a_service {
        return None;
    }
    let targets: Vec<String> = check
        .probe
        .kind
        .targets(Some(failure))
        .into_iter()
        .filter(|t| remote(&t.host))
        .filter(|t| {
            matches!(
                (failure.reason, t.answered),
                (Reason::Timeout | Reason::Unreachable, Some(false))
                    | (Reason::Refused, Some(true))
            )
        })
        // A URL says its port where the authority may not.
        .map(|t| match &check.probe.kind {
            ProbeKind::Http(spec) => spec.url.to_string(),
            _ => t.text,
        })
        .collect();
    (!targets.is_empty()).then_some((failure, targets))
}

/// Whether another check from `check`'s namespace passes against an on-prem target: the path
/// from there carries traffic.
fn path_answers(checks: &[Observed], check: &Observed) -> bool {
    checks.iter().any(|other| {
        other.netns == check.netns
            && other.probe.name != check.probe.name
            && matches!(other.seen, Seen::Passing)
            && other
                .probe
                .kind
                .targets(None)
                .iter()
                .any(|t| remote(&t.host))
    })
}

/// Checks whose on-prem host name resolved, and whose address then timed out, was unreachable
/// or refused the connection. A target failing from the pod only is the pod path's.
fn resolved_address_down(checks: &[Observed], pod_failures: &[&Reach]) -> Option<Diagnosis> {
    let mut down: BTreeMap<(String, IpAddr), Gives> = BTreeMap::new();
    for check in checks {
        let Some(failure) = check.failure() else {
            continue;
        };
        let (Some(address), Reason::Timeout | Reason::Unreachable | Reason::Refused) =
            (failure.resolved, failure.reason)
        else {
            continue;
        };
        let named = check
            .probe
            .kind
            .targets(Some(failure))
            .into_iter()
            .find(|t| {
                matches!(t.host, Host::Name(_))
                    && remote(&t.host)
                    && !pod_failures.iter().any(|r| {
                        (r.probe, r.netns, r.split, r.target.as_str())
                            == (
                                check.probe.name.as_str(),
                                check.netns,
                                check.split,
                                t.text.as_str(),
                            )
                    })
            });
        let Some(target) = named else {
            continue;
        };
        down.entry((target.text, address)).or_default().add(
            failure.reason,
            check.netns,
            &check.probe.name,
        );
    }
    let parts: Vec<String> = down
        .into_iter()
        .map(|((target, address), gives)| format!("{target} resolves to {address}, which {gives}"))
        .collect();
    Code::ResolvedAddressDown.listing("the name resolves, the address does not answer", parts)
}

/// `http` checks whose server answered TCP and failed TLS: a typed TLS failure (which comes only
/// after the connect), or a round that connected and then stalled in the handshake, unless a
/// PMTU black hole (`stalls_explained`) explains the stall.
fn tls_failure(checks: &[Observed], stalls_explained: bool) -> Option<Diagnosis> {
    let parts = http_findings(checks, |_, spec, failure, report| match failure.reason {
        Reason::TlsUntrusted | Reason::TlsExpired | Reason::TlsNameMismatch => {
            report.cert_problem.as_ref().map(ToString::to_string)
        }
        Reason::TlsHandshake => Some(format!("the handshake fails: {}", failure.detail)),
        Reason::Timeout | Reason::Reset
            if !stalls_explained
                && spec.url.https
                && report.ran(Phase::Connect)
                && !report.ran(Phase::Tls) =>
        {
            Some(format!(
                "the handshake stalls after the TCP connect ({})",
                failure.reason
            ))
        }
        _ => None,
    });
    Code::TlsFailure.listing("the server answers TCP, TLS fails", parts)
}

/// `http` checks answered with a 5xx or a body that does not match, from a namespace where
/// another on-prem check passes: the path carries traffic, the service fails.
fn service_error(checks: &[Observed]) -> Option<Diagnosis> {
    let parts = http_findings(checks, |check, _, failure, report| {
        let answer = match (failure.reason, report.status) {
            (Reason::HttpStatus, Some(status)) if status >= 500 => format!("answers {status}"),
            (Reason::BodyMismatch, Some(status)) => {
                format!("answers {status} without the expected body")
            }
            _ => return None,
        };
        path_answers(checks, check).then_some(answer)
    });
    Code::ServiceError.listing("the service fails while its path answers", parts)
}

/// What `finding` says of each failing `http` check, one entry per URL and finding:
/// `https://api.corp.example/ from pod and host (api): answers 503`.
fn http_findings(
    checks: &[Observed],
    finding: impl Fn(&Observed, &HttpSpec, &Failure, &HttpReport) -> Option<String>,
) -> Vec<String> {
    let mut found: BTreeMap<(String, String), Witnesses> = BTreeMap::new();
    for check in checks {
        let (ProbeKind::Http(spec), Some(failure)) = (&check.probe.kind, check.failure()) else {
            continue;
        };
        let Measurements::Http(report) = &failure.measurements else {
            continue;
        };
        if let Some(what) = finding(check, spec, failure, report) {
            found
                .entry((spec.url.to_string(), what))
                .or_default()
                .add(check.netns, &check.probe.name);
        }
    }
    found
        .into_iter()
        .map(|((url, what), witnesses)| format!("{url} {witnesses}: {what}"))
        .collect()
}

// === summaries ===

/// At most this many targets or servers are named in a summary; the rest are counted.
const NAMED: usize = 5;

/// `pod and host`, `pod`.
fn namespaces(ids: impl Iterator<Item = NetnsId>) -> String {
    let mut ids: Vec<NetnsId> = ids.collect();
    ids.sort();
    ids.dedup();
    let names: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
    names.join(" and ")
}

/// `198.19.10.1:389 (dc1-ldap), 198.19.10.1 (dc1-ping, corp-db)`, in the order first seen.
fn by_target<'a>(reach: impl Iterator<Item = &'a Reach<'a>>) -> String {
    let mut targets: Vec<(&str, Vec<&str>)> = Vec::new();
    for r in reach {
        match targets.iter_mut().find(|(t, _)| *t == r.target) {
            Some((_, probes)) if probes.contains(&r.probe) => {}
            Some((_, probes)) => probes.push(r.probe),
            None => targets.push((&r.target, vec![r.probe])),
        }
    }
    named(
        targets
            .into_iter()
            .map(|(target, probes)| format!("{target} ({})", probes.join(", ")))
            .collect(),
    )
}

/// `198.19.10.1 from pod and host (onprem-dns)`, one entry per server.
fn pairs_by_server(pairs: &[&Pair]) -> String {
    let mut servers: BTreeMap<&str, Witnesses> = BTreeMap::new();
    for p in pairs {
        servers.entry(&p.server).or_default().add(p.netns, p.probe);
    }
    named(
        servers
            .into_iter()
            .map(|(server, witnesses)| format!("{server} {witnesses}"))
            .collect(),
    )
}

/// The namespaces and probes that showed one thing: `from pod and host (mtu)`.
#[derive(Default)]
struct Witnesses<'a> {
    netns: Vec<NetnsId>,
    probes: Vec<&'a str>,
}

impl<'a> Witnesses<'a> {
    fn add(&mut self, netns: NetnsId, probe: &'a str) {
        self.netns.push(netns);
        if !self.probes.contains(&probe) {
            self.probes.push(probe);
        }
    }
}

impl fmt::Display for Witnesses<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "from {} ({})",
            namespaces(self.netns.iter().copied()),
            self.probes.join(", ")
        )
    }
}

/// The failures one target gave and who saw them: `gives refused and timeout from pod and host
/// (app)`.
#[derive(Default)]
struct Gives<'a> {
    reasons: Vec<Reason>,
    witnesses: Witnesses<'a>,
}

impl<'a> Gives<'a> {
    fn add(&mut self, reason: Reason, netns: NetnsId, probe: &'a str) {
        if !self.reasons.contains(&reason) {
            self.reasons.push(reason);
        }
        self.witnesses.add(netns, probe);
    }
}

impl fmt::Display for Gives<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reasons: Vec<&str> = self.reasons.iter().map(|r| r.as_str()).collect();
        write!(f, "gives {} {}", reasons.join(" and "), self.witnesses)
    }
}

/// `udp: timeout, tcp: refused`: each transport's first failure.
fn pair_results(pairs: &[&Pair]) -> String {
    let mut seen: Vec<(DnsTransport, &str)> = Vec::new();
    for p in pairs {
        if seen.iter().any(|(t, _)| *t == p.transport) {
            continue;
        }
        seen.push((p.transport, p.failure.map_or("success", Reason::as_str)));
    }
    let parts: Vec<String> = seen
        .into_iter()
        .map(|(t, result)| format!("{}: {result}", t.as_str()))
        .collect();
    parts.join(", ")
}

fn named(mut items: Vec<String>) -> String {
    let more = items.len().saturating_sub(NAMED);
    items.truncate(NAMED);
    let mut text = items.join(", ");
    if more > 0 {
        text.push_str(&format!(" (+{more} more)"));
    }
    text
}
