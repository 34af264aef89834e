//! The probe kinds: the one table of them, the contract each kind implements, and what every
//! round returns, an outcome or a failure whose reason is data.
//!
//! # Adding a kind
//!
//! 1. Write `probe/<kind>.rs` (or a folder): a spec type that deserializes from the kind's config
//!    key with `deny_unknown_fields`, and `impl Probe` for it: `describe`, `run`, its
//!    measurements, its own metric families (`register`, `observe`) and the targets it gives the
//!    diagnoses (`targets`).
//! 2. Add one line to the `probe_kinds!` table below: the config key, the variant, the spec.
//!    The enum, the config key dispatch, the `kind` label, the metric and evidence dispatch all
//!    follow from it.
//! 3. Outside `src/`: the kind's section in `docs/probe-kinds.md` (with a config example that a
//!    test validates), a probe of the kind in `deploy/base/config.yaml` (`tests/deploy_e2e.rs`
//!    checks every kind ships) and a lab test in `tests/`.

pub mod conntrack;
pub mod dns;
pub mod expect;
pub mod histogram;
pub mod http;
pub mod icmp;
pub mod path_mtu;
pub mod raw;
pub mod resolv_conf;
pub mod resolver;
pub mod route;
pub mod series;
pub mod source_ip;
pub mod target;
pub mod tcp;
pub mod tls;
pub mod traceroute;

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use prometheus::{CounterVec, GaugeVec};

use crate::netns::{NetnsContext, NetnsId};
use histogram::Histograms;
use target::Host;

/// What a probe kind is. Nothing outside the kind's own file knows what it measures or exports.
pub trait Probe: Sized {
    /// What one round measured, beyond passing or failing: `()` when nothing.
    type Measurements: fmt::Debug + Clone + PartialEq + Send + Sync;
    /// The kind's own metric families, registered once per agent.
    type Series: Send + Sync;

    /// Registers the kind's metric families; the generic `hybridprobe_probe_*` ones are not its
    /// concern.
    fn register(families: &mut dyn Families) -> Self::Series;

    /// What the probe does, for people: `tcp connect 198.19.10.1:389`.
    fn describe(&self) -> String;

    /// Runs one round in the namespace of `ctx`. `budget` is the time the scheduler allows: a
    /// probe that gathers several answers uses it to stop waiting and report what it has; the
    /// scheduler cancels the probe if it overruns.
    fn run(
        &self,
        ctx: &NetnsContext,
        budget: Duration,
    ) -> impl Future<Output = Result<Outcome, Failure>> + Send;

    /// The round trip a round measured, when the kind has a better one than the round's
    /// duration (an echo's RTT without the spacing between requests).
    fn round_trip(_measured: &Self::Measurements) -> Option<Duration> {
        None
    }

    /// The share of a round's packets that got no answer, when the kind sends several (an
    /// echo round): what tells a lossy path from a dead one.
    fn loss(_measured: &Self::Measurements) -> Option<f64> {
        None
    }

