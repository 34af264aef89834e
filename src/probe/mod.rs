//! The closed set of probe kinds, and what every probe returns: an outcome, or a failure whose
//! reason is data.

pub mod dns;
pub mod icmp;
pub mod path_mtu;
pub mod raw;
pub mod route;
pub mod source_ip;
pub mod target;
pub mod tcp;
pub mod traceroute;

use std::fmt;
use std::time::Duration;

use crate::netns::NetnsContext;

/// Every kind of probe, one file each. A new kind is one file plus one variant here.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeKind {
    Tcp(tcp::TcpSpec),
    Icmp(icmp::IcmpSpec),
    SourceIp(source_ip::SourceIpSpec),
    Dns(dns::DnsSpec),
    Route(route::RouteSpec),
    PathMtu(path_mtu::PathMtuSpec),
    Traceroute(traceroute::TracerouteSpec),
}

impl ProbeKind {
    /// The config keys, in the order error messages list them.
    pub const NAMES: &'static [&'static str] = &[
        "tcp",
        "icmp",
        "dns",
        "source_ip",
        "route",
        "path_mtu",
        "traceroute",
    ];

    /// The `kind` label.
    pub fn name(&self) -> &'static str {
        match self {
            ProbeKind::Tcp(_) => "tcp",
            ProbeKind::Icmp(_) => "icmp",
            ProbeKind::SourceIp(_) => "source_ip",
            ProbeKind::Dns(_) => "dns",
            ProbeKind::Route(_) => "route",
            ProbeKind::PathMtu(_) => "path_mtu",
            ProbeKind::Traceroute(_) => "traceroute",
        }
    }

    /// What the probe does, for people: `tcp connect 198.19.10.1:389`.
    pub fn describe(&self) -> String {
        match self {
            ProbeKind::Tcp(spec) => format!("tcp connect {}", spec.target),
            ProbeKind::Icmp(spec) => format!("icmp echo {}", spec.target),
            ProbeKind::SourceIp(spec) => format!("source address via {}", spec.reflector),
            ProbeKind::Dns(spec) => spec.describe(),
            ProbeKind::Route(spec) => format!("route lookup {}", spec.destination),
            ProbeKind::PathMtu(spec) => format!("path MTU to {}", spec.target),
            ProbeKind::Traceroute(spec) => format!("traceroute to {}", spec.target),
        }
    }

    /// Runs one round in the namespace of `ctx`. `budget` is the time the scheduler allows: a
    /// probe that gathers several answers uses it to stop waiting and report what it has; the
    /// scheduler cancels the probe if it overruns.
    pub async fn run(&self, ctx: &NetnsContext, budget: Duration) -> Result<Outcome, Failure> {
        match self {
            ProbeKind::Tcp(spec) => spec.run(ctx).await,
            ProbeKind::Icmp(spec) => spec.run(ctx, budget).await,
            ProbeKind::SourceIp(spec) => spec.run(ctx, budget).await,
            ProbeKind::Dns(spec) => spec.run(ctx, budget).await,
            ProbeKind::Route(spec) => spec.run(ctx).await,
            ProbeKind::PathMtu(spec) => spec.run(ctx, budget).await,
            ProbeKind::Traceroute(spec) => spec.run(ctx, budget).await,
        }
    }
}

/// A probe round that passed.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// One line for people, e.g. `connected to 198.19.10.1:389`.
    pub detail: String,
    pub report: Report,
}

/// A probe round that failed, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub reason: Reason,
    pub detail: String,
    pub report: Report,
}

impl Failure {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Failure {
        Failure {
            reason,
            detail: detail.into(),
            report: Report::None,
        }
    }
}

/// A round's result from its judgement: passed when there is no failure reason.
pub fn conclude(
    failure: Option<Reason>,
    detail: String,
    report: Report,
) -> Result<Outcome, Failure> {
    match failure {
        None => Ok(Outcome { detail, report }),
        Some(reason) => Err(Failure {
            reason,
            detail,
            report,
        }),
    }
}

/// Kind-specific measurements, exported as that kind's own metrics.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    None,
    Icmp(icmp::IcmpReport),
    SourceIp(source_ip::SourceIpReport),
    Dns(dns::DnsReport),
    Route(route::RouteReport),
    PathMtu(path_mtu::PathMtuReport),
    Traceroute(traceroute::TracerouteReport),
}

