//! The `dns:` probe's config schema: the types a config names, and their validation.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use hickory_net::proto::rr::{Name, RecordType};
use ipnet::IpNet;
use serde::de::{self, Deserializer, IntoDeserializer, SeqAccess, Visitor};
use serde::Deserialize;

use super::DnsSpec;
use crate::probe::tls::TlsSpec;

/// The name to ask for, as written and as parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub text: String,
    pub(super) name: Name,
}

/// The record types a probe may ask for: a closed set, since the type appears in reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[allow(clippy::upper_case_acronyms)]
pub enum QueryType {
    #[default]
    A,
    AAAA,
    CNAME,
    MX,
    NS,
    PTR,
    SOA,
    SRV,
    TXT,
}

/// Whom to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// Every nameserver in the namespace's resolv.conf, each asked on its own.
    System,
    Addr(SocketAddr),
}

/// How a query travels, as config, the `transport` label and details spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsTransport {
    Udp,
    Tcp,
    /// DNS over TLS (RFC 7858): TCP's framing inside a TLS session, port 853 by default.
    Tls,
}

/// Where DNS over TLS listens unless the server names another port.
pub const TLS_PORT: u16 = 853;

impl DnsTransport {
    pub fn as_str(self) -> &'static str {
        match self {
            DnsTransport::Udp => "udp",
            DnsTransport::Tcp => "tcp",
            DnsTransport::Tls => "tls",
        }
    }

    /// The address to ask `at` on: a server written without a port (port 53, plain DNS's)
    /// is asked over TLS on 853.
    pub fn port_of(self, at: SocketAddr) -> SocketAddr {
        match self {
            DnsTransport::Tls if at.port() == 53 => SocketAddr::new(at.ip(), TLS_PORT),
            _ => at,
        }
    }
}

/// What a UDP answer with the TC bit (it did not fit) leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Truncation {
    /// Ask the same server the same name over TCP within the round, as every stub resolver
    /// does; the pair fails only when that TCP leg does.
    #[default]
    RetryTcp,
    /// UDP-only strictness: a truncated answer fails the pair.
    Fail,
}

/// What counts as a correct answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Expect {
    pub rcode: Rcode,
    /// Every address answered lies in one of these networks.
    pub within: Vec<IpNet>,
    /// The answered addresses are exactly these (order and duplicates aside).
    pub equals: BTreeSet<IpAddr>,
    /// At least this many records of the asked type; 0 accepts an empty NOERROR (NODATA).
    pub min_answers: usize,
}

/// The response codes a probe may expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[allow(clippy::upper_case_acronyms)]
pub enum Rcode {
    #[default]
    NOERROR,
    /// A negative check: the name must not exist (a split-horizon leak, a removed record).
    NXDOMAIN,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDnsSpec {
    query: Query,
    #[serde(rename = "type", default)]
    record_type: QueryType,
    #[serde(default = "default_servers")]
    servers: Vec<Server>,
    #[serde(default = "default_transports", deserialize_with = "transports")]
    transport: Vec<DnsTransport>,
    #[serde(default)]
    search: bool,
    #[serde(default)]
    truncation: Truncation,
    #[serde(default)]
    authoritative: bool,
    #[serde(default = "yes")]
    recursion_desired: bool,
    #[serde(default)]
    expect: RawExpect,
    tls: Option<TlsSpec>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    #[serde(default)]
    rcode: Rcode,
    #[serde(default)]
    within: Vec<Cidr>,
    #[serde(default)]
    equals: Vec<Address>,
    min_answers: Option<usize>,
}

fn yes() -> bool {
    true
}

fn default_servers() -> Vec<Server> {
    vec![Server::System]
}

/// UDP is what applications use first; TCP is checked when asked for.
fn default_transports() -> Vec<DnsTransport> {
    vec![DnsTransport::Udp]
}

impl TryFrom<RawDnsSpec> for DnsSpec {
    type Error = String;