    /// Records a round's measurements into the kind's series.
    fn observe(_series: &Self::Series, _check: CheckLabels<'_>, _measured: &Self::Measurements) {}

    /// A check of this kind is about to run: series that must exist from the start (a counter
    /// `increase()` should see from its first step) are made here.
    fn declare(_series: &Self::Series, _check: CheckLabels<'_>) {}

    /// A check of this kind is gone: whatever the kind kept about it between rounds goes too.
    /// (Its labelled series are removed for every kind alike.)
    fn forget(_series: &Self::Series, _check: CheckLabels<'_>) {}

    /// The targets a round tried to reach, each with whether it answered: the evidence the
    /// diagnoses read. `failure` is the failed round when the check is failing, `None` when it
    /// passes.
    fn targets(&self, failure: Option<&Failure>) -> Vec<Target>;

    /// The host a round resolves and the family it is resolved to (`family:`), for the kinds
    /// with that key: the config checks that an address literal is of that family, and splits
    /// a `both` probe into a check per family.
    fn family(&self) -> Option<(&Host, resolver::Family)> {
        None
    }
}

/// Where a kind registers its metric families: implemented by the agent's metrics, so probes
/// depend on no part of the agent.
pub trait Families {
    fn gauges(&mut self, name: &str, help: &str, labels: &[&str]) -> GaugeVec;
    fn counters(&mut self, name: &str, help: &str, labels: &[&str]) -> CounterVec;
    fn histograms(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> Histograms;
}

/// The labels that name a check in a kind's series: `probe`, `netns` and `family`, first in
/// each of them.
#[derive(Debug, Clone, Copy)]
pub struct CheckLabels<'a> {
    pub probe: &'a str,
    pub netns: NetnsId,
    /// `ipv4` or `ipv6` for a check of a split (`family: both`) probe, else empty, which the
    /// exposition leaves out: see [`resolver::Family::label`].
    pub family: &'static str,
}

/// The names of the labels of [`CheckLabels`], in their order.
const CHECK_LABELS: [&str; 3] = ["probe", "netns", "family"];

impl<'a> CheckLabels<'a> {
    /// The label names of a kind's per-check family: the check's, then `more`.
    pub fn names(more: &[&'static str]) -> Vec<&'static str> {
        CHECK_LABELS.iter().chain(more).copied().collect()
    }

    /// `[probe, netns, family]`, the label values most kind series carry.
    pub fn values(&self) -> [&'a str; 3] {
        [self.probe, self.netns.as_str(), self.family]
    }

    /// The check's label values, then `more`: for a family named with [`CheckLabels::names`].
    pub fn with<'b>(&self, more: &[&'b str]) -> Vec<&'b str>
    where
        'a: 'b,
    {
        self.values()
            .into_iter()
            .chain(more.iter().copied())
            .collect()
    }

    /// The map key of what a kind keeps per check between rounds.
    pub fn key(&self) -> CheckLabelsKey {
        (self.probe.to_owned(), self.netns, self.family)
    }
}

/// What a kind keeps per check is keyed by: see [`CheckLabels::key`].
pub type CheckLabelsKey = (String, NetnsId, &'static str);

/// A target a round tried to reach, and whether it answered: `None` when the round says nothing
/// about it (local trouble, such as a missing privilege).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: Host,
    /// As configured: `198.19.10.1:389`, `ldap.corp.example`, a DNS server.
    pub text: String,
    pub answered: Option<bool>,
}

impl Target {
    /// A target whose answer the round's failure reason alone tells.
    pub fn by_reason(host: &Host, text: String, failure: Option<&Failure>) -> Target {
        Target::judged(host, text, failure, |_| None)
    }

    /// A target whose answer a failed round's measurements may tell better than its reason:
    /// `told` says, or `None` to fall back on the reason.
    pub fn judged(
        host: &Host,
        text: String,
        failure: Option<&Failure>,
        told: impl FnOnce(&Measurements) -> Option<bool>,
    ) -> Target {
        let answered = match failure {
            None => Some(true),
            Some(failure) => told(&failure.measurements).or_else(|| failure.reason.answered()),
        };
        Target {
            host: host.clone(),
            text,
            answered,
        }
    }
}

/// The one list of probe kinds: `config key: Variant(spec type)`. Everything that dispatches on
/// the kind is generated from it.
macro_rules! probe_kinds {
    ($($key:ident: $variant:ident($spec:ty)),+ $(,)?) => {
        /// A probe's kind and its kind-specific config.
        #[derive(Debug, Clone, PartialEq)]
        pub enum ProbeKind {
            $($variant($spec)),+
        }

        /// Kind-specific measurements of a round, exported as that kind's own metrics.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Measurements {
            None,
            $($variant(<$spec as Probe>::Measurements)),+
        }

        impl Measurements {
            /// See [`Probe::round_trip`].
            pub fn round_trip(&self) -> Option<Duration> {
                match self {
                    Measurements::None => None,
                    $(Measurements::$variant(measured) => <$spec as Probe>::round_trip(measured)),+
                }
            }

            /// See [`Probe::loss`].
            pub fn loss(&self) -> Option<f64> {
                match self {
                    Measurements::None => None,
                    $(Measurements::$variant(measured) => <$spec as Probe>::loss(measured)),+
                }
            }
        }

        impl ProbeKind {
            /// The config keys, in the order error messages list them.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($key)),+];

            /// The `kind` label.
            pub fn name(&self) -> &'static str {
                match self {
                    $(ProbeKind::$variant(_) => stringify!($key)),+
                }
            }

            pub fn describe(&self) -> String {
                match self {
                    $(ProbeKind::$variant(spec) => spec.describe()),+
                }
            }

            /// Runs one round; see [`Probe::run`]. Name lookups end within `budget`, and the
            /// address a host name resolved to, for any kind, goes to `noted` (see
            /// [`with_resolved`]); `split` is the family of the check the round runs for when
            /// the probe is `family: both`.
            pub async fn run(
                &self,
                ctx: &NetnsContext,
                budget: Duration,
                noted: resolver::Noted,
                split: Option<resolver::Family>,
            ) -> Result<Outcome, Failure> {
                // Each kind's round boxed at its own size: unboxed, every round's future would be
                // as large as the largest kind's (kilobytes) and copied whole as it is moved.
                resolver::noting(budget, noted, split, async {
                    match self {
                        $(ProbeKind::$variant(spec) => Box::pin(spec.run(ctx, budget)).await),+
                    }
                })
                .await
            }

            /// See [`Probe::targets`].
            pub fn targets(&self, failure: Option<&Failure>) -> Vec<Target> {
                match self {
                    $(ProbeKind::$variant(spec) => spec.targets(failure)),+
                }
            }

            /// The host and `family:` of the kinds with that key (see [`Probe::family`]).
            fn host_family(&self) -> Option<(&Host, resolver::Family)> {
                match self {
                    $(ProbeKind::$variant(spec) => spec.family()),+
                }
            }

            /// The kind's `family:`, for the kinds with that key.
            pub fn family(&self) -> Option<resolver::Family> {
                self.host_family().map(|(_, family)| family)
            }

            /// Why the kind's `family:` cannot be probed at its host, if it cannot (see
            /// [`Probe::family`]).
            pub fn family_problem(&self) -> Option<String> {
                let (host, family) = self.host_family()?;
                host.family_problem(family)
            }

            /// Reads the kind-specific config under `key`; `None` when `key` names no kind.
            pub fn deserialize_key<'de, D: serde::Deserializer<'de>>(
                key: &str,
                value: D,
            ) -> Option<Result<ProbeKind, D::Error>> {
                use serde::Deserialize;
                match key {
                    $(stringify!($key) => Some(<$spec>::deserialize(value).map(ProbeKind::$variant)),)+
                    _ => None,
                }
            }
        }

        /// Every kind's own metric families.
        pub struct KindSeries {
            $($key: <$spec as Probe>::Series),+
        }

        impl KindSeries {
            pub fn register(families: &mut dyn Families) -> KindSeries {
                KindSeries {
                    $($key: <$spec as Probe>::register(families)),+
                }
            }

            /// Creates the series a check of `kind` needs before its first round.
            pub fn declare(&self, kind: &str, check: CheckLabels<'_>) {
                match kind {
                    $(stringify!($key) => <$spec as Probe>::declare(&self.$key, check),)+
                    _ => {}
                }
            }

            pub fn observe(&self, check: CheckLabels<'_>, measurements: &Measurements) {
                match measurements {
                    Measurements::None => {}
                    $(Measurements::$variant(measured) => {
                        <$spec as Probe>::observe(&self.$key, check, measured)
                    })+
                }
            }

            pub fn forget(&self, check: CheckLabels<'_>) {
                $(<$spec as Probe>::forget(&self.$key, check);)+
            }
        }
    };
}

probe_kinds! {
    tcp: Tcp(tcp::TcpSpec),
    icmp: Icmp(icmp::IcmpSpec),
    dns: Dns(dns::DnsSpec),
    source_ip: SourceIp(source_ip::SourceIpSpec),
    route: Route(route::RouteSpec),
    path_mtu: PathMtu(path_mtu::PathMtuSpec),
    traceroute: Traceroute(traceroute::TracerouteSpec),
    http: Http(http::HttpSpec),
    resolv_conf: ResolvConf(resolv_conf::ResolvConfSpec),
    conntrack: Conntrack(conntrack::ConntrackSpec),
}

/// A probe round that passed.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// One line for people, e.g. `connected to 198.19.10.1:389`.
    pub detail: String,
    pub measurements: Measurements,
    /// The address the target's host name resolved to, when it is a name.
    pub resolved: Option<IpAddr>,
}

