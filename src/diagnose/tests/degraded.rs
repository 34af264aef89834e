//! Table cases for a degraded tunnel: loss read from pings and from flapping checks, what loss
//! explains and what it does not, and round trips that jump above their baseline.

use super::*;

fn sample(ok: bool, result: &'static str, rtt_ms: u64, loss: Option<f64>) -> Sample {
    Sample {
        ok,
        result,
        duration: Duration::from_millis(rtt_ms),
        round_trip: Duration::from_millis(rtt_ms),
        loss,
        at: SystemTime::UNIX_EPOCH,
    }
}

/// Echo rounds with these loss ratios; a round that lost everything failed.
fn echoes(losses: &[f64]) -> History {
    losses
        .iter()
        .map(|l| match *l < 1.0 {
            true => sample(true, "success", 2, Some(*l)),
            false => sample(false, "timeout", 1000, Some(*l)),
        })
        .collect()
}

/// Rounds of a check without loss of its own: `+` passed, `-` timed out, `r` refused.
fn rounds(pattern: &str) -> History {
    pattern
        .chars()
        .map(|c| match c {
            '+' => sample(true, "success", 2, None),
            'r' => sample(false, "refused", 2, None),
            _ => sample(false, "timeout", 1000, None),
        })
        .collect()
}

/// Passing rounds with these round trips.
fn rtts(ms: &[u64]) -> History {
    ms.iter()
        .map(|ms| sample(true, "success", *ms, Some(0.0)))
        .collect()
}

/// Both namespaces' pings losing a share of their echoes, as a third of the tunnel's packets
/// dropped makes them.
fn lossy_pings() -> Vec<(&'static str, NetnsId, History)> {
    vec![
        ("ping", Pod, echoes(&[0.0, 0.0, 0.0, 0.6, 0.4, 0.5])),
        ("ping", Host, echoes(&[0.0, 0.0, 0.0, 0.5, 0.7, 0.3])),
    ]
}

/// What loss does to the DNS check today: timeouts over TCP and from the cluster DNS (which
/// answers SERVFAIL when its upstream does not) while a UDP query to on-prem gets through.
fn dns_under_loss() -> Failure {
    dns(&[
        ("system", UDP, Some(Reason::Servfail)),
        ("system", TCP, Some(Reason::Timeout)),
        (ONPREM_DNS, UDP, None),
        (ONPREM_DNS, TCP, Some(Reason::Timeout)),
    ])
}

const SLOWER: &[u64] = &[1, 1, 2, 1, 1, 1, 2, 30, 31, 30];

