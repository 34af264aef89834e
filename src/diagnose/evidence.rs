//! What the checks say about the path, read for the diagnoses: which on-prem targets answered
//! from which namespace, and what each DNS (server, transport) pair did.
//!
//! A check counts by its state after flap damping; while it fails, its latest failed round is
//! the evidence. A failure says a target *answered* when something came back across the path
//! (a refusal, a wrong answer, a reflected address, a partial echo loss) and that it did *not*
//! when nothing came back (timeout, unreachable). Local trouble (a missing privilege, a namespace
//! that cannot be entered, a name that does not resolve) says nothing about the path.

use std::net::IpAddr;

use crate::config::ProbeConfig;
use crate::net::Transport;
use crate::netns::NetnsId;
use crate::probe::dns::Server;
use crate::probe::source_ip::Reflector;
use crate::probe::target::Host;
use crate::probe::{Failure, ProbeKind, Reason, Report};
use crate::results::CheckState;

/// One check as the diagnoses see it.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    pub probe: &'a ProbeConfig,
    pub netns: NetnsId,
    pub seen: Seen<'a>,
}

/// A check's state after flap damping, with the failed round that is its evidence.
#[derive(Debug, Clone, Copy)]
pub enum Seen<'a> {
    /// No round yet, or no evidence: says nothing.
    Pending,
    Passing,
    Failing(&'a Failure),
}

impl<'a> Seen<'a> {
    pub fn of(check: &'a CheckState) -> Seen<'a> {
        match (&check.last, check.failing, &check.last_failure) {
            (Some(_), false, _) => Seen::Passing,
            (Some(_), true, Some(failure)) => Seen::Failing(failure),
            _ => Seen::Pending,
        }
    }
}

impl<'a> Observed<'a> {
    pub fn failure(&self) -> Option<&'a Failure> {
        match self.seen {
            Seen::Failing(failure) => Some(failure),
            Seen::Pending | Seen::Passing => None,
        }
    }
}

/// Whether an on-prem target answered a check in one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach<'a> {
    pub probe: &'a str,
    pub netns: NetnsId,
    /// The target as configured: `198.19.10.1:389`, `ldap.corp.example`, a DNS server.
    pub target: String,
    pub answered: bool,
}

/// On-prem, for the diagnoses: every target except the namespace's `gateway` and loopback,
/// link-local or unspecified addresses. From inside a node the agent cannot see where the VNET
/// ends, so every other address counts as across the tunnel.
pub fn remote(host: &Host) -> bool {
    match host {
        Host::Gateway => false,
        Host::Ip(ip) => remote_ip(*ip),
        Host::Name(_) => true,
    }
}

fn remote_ip(ip: IpAddr) -> bool {
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    !(ip.is_loopback() || ip.is_unspecified() || link_local)
}

/// Whether a failure shows that something came back from the far side: `None` when the reason
/// is local and says nothing about the path.
pub fn answered(reason: Reason) -> Option<bool> {
    match reason {
        Reason::Timeout | Reason::Unreachable => Some(false),
        Reason::Refused
        | Reason::Reset
        | Reason::Loss
        | Reason::Masqueraded
        | Reason::NotMasqueraded
        | Reason::UnexpectedSource
        | Reason::Nxdomain
        | Reason::Nodata
        | Reason::Servfail
        | Reason::DnsRefused
        | Reason::Mismatch
        | Reason::Blackhole
        | Reason::MtuLow => Some(true),
        Reason::PermissionDenied | Reason::NetnsUnavailable | Reason::Error => None,
    }
}

/// The on-prem targets of a check, each with whether it answered. Route checks have none; a
/// target the evidence says nothing about is left out.
pub fn reaches<'a>(check: &Observed<'a>) -> Vec<Reach<'a>> {
    if matches!(check.seen, Seen::Pending) {
        return Vec::new();
    }
    let failure = check.failure();
    let by_reason = failure.map_or(Some(true), |f| answered(f.reason));
    let reach = |host: &Host, target: String, answered: Option<bool>| {
        let answered = answered.filter(|_| remote(host))?;
        Some(Reach {
            probe: &check.probe.name,
            netns: check.netns,
            target,
            answered,
        })
    };
    match &check.probe.kind {
        ProbeKind::Tcp(spec) => reach(&spec.target.host, spec.target.to_string(), by_reason)
            .into_iter()
            .collect(),
        ProbeKind::Icmp(spec) => reach(&spec.target, spec.target.to_string(), by_reason)
            .into_iter()
            .collect(),
        ProbeKind::SourceIp(spec) => {
            let (host, target) = match &spec.reflector {
                Reflector::Stun { server, .. } => (&server.host, server.to_string()),
                Reflector::Http { url, .. } => (&url.host, url.text.clone()),
            };
            reach(host, target, by_reason).into_iter().collect()
        }
        ProbeKind::PathMtu(spec) => {
            // Any echo reply, at whatever size, crossed the path.
            let answered = failure.map_or(Some(true), |f| match &f.report {
                Report::PathMtu(report) if report.mtu.is_some() => Some(true),
                _ => answered(f.reason),
            });
            reach(&spec.target, spec.target.to_string(), answered)
                .into_iter()
                .collect()
        }
        ProbeKind::Traceroute(spec) => {
            let answered = failure.map_or(Some(true), |f| match &f.report {
                Report::Traceroute(report) => Some(report.reached()),
                _ => answered(f.reason),
            });
            reach(&spec.target, spec.target.to_string(), answered)
                .into_iter()
                .collect()
        }
        ProbeKind::Dns(spec) => spec
            .servers
            .iter()
            .filter_map(|server| match server {
                Server::Addr(addr) => {
                    let name = server.to_string();
                    let answered = match failure.map(|f| (f, &f.report)) {
                        None => Some(true),
                        Some((_, Report::Dns(report))) => server_answered(
                            report
                                .pairs
                                .iter()
                                .filter(|p| p.server == name)
                                .map(|p| p.failure),
                        ),
                        Some((f, _)) => answered(f.reason),
                    };
                    reach(&Host::Ip(addr.ip()), name, answered)
                }
                Server::System => None,
            })
            .collect(),
        ProbeKind::Route(_) => Vec::new(),
    }
}