impl Outcome {
    pub fn new(detail: impl Into<String>, measurements: Measurements) -> Outcome {
        Outcome {
            detail: detail.into(),
            measurements,
            resolved: None,
        }
    }
}

/// A probe round that failed, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub reason: Reason,
    pub detail: String,
    pub measurements: Measurements,
    /// The address the target's host name resolved to, when it is a name and resolved.
    pub resolved: Option<IpAddr>,
}

impl Failure {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Failure {
        Failure {
            reason,
            detail: detail.into(),
            measurements: Measurements::None,
            resolved: None,
        }
    }
}

/// Puts the name and address a round resolved in its detail and `resolved`, for any kind and
/// whether the round finished or was cut off.
pub fn with_resolved(
    mut result: Result<Outcome, Failure>,
    noted: Option<(String, IpAddr)>,
) -> Result<Outcome, Failure> {
    if let Some((name, ip)) = noted {
        let (detail, resolved) = match &mut result {
            Ok(outcome) => (&mut outcome.detail, &mut outcome.resolved),
            Err(failure) => (&mut failure.detail, &mut failure.resolved),
        };
        *detail = format!("{name} ({ip}): {detail}");
        *resolved = Some(ip);
    }
    result
}

/// A round's result from its judgement: passed when there is no failure reason.
pub fn conclude(
    failure: Option<Reason>,
    detail: String,
    measurements: Measurements,
) -> Result<Outcome, Failure> {
    match failure {
        None => Ok(Outcome::new(detail, measurements)),
        Some(reason) => Err(Failure {
            reason,
            detail,
            measurements,
            resolved: None,
        }),
    }
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
    /// Larger don't-fragment packets vanish without a fragmentation-needed (IPv6: Packet Too
    /// Big) reply.
    Blackhole,
    /// The path MTU is below the configured minimum.
    MtuLow,
    /// The target's host name did not resolve (NXDOMAIN, SERVFAIL, no answer, ...).
    ResolveFailed,
    /// The server's certificate chains to no trusted CA.
    TlsUntrusted,
    /// The server's certificate is expired (or not yet valid).
    TlsExpired,
    /// The server's certificate is not valid for the name asked for.
    TlsNameMismatch,
    /// The TLS handshake failed otherwise (no common version or cipher, an alert, a close).
    TlsHandshake,
    /// An HTTP response came with a status the probe does not accept.
    HttpStatus,
    /// An HTTP response came, but its body does not match the expected pattern.
    BodyMismatch,
    /// The probe expects its target blocked (`expect: blocked`), and the target answered.
    NotBlocked,
    /// The forward proxy declined the request (403, 407: its access rules or authentication).
    ProxyRefused,
    /// The forward proxy answered with another failure (502, 503, 504: it could not reach the
    /// target), or with something that is not HTTP.
    ProxyError,
    /// The namespace's resolv.conf sends queries to a loopback address (or names no server, so
    /// glibc asks 127.0.0.1): a node-local stub that pods cannot reach.
    LoopbackResolver,
    /// The connection tracking table is filled beyond the configured share of its limit.
    ConntrackFull,
    /// Connection tracking failed to insert or dropped entries since the last round.
    ConntrackDrops,
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
        Reason::ResolveFailed,
        Reason::TlsUntrusted,
        Reason::TlsExpired,
        Reason::TlsNameMismatch,
        Reason::TlsHandshake,
        Reason::HttpStatus,
        Reason::BodyMismatch,
        Reason::NotBlocked,
        Reason::ProxyRefused,
        Reason::ProxyError,
        Reason::LoopbackResolver,
        Reason::ConntrackFull,
        Reason::ConntrackDrops,
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
            Reason::ResolveFailed => "resolve_failed",
            Reason::TlsUntrusted => "tls_untrusted",
            Reason::TlsExpired => "tls_expired",
            Reason::TlsNameMismatch => "tls_name_mismatch",
            Reason::TlsHandshake => "tls_handshake",
            Reason::HttpStatus => "http_status",
            Reason::BodyMismatch => "body_mismatch",
            Reason::NotBlocked => "not_blocked",
            Reason::ProxyRefused => "proxy_refused",
            Reason::ProxyError => "proxy_error",
            Reason::LoopbackResolver => "loopback_resolver",
            Reason::ConntrackFull => "conntrack_full",
            Reason::ConntrackDrops => "conntrack_drops",
            Reason::Error => "error",
        }
    }

    /// Whether a failure shows that something came back from the far side: `None` when the
    /// reason is local and says nothing about the path. A name that did not resolve says
    /// nothing about the target's path either, even when a DNS server answered NXDOMAIN, nor
    /// does a proxy's answer: the proxy's path to the target is not the probe's.
    pub fn answered(self) -> Option<bool> {
        match self {
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
            | Reason::MtuLow
            | Reason::TlsUntrusted
            | Reason::TlsExpired
            | Reason::TlsNameMismatch
            | Reason::TlsHandshake
            | Reason::HttpStatus
            | Reason::BodyMismatch
            | Reason::NotBlocked => Some(true),
            Reason::PermissionDenied
            | Reason::NetnsUnavailable
            | Reason::ResolveFailed
            | Reason::ProxyRefused
            | Reason::ProxyError
            | Reason::LoopbackResolver
            | Reason::ConntrackFull
            | Reason::ConntrackDrops
            | Reason::Error => None,
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
