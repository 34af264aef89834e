//! Probe targets as written in config (`198.19.10.1:389`, `ldap.corp.example:389`, `gateway`),
//! and their resolution inside the namespace a probe runs in, to the address family asked for.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::de::{self, Deserializer};
use serde::Deserialize;

use super::resolver::{lookup, note_resolved, note_scope, Family, Resolver};
use super::{Failure, Reason};
use crate::netns::NetnsContext;

/// A host to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    /// Resolved in the probe's namespace on every round, so DNS changes are followed.
    Name(String),
    /// The default gateway of whichever namespace the probe runs in.
    Gateway,
}

/// A host and a port, written `HOST:PORT` (`[v6]:PORT` for IPv6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: Host,
    pub port: u16,
}

/// The keyword that stands for the namespace's default gateway.
const GATEWAY: &str = "gateway";

impl Host {
    pub fn parse(text: &str) -> Option<Host> {
        if text == GATEWAY {
            return Some(Host::Gateway);
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Some(Host::Ip(ip));
        }
        valid_hostname(text).then(|| Host::Name(text.trim_end_matches('.').to_owned()))
    }

    /// The addresses of `family` to probe, looked up from inside the probe's namespace: a name
    /// through `resolver`, a fresh one each round (see [`lookup`]), and the first address noted
    /// for the round (see [`note_resolved`]); the gateway of the IPv6 default route for `ipv6`,
    /// of the IPv4 one otherwise.
    pub async fn resolve_family(
        &self,
        ctx: &NetnsContext,
        resolver: &Resolver,
        family: Family,
    ) -> Result<Vec<IpAddr>, Failure> {
        match self {
            Host::Ip(ip) => Ok(vec![*ip]),
            Host::Name(name) => {
                let ips = lookup(name, ctx, resolver, family).await?;
                note_resolved(name, ips[0]);
                Ok(ips)
            }
            Host::Gateway if family.in_round() == Family::Ipv6 => {
                let table = route_table(ctx, "ipv6_route").await?;
                let (gateway, device) =
                    default_gateway6(&table).ok_or_else(|| no_gateway(ctx, " IPv6"))?;
                if gateway.is_unicast_link_local() {
                    let index = nix::net::if_::if_nametoindex(device.as_str()).map_err(|e| {
                        Failure::new(
                            Reason::Error,
                            format!("the IPv6 gateway's interface {device}: {e}"),
                        )
                    })?;
                    note_scope(gateway, index);
                }
                Ok(vec![IpAddr::V6(gateway)])
            }
            Host::Gateway => {
                let table = route_table(ctx, "route").await?;
                let gateway = default_gateway(&table).ok_or_else(|| no_gateway(ctx, ""))?;
                Ok(vec![IpAddr::V4(gateway)])
            }
        }
    }

    /// Why `family` cannot be probed at this host: an address of the other family, or `both`
    /// for a host that is not a name, which has one address of one family to probe.
    pub fn family_problem(&self, family: Family) -> Option<String> {
        let other = |ip: &IpAddr| if ip.is_ipv4() { "IPv4" } else { "IPv6" };
        match self {
            Host::Ip(ip) if family == Family::Both => Some(format!(
                "both, but the target {ip} is an {} address: only a host name has an address of \
                 each family to probe; write ipv4, ipv6 or any",
                other(ip)
            )),
            Host::Gateway if family == Family::Both => Some(
                "both, but the target is the gateway: each family has its own default route, so \
                 write one probe with ipv4 and one with ipv6"
                    .to_owned(),
            ),
            Host::Ip(ip) if !family.admits(*ip) => Some(format!(
                "{family}, but the target {ip} is an {} address",
                other(ip)
            )),
            _ => None,
        }
    }
}

/// The text of `/proc/thread-self/net/<file>`, the calling thread's namespace's: the executor
/// guarantees the probe runs on a thread inside its namespace.
async fn route_table(ctx: &NetnsContext, file: &str) -> Result<String, Failure> {
    tokio::fs::read_to_string(format!("/proc/thread-self/net/{file}"))
        .await
        .map_err(|e| {
            Failure::new(
                Reason::Error,
                format!("read the {} route table ({file}): {e}", ctx.id),
            )
        })
}

fn no_gateway(ctx: &NetnsContext, family: &str) -> Failure {
    Failure::new(
        Reason::Unreachable,
        format!("no{family} default gateway in the {} namespace", ctx.id),
    )
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
            Host::Gateway => f.write_str(GATEWAY),
        }
    }
}

impl HostPort {
    pub fn parse(text: &str) -> Option<HostPort> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            if addr.port() == 0 {
                return None;
            }
            return Some(HostPort {
                host: Host::Ip(addr.ip()),
                port: addr.port(),
            });
        }
        let (host, port) = text.rsplit_once(':')?;
        let port = port.parse::<u16>().ok().filter(|p| *p != 0)?;
        if host.contains(':') || host.starts_with('[') {
            return None; // an IPv6 literal that did not parse above
        }
        Some(HostPort {
            host: Host::parse(host)?,
            port,
        })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            host => write!(f, "{host}:{}", self.port),
        }
    }
}

impl<'de> Deserialize<'de> for Host {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Host::parse(&text).ok_or_else(|| {
            de::Error::custom(format!("{text:?} is not a valid IP address or host name"))
        })
    }
}

impl<'de> Deserialize<'de> for HostPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        HostPort::parse(&text).ok_or_else(|| {
            let hint = if text.contains(':') {
                ""
            } else {
                " (expected HOST:PORT)"
            };
            de::Error::custom(format!("{text:?} is not a valid address{hint}"))
        })
    }
}

