//! Table cases for one address family across the tunnel: IPv6 down while IPv4 works and the
//! reverse, what that explains and what it does not.

use super::*;

const V6: &str = "2001:2:0:1910::1";

/// IPv6 twins of [`CONFIG`]'s on-prem checks, at two on-prem addresses, a DNS check asking a
/// server over each family, and the host's IPv6 route.
const DUAL: &str = r#"
  - { name: ldap6, tcp: { target: "[2001:2:0:1910::1]:389" } }
  - { name: ping6, icmp: { target: "2001:2:0:1910::1" } }
  - { name: gw6, icmp: { target: "2001:2:0:1910::fe" } }
  - name: db6
    dns: { query: db6.corp.example, type: AAAA, servers: ["2001:2:0:1910::1"] }
  - name: dual-dns
    dns: { query: db.corp.example, servers: [198.19.10.1, "2001:2:0:1910::1"] }
  - { name: web6, http: { url: "http://[2001:2:0:1910::1]/healthz" } }
  - name: route6
    netns: [host]
    route: { destination: "2001:2:0:1900::/56", via: "2001:2:0:1801::1" }
"#;

/// Only one on-prem IPv6 address is checked.
const ONE_ADDRESS: &str = r#"
  - { name: ldap6, tcp: { target: "[2001:2:0:1910::1]:389" } }
  - { name: ping6, icmp: { target: "2001:2:0:1910::1" } }
"#;

/// Probes split by `family: both` at two dual-stack names: the on-prem host's and its gateway's.
const SPLIT: &str = r#"
  - { name: dual-ldap, tcp: { target: "dual.corp.example:389", family: both } }
  - { name: dual-ping, icmp: { target: dual.corp.example, family: both } }
  - { name: dual-gw, icmp: { target: gw.corp.example, family: both } }
"#;

/// The IPv6 halves of [`SPLIT`]'s checks as a tunnel that drops IPv6 fails them, in `netns`:
/// each name resolved to its AAAA, which then timed out. The IPv4 halves pass.
fn split_ipv6_down(netns: NetnsId) -> Vec<(&'static str, NetnsId, Failure)> {
    vec![
        ("dual-ldap/ipv6", netns, resolved(Reason::Timeout, V6)),
        ("dual-ping/ipv6", netns, resolved(Reason::Timeout, V6)),
        ("dual-gw/ipv6", netns, resolved(Reason::Timeout, V6_GW)),
    ]
}

const V6_GW: &str = "2001:2:0:1910::fe";

/// The IPv6 checks of [`DUAL`] as a tunnel that drops IPv6 fails them, in `netns`; the DNS
/// check asking both families keeps its IPv4 answer.
fn ipv6_down(netns: NetnsId) -> Vec<(&'static str, NetnsId, Failure)> {
    vec![
        ("ldap6", netns, timeout()),
        ("ping6", netns, timeout()),
        ("gw6", netns, timeout()),
        ("db6", netns, dns(&[(V6, UDP, Some(Reason::Timeout))])),
        (
            "dual-dns",
            netns,
            dns(&[(ONPREM_DNS, UDP, None), (V6, UDP, Some(Reason::Timeout))]),
        ),
        ("web6", netns, http(Reason::Timeout, false, None)),
    ]
}