/// Why a round failed: the fixed set of `result` label values, besides `success`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    Timeout,
    Refused,
    Unreachable,
    Reset,
    /// Some, but too many, echo replies were lost.
    Loss,
    /// The agent lacks a privilege the probe needs (CAP_NET_RAW, ping_group_range, ...).
    PermissionDenied,
    /// The namespace the probe should run in cannot be entered.
    NetnsUnavailable,
    /// On-prem saw another source address than ours, and masquerade is forbidden.
    Masqueraded,
    /// On-prem saw our own source address, and masquerade is expected.
    NotMasqueraded,
    /// Masquerade happened, but to another address than the one expected.
    UnexpectedSource,
    /// The name does not exist (DNS NXDOMAIN).
    Nxdomain,
    /// The name exists, but has no record of the asked type.
    Nodata,
    /// The DNS server failed to answer (SERVFAIL), e.g. its upstream is unreachable.
    Servfail,
    /// The DNS server refused the query (REFUSED), e.g. it does not serve this client.
    DnsRefused,
    /// An answer came, but not the expected one (a DNS answer, a route's gateway, a hop).
    Mismatch,
    /// Larger don't-fragment packets vanish without a fragmentation-needed reply.
    Blackhole,
    /// The path MTU is below the configured minimum.
    MtuLow,
    Error,
}

impl Reason {
    pub const ALL: &'static [Reason] = &[
        Reason::Timeout,
        Reason::Refused,
        Reason::Unreachable,
        Reason::Reset,
        Reason::Loss,
        Reason::PermissionDenied,
        Reason::NetnsUnavailable,
        Reason::Masqueraded,
        Reason::NotMasqueraded,
        Reason::UnexpectedSource,
        Reason::Nxdomain,
        Reason::Nodata,
        Reason::Servfail,
        Reason::DnsRefused,
        Reason::Mismatch,
        Reason::Blackhole,
        Reason::MtuLow,
        Reason::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Timeout => "timeout",
            Reason::Refused => "refused",
            Reason::Unreachable => "unreachable",
            Reason::Reset => "reset",
            Reason::Loss => "loss",
            Reason::PermissionDenied => "permission_denied",
            Reason::NetnsUnavailable => "netns_unavailable",
            Reason::Masqueraded => "masqueraded",
            Reason::NotMasqueraded => "not_masqueraded",
            Reason::UnexpectedSource => "unexpected_source",
            Reason::Nxdomain => "nxdomain",
            Reason::Nodata => "nodata",
            Reason::Servfail => "servfail",
            Reason::DnsRefused => "dns_refused",
            Reason::Mismatch => "mismatch",
            Reason::Blackhole => "blackhole",
            Reason::MtuLow => "mtu_low",
            Reason::Error => "error",
        }
    }

    /// Classifies a socket error the way an operator reads it.
    pub fn of_io(error: &std::io::Error) -> Reason {
        use std::io::ErrorKind;
        match error.raw_os_error() {
            Some(libc::ECONNREFUSED) => return Reason::Refused,
            Some(libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EADDRNOTAVAIL) => {
                return Reason::Unreachable
            }
            Some(libc::ECONNRESET | libc::EPIPE) => return Reason::Reset,
            Some(libc::ETIMEDOUT) => return Reason::Timeout,
            Some(libc::EPERM | libc::EACCES) => return Reason::PermissionDenied,
            _ => {}
        }
        match error.kind() {
            ErrorKind::ConnectionRefused => Reason::Refused,
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => Reason::Reset,
            ErrorKind::TimedOut => Reason::Timeout,
            ErrorKind::PermissionDenied => Reason::PermissionDenied,
            _ => Reason::Error,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `result` label of a round.
pub fn result_label(result: &Result<Outcome, Failure>) -> &'static str {
    match result {
        Ok(_) => "success",
        Err(failure) => failure.reason.as_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn socket_errors_map_to_operator_reasons() {
        let os = io::Error::from_raw_os_error;
        assert_eq!(Reason::of_io(&os(libc::ECONNREFUSED)), Reason::Refused);
        assert_eq!(Reason::of_io(&os(libc::EHOSTUNREACH)), Reason::Unreachable);
        assert_eq!(Reason::of_io(&os(libc::ENETUNREACH)), Reason::Unreachable);
        assert_eq!(Reason::of_io(&os(libc::ECONNRESET)), Reason::Reset);
        assert_eq!(Reason::of_io(&os(libc::ETIMEDOUT)), Reason::Timeout);
        assert_eq!(Reason::of_io(&os(libc::EPERM)), Reason::PermissionDenied);
        assert_eq!(Reason::of_io(&os(libc::EMFILE)), Reason::Error);
    }

    #[test]
    fn result_labels_are_distinct() {
        let mut labels: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        labels.push("success");
        let count = labels.len();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), count);
    }
}