/// RFC 1123 host names. A name made only of digits and dots is a mistyped IPv4 address, not a
/// name, so `198.19.10.300` is rejected rather than sent to DNS.
fn valid_hostname(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let labels_ok = name.split('.').all(|label| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    let numeric = name.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    !name.is_empty() && name.len() <= 253 && labels_ok && !numeric
}

/// Finds the IPv6 default route's gateway and its interface in the text of
/// `/proc/net/ipv6_route`; of several, the one with the lowest metric.
pub fn default_gateway6(route_table: &str) -> Option<(Ipv6Addr, String)> {
    route_table
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (destination, length) = (fields.first()?, fields.get(1)?);
            let (gateway, metric, device) = (fields.get(4)?, fields.get(5)?, fields.get(9)?);
            if destination.bytes().any(|b| b != b'0') || *length != "00" {
                return None;
            }
            // Unlike the IPv4 table, the address is printed in network order.
            let gateway = Ipv6Addr::from(u128::from_str_radix(gateway, 16).ok()?);
            let metric = u32::from_str_radix(metric, 16).ok()?;
            (!gateway.is_unspecified()).then(|| (metric, gateway, (*device).to_owned()))
        })
        .min_by_key(|(metric, ..)| *metric)
        .map(|(_, gateway, device)| (gateway, device))
}

/// Finds the default route's gateway in the text of `/proc/net/route`.
pub fn default_gateway(route_table: &str) -> Option<Ipv4Addr> {
    route_table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (destination, gateway, mask) = (fields.get(1)?, fields.get(2)?, fields.get(7)?);
        if *destination != "00000000" || *mask != "00000000" {
            return None;
        }
        // The kernel prints the address as a host-order (little-endian here) hex word.
        let raw = u32::from_str_radix(gateway, 16).ok()?;
        (raw != 0).then(|| Ipv4Addr::from(raw.to_le_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        let parse = |s: &str| HostPort::parse(s).map(|hp| hp.to_string());
        assert_eq!(parse("198.19.10.1:389").as_deref(), Some("198.19.10.1:389"));
        assert_eq!(
            parse("[2001:db8::1]:53").as_deref(),
            Some("[2001:db8::1]:53")
        );
        assert_eq!(
            parse("ldap.corp.example:636").as_deref(),
            Some("ldap.corp.example:636")
        );
        assert_eq!(parse("gateway:22").as_deref(), Some("gateway:22"));
        for bad in [
            "198.19.10.300:80",
            "198.19.10.1",
            "198.19.10.1:0",
            "198.19.10.1:70000",
            "2001:db8::1:53",
            "bad_name:80",
            ":80",
            "-x.example:80",
        ] {
            assert_eq!(HostPort::parse(bad), None, "{bad} should be rejected");
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(Host::parse("gateway"), Some(Host::Gateway));
        assert_eq!(
            Host::parse("198.19.10.1"),
            Some(Host::Ip("198.19.10.1".parse().unwrap()))
        );
        assert_eq!(
            Host::parse("dc1.corp.example."),
            Some(Host::Name("dc1.corp.example".into()))
        );
        assert_eq!(Host::parse("1.2.3"), None);
        assert_eq!(Host::parse(""), None);
    }

    #[test]
    fn ipv6_default_gateway_from_proc_route() {
        let table = "\
20010002000000200000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000002 00000000 00000003     eth1
00000000000000000000000000000000 00 00000000000000000000000000000000 00 20010002000000200000000000000001 00000100 00000002 00000000 00000003     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
";
        assert_eq!(
            default_gateway6(table),
            Some(("2001:2:0:20::1".parse().unwrap(), "eth0".to_owned()))
        );
        let link_local = table.lines().nth(1).unwrap();
        assert_eq!(
            default_gateway6(link_local),
            Some(("fe80::1".parse().unwrap(), "eth1".to_owned()))
        );
        // The kernel's unreachable default on lo has no gateway; a prefix route is not a default.
        let none: String = [0, 3].map(|i| table.lines().nth(i).unwrap()).join("\n");
        assert_eq!(default_gateway6(&none), None);
        assert_eq!(default_gateway6(""), None);
    }

    #[test]
    fn a_literal_of_the_other_family_is_a_problem() {
        let v4 = Host::parse("198.19.10.1").unwrap();
        let v6 = Host::parse("2001:2::1").unwrap();
        let name = Host::parse("dual.corp.example").unwrap();
        assert!(v4.family_problem(Family::Ipv6).is_some());
        assert!(v6.family_problem(Family::Ipv4).is_some());
        for (host, family) in [
            (&v4, Family::Ipv4),
            (&v6, Family::Any),
            (&name, Family::Ipv6),
        ] {
            assert_eq!(host.family_problem(family), None);
        }
        assert_eq!(Host::Gateway.family_problem(Family::Ipv6), None);
        // `both` needs a name: an address or the gateway has one family to probe.
        assert_eq!(name.family_problem(Family::Both), None);
        for host in [&v4, &v6, &Host::Gateway] {
            let problem = host.family_problem(Family::Both).unwrap_or_default();
            assert!(problem.starts_with("both, but the target "), "{problem}");
        }
    }

    #[test]
    fn default_gateway_from_proc_route() {
        let table = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t000212C6\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth0\t00000000\t010212C6\t0003\t0\t0\t0\t00000000\t0\t0\t0
";
        assert_eq!(default_gateway(table), Some(Ipv4Addr::new(198, 18, 2, 1)));
        assert_eq!(
            default_gateway(
                table
                    .lines()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join("\n")
                    .as_str()
            ),
            None
        );
        assert_eq!(default_gateway(""), None);
    }
}
