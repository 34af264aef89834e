//! Host names resolved where the probe runs: `resolver: system` (the default) asks the servers of
//! the namespace's own resolv.conf (`netns.<id>.resolv_conf`), a list asks those servers.
//!
//! glibc's getaddrinfo would read `/etc/resolv.conf` of the *mount* namespace, the pod's, even
//! from a thread in the host's network namespace. So every round builds a hickory resolver from
//! the namespace's file, on the thread the probe runs on (the namespace's executor), so its
//! sockets live in that namespace. It is dropped after the round: nothing is cached between
//! rounds, and a DNS failure shows on the round it happens. `/etc/hosts` is not read, for the
//! same reason as resolv.conf: the file the agent sees is the pod's.
//!
//! `family:` picks the records asked for: `ipv4` only A, `ipv6` only AAAA, `any` (the default)
//! both, A first, so a name that gains an AAAA keeps its checks on the IPv4 path they were
//! written for, the same on every node whatever its source addresses (RFC 6724's order would
//! depend on them). `both` makes two checks of the probe, one per family: each round runs for
//! one of them ([`noting`]) and asks only for that family's records.
//!
//! A lookup ends with the round's budget: hickory's own timeout (resolv.conf's `timeout:`, 5 s by
//! default) is capped to what is left of it, so a server that does not answer fails the round as
//! `resolve_failed` (`timeout`) before the scheduler cuts it off with a bare `timeout` that would
//! not say the name was the problem.

use std::cell::RefCell;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::Resolver as Hickory;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{Failure, Reason};
use crate::netns::NetnsContext;

/// Which servers a probe's host name is resolved with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Resolver {
    /// The servers, search list and options of the namespace's resolv.conf.
    #[default]
    System,
    /// These servers (port 53 unless given), no search list.
    Servers(Vec<SocketAddr>),
}

impl fmt::Display for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resolver::System => f.write_str("system"),
            Resolver::Servers(servers) => {
                let servers: Vec<String> = servers.iter().map(|s| server_text(*s)).collect();
                f.write_str(&servers.join(", "))
            }
        }
    }
}

fn server_text(server: SocketAddr) -> String {
    if server.port() == 53 {
        server.ip().to_string()
    } else {
        server.to_string()
    }
}

fn parse_server(text: &str) -> Option<SocketAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 53));
    }
    text.parse::<SocketAddr>().ok().filter(|s| s.port() != 0)
}

impl<'de> Deserialize<'de> for Resolver {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            List(Vec<String>),
        }
        let bad = || {
            de::Error::custom("expected `system` or a list of DNS server addresses (IP or IP:PORT)")
        };
        match Raw::deserialize(d).map_err(|_| bad())? {
            Raw::Word(word) if word == "system" => Ok(Resolver::System),
            Raw::Word(_) => Err(bad()),
            Raw::List(list) if list.is_empty() => Err(de::Error::custom(
                "the resolver list is empty: name a server, or say `system`",
            )),
            Raw::List(list) => list
                .iter()
                .map(|text| {
                    parse_server(text).ok_or_else(|| {
                        de::Error::custom(format!("{text:?} is not a DNS server address"))
                    })
                })
                .collect::<Result<_, _>>()
                .map(Resolver::Servers),
        }
    }
}

/// The address family a probe's host is resolved to (`family:`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// A and AAAA records, the A ones first.
    #[default]
    Any,
    Ipv4,
    Ipv6,
    /// Each family on its own: the probe is two checks, [`Family::SPLIT`], and a round of
    /// either resolves only its own family ([`Family::in_round`]).
    Both,
}

impl Family {
    /// The families a `both` probe is split into, one check each.
    pub const SPLIT: [Family; 2] = [Family::Ipv4, Family::Ipv6];

    /// Whether an address of this family may be probed.
    pub fn admits(self, ip: IpAddr) -> bool {
        match self.in_round() {
            Family::Any | Family::Both => true,
            Family::Ipv4 => ip.is_ipv4(),
            Family::Ipv6 => ip.is_ipv6(),
        }
    }

    /// The family a round asks for: `both` is the family of the check the round runs for
    /// (see [`noting`]); outside such a round, every family.
    pub fn in_round(self) -> Family {
        match self {
            Family::Both => ROUND
                .try_with(|r| r.borrow().family)
                .ok()
                .flatten()
                .unwrap_or(Family::Any),
            family => family,
        }
    }

    fn strategy(self) -> LookupIpStrategy {
        match self.in_round() {
            Family::Any | Family::Both => LookupIpStrategy::Ipv4AndIpv6,
            Family::Ipv4 => LookupIpStrategy::Ipv4Only,
            Family::Ipv6 => LookupIpStrategy::Ipv6Only,
        }
    }

