//! What the checks say about the path, read for the diagnoses: which on-prem targets answered
//! from which namespace and over which address family, and what each DNS (server, transport)
//! pair did.
//!
//! A check counts by its state after flap damping; while it fails, its latest failed round is
//! the evidence. A failure says a target *answered* when something came back across the path
//! (a refusal, a wrong answer, a reflected address, a partial echo loss) and that it did *not*
//! when nothing came back (timeout, unreachable). Local trouble (a missing privilege, a namespace
//! that cannot be entered, a name that does not resolve) says nothing about the path.

use std::net::IpAddr;

use crate::config::ProbeConfig;
use crate::netns::NetnsId;
use crate::probe::dns::{DnsTransport, Server};
use crate::probe::resolver;
use crate::probe::target::Host;
use crate::probe::{Failure, Measurements, ProbeKind, Reason};
use crate::results::{CheckState, History};

/// One check as the diagnoses see it.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    pub probe: &'a ProbeConfig,
    pub netns: NetnsId,
    /// The check's family when its probe is split (`family: both`): what a passing round of a
    /// name says it reached, whose address is not kept.
    pub split: Option<resolver::Family>,
    pub seen: Seen<'a>,
    /// The check's recent rounds, oldest first: what loss and round-trip jumps are read from.
    pub history: &'a History,
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
    /// How a summary names the check: `probe (netns)`, with the family of a split probe's
    /// check, `probe (netns, ipv6)`.
    pub fn name(&self) -> String {
        match self.split {
            Some(family) => format!("{} ({}, {family})", self.probe.name, self.netns),
            None => format!("{} ({})", self.probe.name, self.netns),
        }
    }

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
    /// The check's family when its probe is split: with `probe` and `netns`, which check.
    pub split: Option<resolver::Family>,
    /// The target as configured: `198.19.10.1:389`, `ldap.corp.example`, a DNS server.
    pub target: String,
    /// The address asked: the target's own, or the one its name resolved to in a failed round;
    /// `None` for a name the evidence does not resolve.
    pub address: Option<IpAddr>,
    /// The family the target was asked over: the address's, else the split check's.
    pub family: Option<Family>,
    pub answered: bool,
}

/// An address family, as the per-family diagnoses name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }

    /// The family a split check (`family: both`) asks over.
    fn of_split(split: resolver::Family) -> Option<Family> {
        match split {
            resolver::Family::Ipv4 => Some(Family::Ipv4),
            resolver::Family::Ipv6 => Some(Family::Ipv6),
            resolver::Family::Any | resolver::Family::Both => None,
        }
    }

    pub fn other(self) -> Family {
        match self {
            Family::Ipv4 => Family::Ipv6,
            Family::Ipv6 => Family::Ipv4,
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::Ipv4 => "IPv4",
            Family::Ipv6 => "IPv6",
        })
    }
}

/// The address a target was asked at: its own, or the one a name resolved to in `failure`.
pub(super) fn address(host: &Host, failure: Option<&Failure>) -> Option<IpAddr> {
    match host {
        Host::Ip(ip) => Some(*ip),
        Host::Name(_) => failure.and_then(|f| f.resolved),
        Host::Gateway => None,
    }
}

/// The family a target was asked over: its address's, else the split check's.
fn address_family(address: Option<IpAddr>, check: &Observed) -> Option<Family> {
    address
        .map(Family::of)
        .or_else(|| check.split.and_then(Family::of_split))
}

/// Whether every on-prem target of a check was asked over `family`: the check is then that
/// family's evidence alone. A check without such targets (a route, a name not resolved) is not.
pub fn only_family(check: &Observed, family: Family) -> bool {
    let failure = check.failure();
    let families: Vec<Option<Family>> = check
        .probe
        .kind
        .targets(failure)
        .iter()
        .filter(|target| remote(&target.host))
        .map(|target| address_family(address(&target.host, failure), check))
        .collect();
    !families.is_empty() && families.iter().all(|f| *f == Some(family))
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

/// The on-prem targets of a check, each with whether it answered; a target the evidence says
/// nothing about is left out.
pub fn reaches<'a>(check: &Observed<'a>) -> Vec<Reach<'a>> {
    if matches!(check.seen, Seen::Pending) {
        return Vec::new();
    }
    check
        .probe
        .kind
        .targets(check.failure())
        .into_iter()
        .filter(|target| remote(&target.host))
        .filter_map(|target| {
            let address = address(&target.host, check.failure());
            Some(Reach {
                probe: &check.probe.name,
                netns: check.netns,
                split: check.split,
                address,
                family: address_family(address, check),
                answered: target.answered?,
                target: target.text,
            })
        })
        .collect()
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
    pub transport: DnsTransport,
    /// The server's address family; `None` for `system`.
    pub family: Option<Family>,
    /// `None` when the pair passed.
    pub failure: Option<Reason>,
    /// A wrong answer (`mismatch`) with what was expected, as the detail shows it.
    pub wrong: Option<&'a str>,
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
    let pair = |server: &Server, transport, failure, wrong: Option<&'a str>| Pair {
        probe: &check.probe.name,
        query: &spec.query.text,
        netns: check.netns,
        server: server.to_string(),
        asked: asked(server),
        family: match server {
            Server::Addr(addr) => Some(Family::of(addr.ip())),
            Server::System => None,
        },
        transport,
        failure,
        wrong: wrong.filter(|_| failure == Some(Reason::Mismatch)),
    };
    match check.seen {
        Seen::Pending => Vec::new(),
        Seen::Passing => spec
            .servers
            .iter()
            .flat_map(|server| spec.transports.iter().map(|t| pair(server, *t, None, None)))
            .collect(),
        Seen::Failing(failure) => match &failure.measurements {
            Measurements::Dns(report) => report
                .pairs
                .iter()
                .filter_map(|p| {
                    let server = spec.servers.iter().find(|s| s.to_string() == p.server)?;
                    let wrong = p.mismatch.as_deref();
                    Some(match p.followed {
                        // A truncated UDP answer followed over TCP: both legs are evidence,
                        // a server that answers over UDP and fails over TCP among them.
                        Some(legs) => vec![
                            pair(server, p.transport, legs.udp, wrong),
                            pair(server, DnsTransport::Tcp, legs.tcp, wrong),
                        ],
                        None => vec![pair(server, p.transport, p.failure, wrong)],
                    })
                })
                .flatten()
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
        assert_eq!(Reason::Timeout.answered(), Some(false));
        assert_eq!(Reason::Refused.answered(), Some(true));
        assert_eq!(Reason::Masqueraded.answered(), Some(true));
        assert_eq!(Reason::NetnsUnavailable.answered(), None);
    }
}
