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
//! A lookup ends with the round's budget: hickory's own timeout (resolv.conf's `timeout:`, 5 s by
//! default) is capped to what is left of it, so a server that does not answer fails the round as
//! `resolve_failed` (`timeout`) before the scheduler cuts it off with a bare `timeout` that would
//! not say the name was the problem.

use std::cell::RefCell;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::Resolver as Hickory;
use serde::de::{self, Deserializer};
use serde::Deserialize;
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

/// What the lookups of one round share, whatever kind runs it.
struct Round {
    /// The end of the round's budget, which no lookup outlives.
    deadline: Instant,
    resolved: Noted,
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

/// Runs a round whose lookups end within `budget` and whose resolved target goes to `noted`.
pub async fn noting<T>(
    budget: Duration,
    noted: Noted,
    round: impl std::future::Future<Output = T>,
) -> T {
    let scope = Round {
        deadline: Instant::now() + budget,
        resolved: noted,
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

/// Looks `name` up with `resolver`, from the calling thread's namespace. A failed lookup is
/// `resolve_failed` with its class first in the detail (`nxdomain`, `nodata`, `servfail`,
/// `refused`, `timeout`, ...); a resolver that cannot be set up is `error`.
pub async fn lookup(
    name: &str,
    ctx: &NetnsContext,
    resolver: &Resolver,
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
    let failed = |class: String| {
        Failure::new(
            Reason::ResolveFailed,
            format!("resolve {name}: {class} (via {via})"),
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
        noting(budget, noted.clone(), async {
            note_resolved("ldap.corp.example", ip);
            note_resolved("mss.corp.example", other);
        })
        .await;
        assert_eq!(noted.take(), Some(("ldap.corp.example".to_owned(), ip)));
        let noted = Noted::default();
        noting(budget, noted.clone(), async {}).await;
        assert_eq!(noted.take(), None);
        // A round cut off after its lookup still leaves the address it resolved.
        let noted = Noted::default();
        let cut = noting(budget, noted.clone(), async {
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