    /// The family as the config writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Any => "any",
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
            Family::Both => "both",
        }
    }

    /// The `family` label of a check: its family when the probe is split (`both`), else empty.
    pub fn label(split: Option<Family>) -> &'static str {
        split
            .filter(|f| Family::SPLIT.contains(f))
            .map_or("", Family::as_str)
    }

    /// How a probe's description says the family: nothing for `any`.
    pub fn note(self) -> String {
        match self {
            Family::Any => String::new(),
            family => format!(" ({family})"),
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the lookups of one round share, whatever kind runs it.
struct Round {
    /// The end of the round's budget, which no lookup outlives.
    deadline: Instant,
    resolved: Noted,
    /// The interface a link-local target was found on (an IPv6 gateway), which a socket
    /// address to it needs.
    scope: Option<(Ipv6Addr, u32)>,
    /// The family of the check the round runs for, when its probe is split (`both`).
    family: Option<Family>,
}

/// The name and address a round resolved, noted by [`note_resolved`]. Shared with whoever runs
/// the round, so it outlives a round that the scheduler's timeout cuts off: "the name resolved,
/// then the address was silent" is the evidence that matters most.
#[derive(Debug, Clone, Default)]
pub struct Noted(Arc<Mutex<Option<(String, IpAddr)>>>);

impl Noted {
    pub fn take(&self) -> Option<(String, IpAddr)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn note(&self, name: &str, ip: IpAddr) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert_with(|| (name.to_owned(), ip));
    }
}

tokio::task_local! {
    static ROUND: RefCell<Round>;
}

/// Runs a round whose lookups end within `budget` and whose resolved target goes to `noted`;
/// `family` is the check's when its probe is split (`both`), and its lookups ask only for it.
pub async fn noting<T>(
    budget: Duration,
    noted: Noted,
    family: Option<Family>,
    round: impl std::future::Future<Output = T>,
) -> T {
    let scope = Round {
        deadline: Instant::now() + budget,
        resolved: noted,
        scope: None,
        family,
    };
    ROUND.scope(RefCell::new(scope), round).await
}

/// The end of the current round's budget; `None` outside a round ([`noting`]).
fn deadline() -> Option<Instant> {
    ROUND.try_with(|r| r.borrow().deadline).ok()
}

/// Notes the address a round probes for `name`. The first name a round resolves is its
/// target (`path_mtu` resolves its `tcp_mss` endpoint after), so later ones are not noted.
/// Outside a round ([`noting`]) it does nothing.
pub fn note_resolved(name: &str, ip: IpAddr) {
    let _ = ROUND.try_with(|r| r.borrow().resolved.note(name, ip));
}

/// Notes that the link-local `ip` is reached through the interface `index`. Outside a round
/// ([`noting`]) it does nothing.
pub fn note_scope(ip: Ipv6Addr, index: u32) {
    let _ = ROUND.try_with(|r| r.borrow_mut().scope = Some((ip, index)));
}

/// The interface index a socket address to `ip` carries: the one noted for it in this round,
/// else 0 (none).
pub fn scope_id(ip: IpAddr) -> u32 {
    let noted = ROUND.try_with(|r| r.borrow().scope).ok().flatten();
    match (ip, noted) {
        (IpAddr::V6(ip), Some((scoped, index))) if ip == scoped => index,
        _ => 0,
    }
}

/// The socket address of `ip` and `port`, with the scope noted for a link-local `ip`.
pub fn socket_addr(ip: IpAddr, port: u16) -> SocketAddr {
    match ip {
        IpAddr::V6(v6) => SocketAddr::V6(SocketAddrV6::new(v6, port, 0, scope_id(ip))),
        IpAddr::V4(_) => SocketAddr::new(ip, port),
    }
}

/// Looks `name` up with `resolver`, from the calling thread's namespace. A failed lookup is
/// `resolve_failed` with its class first in the detail (`nxdomain`, `nodata`, `servfail`,
/// `refused`, `timeout`, ...); a resolver that cannot be set up is `error`. Only records of
/// `family` are asked for (see [`Family`]).
pub async fn lookup(
    name: &str,
    ctx: &NetnsContext,
    resolver: &Resolver,
    family: Family,
) -> Result<Vec<IpAddr>, Failure> {
    let (config, mut opts) = match resolver {
        Resolver::System => {
            let path = ctx.resolv_conf.display();
            let text = tokio::fs::read(&ctx.resolv_conf).await.map_err(|e| {
                Failure::new(Reason::Error, format!("resolve {name}: read {path}: {e}"))
            })?;
            hickory_resolver::system_conf::parse_resolv_conf(text)
                .map_err(|e| Failure::new(Reason::Error, format!("resolve {name}: {path}: {e}")))?
        }
        Resolver::Servers(servers) => {
            let servers = servers
                .iter()
                .map(|server| {
                    let mut config = NameServerConfig::udp_and_tcp(server.ip());
                    for connection in &mut config.connections {
                        connection.port = server.port();
                    }
                    config
                })
                .collect();
            (
                ResolverConfig::from_parts(None, Vec::new(), servers),
                ResolverOpts::default(),
            )
        }
    };
    opts.cache_size = 0;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.ip_strategy = family.strategy();
    let deadline = deadline();
    if let Some(deadline) = deadline {
        opts.timeout = opts
            .timeout
            .min(deadline.saturating_duration_since(Instant::now()));
    }
    let via = match resolver {
        Resolver::System => config
            .name_servers
            .iter()
            .map(|s| s.ip.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        Resolver::Servers(_) => resolver.to_string(),
    };
    let hickory = Hickory::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(opts)
        .build()
        .map_err(|e| Failure::new(Reason::Error, format!("resolve {name}: {e}")))?;
    let only = match (family, family.in_round()) {
        (_, Family::Any | Family::Both) => "",
        (Family::Both, Family::Ipv4) => " (A only, family: both)",
        (Family::Both, Family::Ipv6) => " (AAAA only, family: both)",
        (_, Family::Ipv4) => " (A only, family: ipv4)",
        (_, Family::Ipv6) => " (AAAA only, family: ipv6)",
    };
    let failed = |class: String| {
        Failure::new(
            Reason::ResolveFailed,
            format!("resolve {name}: {class}{only} (via {via})"),
        )
    };
    let found = match deadline {
        // hickory's retries (`attempts:`) may start again after a capped timeout.
        Some(deadline) => tokio::time::timeout_at(deadline, hickory.lookup_ip(name))
            .await
            .unwrap_or(Err(NetError::Timeout)),
        None => hickory.lookup_ip(name).await,
    };
    match found {
        Ok(found) => {
            let ips: Vec<IpAddr> = found.iter().collect();
            if ips.is_empty() {
                return Err(failed("nodata".into()));
            }
            Ok(ips)
        }
        Err(e) => Err(failed(class(&e))),
    }
}

/// The class of a failed lookup, as an operator reads it.
pub fn class(error: &NetError) -> String {
    let rcode = |code: ResponseCode| match code {
        ResponseCode::NXDomain => "nxdomain".to_owned(),
        ResponseCode::NoError => "nodata".to_owned(),
        ResponseCode::ServFail => "servfail".to_owned(),
        ResponseCode::Refused => "refused".to_owned(),
        other => format!("rcode {}", u16::from(other)),
    };
    match error {
        NetError::Dns(DnsError::NoRecordsFound(none)) => rcode(none.response_code),
        NetError::Dns(DnsError::ResponseCode(code)) => rcode(*code),
        NetError::Timeout => "timeout".to_owned(),
        NetError::Io(e) => format!("io error: {e}"),
        other => format!("error: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Resolver, String> {
        serde_norway::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn resolver_forms() {
        assert_eq!(parse("system"), Ok(Resolver::System));
        assert_eq!(
            parse("[198.19.10.53, '198.19.10.54:5353', '[2001:2::53]:53']"),
            Ok(Resolver::Servers(vec![
                "198.19.10.53:53".parse().unwrap(),
                "198.19.10.54:5353".parse().unwrap(),
                "[2001:2::53]:53".parse().unwrap(),
            ]))
        );
        for bad in [
            "pod",
            "[]",
            "[dns.corp.example]",
            "['198.19.10.53:0']",
            "53",
        ] {
            assert!(parse(bad).is_err(), "{bad} should be rejected");
        }
        assert_eq!(
            parse("['198.19.10.53', '198.19.10.54:5353']")
                .unwrap()
                .to_string(),
            "198.19.10.53, 198.19.10.54:5353"
        );
    }

    #[test]
    fn families() {
        let family = |yaml: &str| serde_norway::from_str::<Family>(yaml).map_err(|e| e.to_string());
        assert_eq!(family("ipv4"), Ok(Family::Ipv4));
        assert_eq!(family("ipv6"), Ok(Family::Ipv6));
        assert_eq!(family("any"), Ok(Family::Any));
        assert_eq!(family("both"), Ok(Family::Both));
        for bad in ["IPv4", "4", "inet6", "dual"] {
            assert!(family(bad).is_err(), "{bad} should be rejected");
        }
        let (v4, v6): (IpAddr, IpAddr) =
            ("198.19.10.1".parse().unwrap(), "2001:2::1".parse().unwrap());
        assert!(Family::Ipv4.admits(v4) && !Family::Ipv4.admits(v6));
        assert!(Family::Ipv6.admits(v6) && !Family::Ipv6.admits(v4));
        assert!(Family::Any.admits(v4) && Family::Any.admits(v6));
        // `any` asks for both, A first: the order that keeps a dual name on IPv4.
        assert_eq!(Family::Any.strategy(), LookupIpStrategy::Ipv4AndIpv6);
        assert_eq!(Family::label(None), "");
        assert_eq!(Family::label(Some(Family::Ipv6)), "ipv6");
    }

    #[tokio::test]
    async fn both_asks_for_the_family_of_the_check_its_round_runs_for() {
        let budget = Duration::from_secs(1);
        let v4: IpAddr = "198.19.10.1".parse().unwrap();
        for (split, strategy, admits_v4) in [
            (Family::Ipv4, LookupIpStrategy::Ipv4Only, true),
            (Family::Ipv6, LookupIpStrategy::Ipv6Only, false),
        ] {
            let seen = noting(budget, Noted::default(), Some(split), async {
                (
                    Family::Both.in_round(),
                    Family::Both.strategy(),
                    Family::Both.admits(v4),
                    Family::Ipv4.in_round(),
                )
            })
            .await;
            assert_eq!(seen, (split, strategy, admits_v4, Family::Ipv4));
        }
        // Outside a split check's round, `both` asks for every family.
        assert_eq!(Family::Both.in_round(), Family::Any);
        assert_eq!(Family::Both.strategy(), LookupIpStrategy::Ipv4AndIpv6);
    }

    #[tokio::test]
    async fn a_link_local_target_carries_its_noted_scope() {
        let gateway: Ipv6Addr = "fe80::1".parse().unwrap();
        let other: IpAddr = "fe80::2".parse().unwrap();
        let addr = noting(Duration::from_secs(1), Noted::default(), None, async {
            note_scope(gateway, 7);
            (socket_addr(IpAddr::V6(gateway), 22), socket_addr(other, 22))
        })
        .await;
        assert_eq!(addr.0.to_string(), "[fe80::1%7]:22");
        assert_eq!(addr.1.to_string(), "[fe80::2]:22");
        // Outside a round, nothing is noted.
        assert_eq!(scope_id(IpAddr::V6(gateway)), 0);
    }

    #[test]
    fn lookup_failures_say_their_class() {
        use hickory_resolver::net::NoRecords;
        use hickory_resolver::proto::op::Query;
        let none = |code| {
            NetError::Dns(DnsError::NoRecordsFound(NoRecords::new(
                Query::default(),
                code,
            )))
        };
        assert_eq!(class(&none(ResponseCode::NXDomain)), "nxdomain");
        assert_eq!(class(&none(ResponseCode::NoError)), "nodata");
        assert_eq!(
            class(&NetError::Dns(DnsError::ResponseCode(
                ResponseCode::ServFail
            ))),
            "servfail"
        );
        assert_eq!(class(&NetError::Timeout), "timeout");
    }

    #[tokio::test]
    async fn a_round_notes_what_it_resolved() {
        let ip: IpAddr = "198.19.10.1".parse().unwrap();
        let other: IpAddr = "198.19.10.2".parse().unwrap();
        let budget = Duration::from_secs(1);
        let noted = Noted::default();
        noting(budget, noted.clone(), None, async {
            note_resolved("ldap.corp.example", ip);
            note_resolved("mss.corp.example", other);
        })
        .await;
        assert_eq!(noted.take(), Some(("ldap.corp.example".to_owned(), ip)));
        let noted = Noted::default();
        noting(budget, noted.clone(), None, async {}).await;
        assert_eq!(noted.take(), None);
        // A round cut off after its lookup still leaves the address it resolved.
        let noted = Noted::default();
        let cut = noting(budget, noted.clone(), None, async {
            note_resolved("ldap.corp.example", ip);
            std::future::pending::<()>().await
        });
        assert!(tokio::time::timeout(Duration::from_millis(10), cut)
            .await
            .is_err());
        assert_eq!(noted.take(), Some(("ldap.corp.example".to_owned(), ip)));
        note_resolved("outside.example", ip); // no round: nothing to note, no panic
    }
}