/// A server answered when any of its pairs did; it did not when every pair that says anything
/// went unanswered.
fn server_answered(failures: impl Iterator<Item = Option<Reason>>) -> Option<bool> {
    let mut verdict = None;
    for failure in failures {
        match failure.map_or(Some(true), answered) {
            Some(true) => return Some(true),
            Some(false) => verdict = Some(false),
            None => {}
        }
    }
    verdict
}

/// Whom a DNS pair asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// The namespace's own resolver (resolv.conf): the cluster DNS in a pod.
    System,
    /// A server across the tunnel, asked directly.
    Onprem,
    /// A server on this side (loopback, link-local).
    Local,
}

/// One DNS (server, transport) pair of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair<'a> {
    pub probe: &'a str,
    /// The name asked, as configured.
    pub query: &'a str,
    pub netns: NetnsId,
    /// `system` or the configured address, as in the `server` label.
    pub server: String,
    pub asked: Asked,
    pub transport: Transport,
    /// `None` when the pair passed.
    pub failure: Option<Reason>,
}

/// Every (server, transport) pair of a DNS check: all passing when the check passes, as the
/// evidence says when it fails, none when there is no per-pair evidence.
pub fn dns_pairs<'a>(check: &Observed<'a>) -> Vec<Pair<'a>> {
    let ProbeKind::Dns(spec) = &check.probe.kind else {
        return Vec::new();
    };
    let asked = |server: &Server| match server {
        Server::System => Asked::System,
        Server::Addr(addr) if remote_ip(addr.ip()) => Asked::Onprem,
        Server::Addr(_) => Asked::Local,
    };
    let pair = |server: &Server, transport, failure| Pair {
        probe: &check.probe.name,
        query: &spec.query.text,
        netns: check.netns,
        server: server.to_string(),
        asked: asked(server),
        transport,
        failure,
    };
    match check.seen {
        Seen::Pending => Vec::new(),
        Seen::Passing => spec
            .servers
            .iter()
            .flat_map(|server| spec.transports.iter().map(|t| pair(server, *t, None)))
            .collect(),
        Seen::Failing(failure) => match &failure.report {
            Report::Dns(report) => report
                .pairs
                .iter()
                .filter_map(|p| {
                    let server = spec.servers.iter().find(|s| s.to_string() == p.server)?;
                    Some(pair(server, p.transport, p.failure))
                })
                .collect(),
            _ => Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_gateway_and_this_sides_special_addresses_are_local() {
        let host = |text: &str| Host::parse(text).unwrap();
        for on_prem in [
            "198.19.10.1",
            "10.0.0.10",
            "168.63.129.16",
            "ldap.corp.example",
        ] {
            assert!(remote(&host(on_prem)), "{on_prem}");
        }
        for local in [
            "gateway",
            "127.0.0.1",
            "169.254.169.254",
            "::1",
            "fe80::1",
            "0.0.0.0",
        ] {
            assert!(!remote(&host(local)), "{local}");
        }
    }

    #[test]
    fn silence_is_not_an_answer_and_local_trouble_is_no_evidence() {
        assert_eq!(answered(Reason::Timeout), Some(false));
        assert_eq!(answered(Reason::Refused), Some(true));
        assert_eq!(answered(Reason::Masqueraded), Some(true));
        assert_eq!(answered(Reason::NetnsUnavailable), None);
        assert_eq!(
            server_answered([Some(Reason::Timeout), Some(Reason::Refused)].into_iter()),
            Some(true)
        );
        assert_eq!(
            server_answered([Some(Reason::Timeout), Some(Reason::Error)].into_iter()),
            Some(false)
        );
        assert_eq!(server_answered([Some(Reason::Error)].into_iter()), None);
    }
}