    fn try_from(raw: RawDnsSpec) -> Result<DnsSpec, String> {
        let addresses = matches!(raw.record_type, QueryType::A | QueryType::AAAA);
        let e = raw.expect;
        if raw.servers.is_empty() {
            return Err("servers: list `system`, addresses, or both".into());
        }
        let checks_addresses = !e.within.is_empty() || !e.equals.is_empty();
        if checks_addresses && !addresses {
            return Err(format!(
                "expect.within and expect.equals apply to A and AAAA queries, not {}",
                raw.record_type
            ));
        }
        if e.rcode == Rcode::NXDOMAIN
            && (!e.within.is_empty() || !e.equals.is_empty() || e.min_answers.is_some())
        {
            return Err(
                "expect.rcode NXDOMAIN cannot be combined with within, equals or min_answers"
                    .into(),
            );
        }
        if let Some(tls) = &raw.tls {
            if !raw.transport.contains(&DnsTransport::Tls) {
                return Err("tls: only with transport tls".into());
            }
            tls.validate()?;
        }
        let want_v4 = raw.record_type == QueryType::A;
        if let Some(Address(ip)) = e.equals.iter().find(|a| a.0.is_ipv4() != want_v4) {
            return Err(format!(
                "expect.equals: {ip} can never be the answer to a {} query",
                raw.record_type
            ));
        }
        let parsed_ip = raw.query.text.parse::<IpAddr>();
        let query = match (raw.record_type, parsed_ip) {
            (QueryType::PTR, Ok(ip)) => Query {
                text: raw.query.text,
                name: Name::from(ip),
            },
            (_, Ok(_)) => {
                return Err(format!(
                    "query: {} is an address; ask for its name with type PTR",
                    raw.query.text
                ))
            }
            (_, Err(_)) => raw.query,
        };
        let default_min = match e.rcode {
            Rcode::NOERROR => 1,
            Rcode::NXDOMAIN => 0,
        };
        Ok(DnsSpec {
            query,
            record_type: raw.record_type,
            servers: raw.servers,
            transports: raw.transport,
            search: raw.search,
            truncation: raw.truncation,
            authoritative: raw.authoritative,
            recursion_desired: raw.recursion_desired,
            tls: raw.tls.unwrap_or_default(),
            expect: Expect {
                rcode: e.rcode,
                within: e.within.into_iter().map(|c| c.0).collect(),
                equals: e.equals.into_iter().map(|a| a.0).collect(),
                min_answers: e.min_answers.unwrap_or(default_min),
            },
        })
    }
}

impl<'de> Deserialize<'de> for Query {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Query::parse(&text).map_err(de::Error::custom)
    }
}

impl Query {
    pub fn parse(text: &str) -> Result<Query, String> {
        let invalid = || format!("{text:?} is not a valid DNS name");
        let printable = !text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic());
        if !printable || text.contains("..") {
            return Err(invalid());
        }
        let name = Name::from_ascii(text).map_err(|_| invalid())?;
        Ok(Query {
            text: text.to_owned(),
            name,
        })
    }
}

impl<'de> Deserialize<'de> for Server {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Server::parse(&text).ok_or_else(|| {
            de::Error::custom(format!(
                "{text:?} is not an IP address, IP:PORT or \"system\""
            ))
        })
    }
}

impl Server {
    pub fn parse(text: &str) -> Option<Server> {
        if text == "system" {
            return Some(Server::System);
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Some(Server::Addr(SocketAddr::new(ip, 53)));
        }
        let addr = text.parse::<SocketAddr>().ok()?;
        (addr.port() != 0).then_some(Server::Addr(addr))
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Server::System => f.write_str("system"),
            Server::Addr(addr) => write!(f, "{}", Nameserver(*addr)),
        }
    }
}

/// A nameserver address as people write it: the port only when it is not 53.
struct Nameserver(SocketAddr);

impl fmt::Display for Nameserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.port() == 53 {
            write!(f, "{}", self.0.ip())
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl fmt::Display for QueryType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self)
    }
}

impl QueryType {
    pub(super) fn record_type(self) -> RecordType {
        match self {
            QueryType::A => RecordType::A,
            QueryType::AAAA => RecordType::AAAA,
            QueryType::CNAME => RecordType::CNAME,
            QueryType::MX => RecordType::MX,
            QueryType::NS => RecordType::NS,
            QueryType::PTR => RecordType::PTR,
            QueryType::SOA => RecordType::SOA,
            QueryType::SRV => RecordType::SRV,
            QueryType::TXT => RecordType::TXT,
        }
    }
}

/// Accepts `udp`, `tcp`, `tls`, or a list of them.
fn transports<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<DnsTransport>, D::Error> {
    struct OneOrMore;
    impl<'de> Visitor<'de> for OneOrMore {
        type Value = Vec<DnsTransport>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("udp, tcp, tls, or a list of them")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<DnsTransport>, E> {
            DnsTransport::deserialize(text.into_deserializer()).map(|t| vec![t])
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<DnsTransport>, A::Error> {
            let mut out = Vec::new();
            while let Some(t) = seq.next_element::<DnsTransport>()? {
                if !out.contains(&t) {
                    out.push(t);
                }
            }
            if out.is_empty() {
                return Err(de::Error::custom("must list udp, tcp, tls or several"));
            }
            Ok(out)
        }
    }
    d.deserialize_any(OneOrMore)
}

struct Cidr(IpNet);

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map(Cidr).map_err(|_| {
            de::Error::custom(format!("{text:?} is not a network (e.g. 198.19.0.0/16)"))
        })
    }
}

struct Address(IpAddr);

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map(Address)
            .map_err(|_| de::Error::custom(format!("{text:?} is not an IP address")))
    }
}