pub(super) fn cases() -> Vec<Case> {
    let everywhere = |probe: &'static str, failure: Failure| {
        vec![(probe, Pod, failure.clone()), (probe, Host, failure)]
    };
    vec![
        Case {
            name: "a third of the tunnel's packets dropped: loss, not its DNS symptoms",
            failing: vec![
                ("corp-db", Pod, dns_under_loss()),
                ("corp-db", Host, dns_under_loss()),
                // The pod's connection lost and the host's not: a pod path block, but for loss.
                ("ldap", Pod, timeout()),
            ],
            history: {
                let mut history = lossy_pings();
                history.push(("ldap", Pod, rounds("++-+-")));
                history
            },
            want: vec![Code::TunnelLossy],
            summary: Some(
                "packets across the tunnel are lost, not all: ldap (pod): 3 of the last 5 rounds \
                 passed, the others timed out, ping (pod): echo loss 50% in 3 of the last 5 \
                 rounds, ping (host): echo loss 50% in 3 of the last 5 rounds",
            ),
            ..Case::default()
        },
        Case {
            name: "checks that pass and time out by turns show loss without a ping",
            failing: vec![("ldap", Pod, timeout()), ("pod-ip", Host, timeout())],
            history: vec![
                ("ldap", Pod, rounds("+-+-+-")),
                ("pod-ip", Host, rounds("+--+-")),
            ],
            want: vec![Code::TunnelLossy],
            ..Case::default()
        },
        Case {
            name: "one round, as `check` runs it, shows loss on both sides",
            failing: vec![("corp-db", Pod, dns_under_loss())],
            history: vec![
                ("ping", Pod, echoes(&[0.4])),
                ("ping", Host, echoes(&[0.6])),
            ],
            want: vec![Code::TunnelLossy],
            ..Case::default()
        },
        Case {
            name: "one service flapping from pod and host is one witness, and its own trouble",
            failing: vec![("ldap", Pod, timeout()), ("ldap", Host, timeout())],
            history: vec![
                ("ldap", Pod, rounds("-+---")),
                ("ldap", Host, rounds("+-+--")),
            ],
            want: vec![Code::OnpremServiceDown],
            ..Case::default()
        },
        Case {
            name: "one lossy ping is its target's business",
            history: vec![("ping", Pod, echoes(&[0.3, 0.6, 0.3, 0.3]))],
            ..Case::default()
        },
        Case {
            name: "a lost echo now and then is noise",
            history: vec![
                ("ping", Pod, echoes(&[0.0, 0.33, 0.0, 0.0, 0.0])),
                ("ping", Host, echoes(&[0.0, 0.0, 0.0, 0.0, 0.33])),
            ],
            ..Case::default()
        },
        Case {
            name: "an outage that ended is no loss",
            history: vec![
                ("ldap", Pod, rounds("---+++")),
                ("ldap", Host, rounds("--+++")),
            ],
            ..Case::default()
        },
        Case {
            name: "refusals by turns are a flapping service, not loss",
            failing: vec![("ldap", Pod, fail(Reason::Refused))],
            history: vec![
                ("ldap", Pod, rounds("+r+r+")),
                ("ldap", Host, rounds("+r+r+")),
            ],
            want: vec![],
            ..Case::default()
        },
        Case {
            name: "a dead tunnel is only itself, whatever its last rounds lost",
            failing: both_down(),
            history: vec![
                ("ping", Pod, echoes(&[0.0, 0.3, 0.6, 1.0, 1.0])),
                ("ping", Host, echoes(&[0.0, 0.5, 0.3, 1.0, 1.0])),
            ],
            want: vec![Code::OnpremUnreachable],
            ..Case::default()
        },
        Case {
            name: "a service that times out from both sides under loss is the loss's",
            failing: vec![("ldap", Pod, timeout()), ("ldap", Host, timeout())],
            history: lossy_pings(),
            want: vec![Code::TunnelLossy],
            ..Case::default()
        },
        Case {
            name: "a lossy tunnel and a lost stub zone yield both",
            failing: vec![(
                "corp-db",
                Pod,
                dns(&[
                    ("system", UDP, Some(Reason::Nxdomain)),
                    ("system", TCP, Some(Reason::Timeout)),
                    (ONPREM_DNS, UDP, None),
                    (ONPREM_DNS, TCP, Some(Reason::Timeout)),
                ]),
            )],
            history: lossy_pings(),
            want: vec![Code::TunnelLossy, Code::ClusterDnsForwarding],
            ..Case::default()
        },
        Case {
            name: "a DNS server that refuses TCP under loss is still down",
            failing: vec![
                ("corp-db", Pod, dns_server_down()),
                ("corp-db", Host, dns_server_down()),
            ],
            history: lossy_pings(),
            want: vec![Code::TunnelLossy, Code::OnpremDnsDown],
            ..Case::default()
        },
        Case {
            name: "a black hole that comes and goes with the loss is the loss's",
            failing: vec![("mtu", Pod, path_mtu(Reason::Blackhole, Some(1123), true))],
            history: {
                let mut history = lossy_pings();
                history.push(("mtu", Pod, rounds("++r+r")));
                history
            },
            want: vec![Code::TunnelLossy],
            ..Case::default()
        },
        Case {
            name: "a black hole in every round stands beside the loss",
            failing: everywhere("mtu", path_mtu(Reason::Blackhole, Some(1400), true)),
            history: lossy_pings(),
            want: vec![Code::TunnelLossy, Code::PmtuBlackhole],
            ..Case::default()
        },
        Case {
            name: "a lossy tunnel and a certificate yield both",
            extra: WEB,
            failing: vec![("api", Pod, tls(Reason::TlsExpired, expired()))],
            history: lossy_pings(),
            want: vec![Code::TunnelLossy, Code::TlsFailure],
            ..Case::default()
        },
        Case {
            name: "round trips jump on the same targets from both sides",
            history: vec![("ping", Pod, rtts(SLOWER)), ("ldap", Host, rtts(SLOWER))],
            want: vec![Code::PathSlower],
            summary: Some(
                "round trips rose well above their own baseline, the path answers: ldap (host): \
                 1.0 ms -> 30.0 ms, ping (pod): 1.0 ms -> 30.0 ms",
            ),
            ..Case::default()
        },
        Case {
            name: "one slower check is not a slower path",
            history: vec![("ping", Pod, rtts(SLOWER))],
            ..Case::default()
        },
        Case {
            name: "sub-millisecond round trips that triple are no jump",
            history: vec![
                ("ping", Pod, rtts(&[1, 1, 1, 1, 1, 1, 3, 3, 3])),
                ("ping", Host, rtts(&[1, 1, 1, 1, 1, 1, 3, 3, 3])),
            ],
            ..Case::default()
        },
        Case {
            name: "too few rounds make no baseline",
            history: vec![
                ("ping", Pod, rtts(&[1, 1, 1, 30, 30, 30])),
                ("ping", Host, rtts(&[1, 1, 1, 30, 30, 30])),
            ],
            ..Case::default()
        },
        Case {
            name: "a slow service's DNS is not a slower path",
            history: vec![
                ("corp-db", Pod, rtts(SLOWER)),
                ("corp-db", Host, rtts(SLOWER)),
            ],
            ..Case::default()
        },
        Case {
            name: "loss explains a slower path",
            history: vec![
                (
                    "ping",
                    Pod,
                    echoes(&[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.4, 0.6]),
                ),
                (
                    "ping",
                    Host,
                    echoes(&[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.4, 0.6]),
                ),
                ("ldap", Pod, rtts(SLOWER)),
                ("ldap", Host, rtts(SLOWER)),
            ],
            want: vec![Code::TunnelLossy],
            ..Case::default()
        },
    ]
}

fn both_down() -> Vec<(&'static str, NetnsId, Failure)> {
    let mut failing = tunnel_down(Pod);
    failing.extend(tunnel_down(Host));
    failing
}

/// The on-prem DNS service stopped: UDP times out, TCP is refused.
fn dns_server_down() -> Failure {
    dns(&[
        ("system", UDP, None),
        ("system", TCP, None),
        (ONPREM_DNS, UDP, Some(Reason::Timeout)),
        (ONPREM_DNS, TCP, Some(Reason::Refused)),
    ])
}