/// [`CONFIG`]'s on-prem checks as a tunnel that drops IPv4 fails them, and the DNS check asking
/// both families losing its IPv4 server, in `netns`.
fn ipv4_down(netns: NetnsId) -> Vec<(&'static str, NetnsId, Failure)> {
    let mut failing = tunnel_down(netns);
    failing.push((
        "dual-dns",
        netns,
        dns(&[(ONPREM_DNS, UDP, Some(Reason::Timeout)), (V6, UDP, None)]),
    ));
    failing
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "IPv6 across the tunnel down while IPv4 works: one diagnosis, not its symptoms",
            extra: DUAL,
            failing: both(ipv6_down),
            want: vec![Code::OnpremFamilyUnreachable],
            summary: Some(
                "IPv6 across the tunnel is down while IPv4 works: no IPv6 on-prem target answers \
                 from pod and host: [2001:2:0:1910::1]:389 (ldap6), 2001:2:0:1910::1 (ping6, \
                 db6, dual-dns), 2001:2:0:1910::fe (gw6), [2001:2:0:1910::1] (web6); over IPv4 \
                 these answer: 198.19.10.1:389 (ldap), 198.19.10.1 (ping, corp-db, mtu, trace, \
                 dual-dns), 198.19.10.53 (pod-dns), 198.19.10.1:3478 (pod-ip, kubenet)",
            ),
            ..Case::default()
        },
        Case {
            name: "the reverse: IPv4 across the tunnel down while IPv6 works",
            extra: DUAL,
            failing: both(ipv4_down),
            want: vec![Code::OnpremFamilyUnreachable],
            summary: Some(
                "IPv4 across the tunnel is down while IPv6 works: no IPv4 on-prem target answers \
                 from pod and host: 198.19.10.1:389 (ldap), 198.19.10.1 (ping, corp-db, mtu, \
                 trace, dual-dns), 198.19.10.53 (pod-dns), 198.19.10.1:3478 (pod-ip, kubenet); \
                 over IPv6 these answer: [2001:2:0:1910::1]:389 (ldap6), \
                 2001:2:0:1910::1 (ping6, db6, dual-dns), 2001:2:0:1910::fe (gw6), \
                 [2001:2:0:1910::1] (web6)",
            ),
            ..Case::default()
        },
        Case {
            name: "IPv6 down does not hide an IPv4 service that refuses",
            extra: DUAL,
            failing: {
                let mut failing = both(ipv6_down);
                failing.push(("ldap", Pod, fail(Reason::Refused)));
                failing.push(("ldap", Host, fail(Reason::Refused)));
                failing
            },
            want: vec![Code::OnpremFamilyUnreachable, Code::OnpremServiceDown],
            ..Case::default()
        },
        Case {
            name: "one silent IPv6 host while another IPv6 host answers is that host's",
            extra: DUAL,
            failing: both(ipv6_down)
                .into_iter()
                .filter(|(probe, _, _)| *probe != "gw6")
                .collect(),
            want: vec![Code::OnpremDnsDown, Code::OnpremServiceDown],
            ..Case::default()
        },
        Case {
            name: "the only IPv6 address checked is silent: a host down, not the family",
            extra: ONE_ADDRESS,
            failing: vec![
                ("ldap6", Pod, timeout()),
                ("ldap6", Host, timeout()),
                ("ping6", Pod, timeout()),
                ("ping6", Host, timeout()),
            ],
            want: vec![Code::OnpremServiceDown],
            ..Case::default()
        },
        Case {
            name: "a wrong IPv6 route explains IPv6 not crossing",
            extra: DUAL,
            failing: {
                let mut failing = both(ipv6_down);
                failing.push(("route6", Host, fail(Reason::Mismatch)));
                failing
            },
            want: vec![Code::RouteMismatch],
            ..Case::default()
        },
        Case {
            name: "the IPv6 halves of `both` checks fail while their IPv4 halves pass",
            extra: SPLIT,
            failing: both(split_ipv6_down),
            want: vec![Code::OnpremFamilyUnreachable],
            summary: Some(
                "IPv6 across the tunnel is down while IPv4 works: no IPv6 on-prem target answers \
                 from pod and host: dual.corp.example:389 (dual-ldap), dual.corp.example \
                 (dual-ping), gw.corp.example (dual-gw); over IPv4 these answer: \
                 198.19.10.1:389 (ldap), 198.19.10.1 (ping, corp-db, mtu, trace), 198.19.10.53 \
                 (pod-dns), 198.19.10.1:3478 (pod-ip, kubenet), dual.corp.example:389 \
                 (dual-ldap) (+2 more)",
            ),
            ..Case::default()
        },
        Case {
            name: "one split name silent over IPv6: its address, and the halves stay apart",
            extra: SPLIT,
            // Only the pod's IPv6 half and the host's fail; the host's IPv4 half answering
            // is no witness that the pod's IPv6 one is the pod path's.
            failing: both(split_ipv6_down)
                .into_iter()
                .filter(|(probe, _, _)| probe.starts_with("dual-ldap"))
                .collect(),
            want: vec![Code::ResolvedAddressDown],
            summary: Some(
                "the name resolves, the address does not answer: dual.corp.example:389 resolves \
                 to 2001:2:0:1910::1, which gives timeout from pod and host (dual-ldap)",
            ),
            ..Case::default()
        },
        Case {
            name: "a split check's IPv6 half failing from the pod alone is the pod path's",
            extra: SPLIT,
            failing: vec![("dual-ldap/ipv6", Pod, resolved(Reason::Timeout, V6))],
            want: vec![Code::PodPathBlocked],
            ..Case::default()
        },
        Case {
            name: "both families down is the tunnel down",
            extra: DUAL,
            failing: {
                let mut failing = both(tunnel_down);
                failing.extend(both(ipv6_down));
                failing.retain(|(probe, _, _)| *probe != "dual-dns");
                let silent = dns(&[
                    (ONPREM_DNS, UDP, Some(Reason::Timeout)),
                    (V6, UDP, Some(Reason::Timeout)),
                ]);
                failing.push(("dual-dns", Pod, silent.clone()));
                failing.push(("dual-dns", Host, silent));
                failing
            },
            want: vec![Code::OnpremUnreachable],
            ..Case::default()
        },
    ]
}
