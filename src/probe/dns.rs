//! The `dns` probe: does each resolver, over each transport, answer a name as expected from this
//! namespace?
//!
//! Every (server, transport) pair gets its own connection, opened inside the probe's namespace
//! for one round: one query, one packet, no cache, no retry, no fallback to another server or
//! transport, no CNAME chasing, and no search list unless asked. What one pair answered never
//! hides what another did, and each pair is reported on its own.
//!
//! This sits on hickory's transport layer (`hickory-net`) rather than its `Resolver`: the
//! resolver resends unanswered UDP queries, follows CNAMEs with further queries, and reports a
//! socket error (network unreachable) as "no connections available". A probe needs the raw
//! response of each server instead.

use std::collections::BTreeSet;
use std::fmt::{self, Write};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use futures_util::future::join_all;
use futures_util::StreamExt;
use hickory_net::proto::op::{DnsRequestOptions, DnsResponse, Query as Question, ResponseCode};
use hickory_net::proto::rr::{Name, RecordType};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use hickory_net::xfer::DnsExchange;
use hickory_net::{DnsHandle, NetError};
use ipnet::IpNet;
use serde::de::{self, Deserializer, IntoDeserializer, SeqAccess, Visitor};
use serde::Deserialize;
use tokio::time::Instant;

use super::{conclude, Failure, Outcome, Reason, Report};
use crate::netns::NetnsContext;

/// A validated `dns:` probe.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawDnsSpec")]
pub struct DnsSpec {
    pub query: Query,
    pub record_type: QueryType,
    /// In config order; `system` expands to every nameserver of the namespace's resolv.conf.
    pub servers: Vec<Server>,
    /// In config order, without duplicates.
    pub transports: Vec<Transport>,
    /// Apply the resolv.conf search list and ndots, as applications do; off by default so a
    /// failure names exactly the query that failed.
    pub search: bool,
    pub expect: Expect,
}

/// The name to ask for, as written and as parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub text: String,
    name: Name,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
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

/// Per-pair results of a round, for the `hybridprobe_dns_*` series.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsReport {
    pub pairs: Vec<DnsPair>,
}

/// One (server, transport) pair. For `system` the pair covers every resolv.conf nameserver: it
/// passes only if each of them did, and each query's duration is kept.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsPair {
    /// `system` or the configured address: a bounded label value.
    pub server: String,
    pub transport: Transport,
    /// Why the pair failed (its first failing nameserver's reason); `None` when it passed. The
    /// diagnoses tell a server that never answered from one that answered wrongly by it.
    pub failure: Option<Reason>,
    pub durations: Vec<Duration>,
}

impl DnsPair {
    pub fn ok(&self) -> bool {
        self.failure.is_none()
    }
}

// === config ===

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDnsSpec {
    query: Query,
    #[serde(rename = "type", default)]
    record_type: QueryType,
    #[serde(default = "default_servers")]
    servers: Vec<Server>,
    #[serde(default = "default_transports", deserialize_with = "transports")]
    transport: Vec<Transport>,
    #[serde(default)]
    search: bool,
    #[serde(default)]
    expect: RawExpect,
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

fn default_servers() -> Vec<Server> {
    vec![Server::System]
}

/// UDP is what applications use first; TCP is checked when asked for.
fn default_transports() -> Vec<Transport> {
    vec![Transport::Udp]
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

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

impl fmt::Display for QueryType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self)
    }
}

impl QueryType {
    fn record_type(self) -> RecordType {
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

/// Accepts `udp`, `tcp`, or a list of them.
fn transports<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Transport>, D::Error> {
    struct OneOrMore;
    impl<'de> Visitor<'de> for OneOrMore {
        type Value = Vec<Transport>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("udp, tcp, or a list of them")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<Transport>, E> {
            Transport::deserialize(text.into_deserializer()).map(|t| vec![t])
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Transport>, A::Error> {
            let mut out = Vec::new();
            while let Some(t) = seq.next_element::<Transport>()? {
                if !out.contains(&t) {
                    out.push(t);
                }
            }
            if out.is_empty() {
                return Err(de::Error::custom("must list udp, tcp or both"));
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

// === resolv.conf ===

/// What a namespace's resolv.conf tells applications, as glibc reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<IpAddr>,
    /// From the last `search` or `domain` line.
    pub search: Vec<String>,
    pub ndots: usize,
}

impl ResolvConf {
    pub fn parse(text: &str) -> ResolvConf {
        let mut conf = ResolvConf {
            nameservers: Vec::new(),
            search: Vec::new(),
            ndots: 1,
        };
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    // A link-local scope (`fe80::1%eth0`) cannot be carried over; the address
                    // is still worth asking.
                    let ip: Option<IpAddr> =
                        words.next().and_then(|w| w.split('%').next()?.parse().ok());
                    conf.nameservers.extend(ip);
                }
                Some("search" | "domain") => {
                    conf.search = words
                        .take_while(|w| !w.starts_with(['#', ';']))
                        .map(str::to_owned)
                        .collect();
                }
                Some("options") => {
                    for option in words {
                        if let Some(n) = option.strip_prefix("ndots:") {
                            conf.ndots = n.parse::<usize>().map_or(conf.ndots, |n| n.min(15));
                        }
                    }
                }
                _ => {}
            }
        }
        conf
    }

    async fn read(path: &Path) -> Result<ResolvConf, String> {
        tokio::fs::read_to_string(path)
            .await
            .map(|text| ResolvConf::parse(&text))
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
    }
}

// === running a round ===

/// One query of a round: whom, how, and what came back.
#[derive(Debug, Clone, PartialEq)]
struct Asked {
    server: Server,
    /// The nameserver asked; `None` when there was none to ask.
    at: Option<SocketAddr>,
    transport: Transport,
    took: Option<Duration>,
    reply: Reply,
}

/// A server's reply, reduced to what expectations and people need.
#[derive(Debug, Clone, PartialEq)]
enum Reply {
    Answers(Vec<Answer>),
    NxDomain,
    NoData,
    Rcode(ResponseCode),
    /// No usable reply: timeout, network error, truncation, a resolv.conf problem.
    Failed(Reason, String),
}

#[derive(Debug, Clone, PartialEq)]
struct Answer {
    /// The record's name: with a search list, which candidate answered.
    owner: String,
    record_type: RecordType,
    /// The record's data as a zone file shows it.
    text: String,
    ip: Option<IpAddr>,
}

/// Only this many answers of one query appear in the detail; the rest are counted.
const SHOWN_ANSWERS: usize = 4;
/// Long TXT records are cut in the detail.
const SHOWN_CHARS: usize = 64;

impl DnsSpec {
    /// The built-in profile's check of one nameserver: does it answer at all, over UDP and TCP?
    /// The first search domain's SOA when there is one (an internal server may have no root
    /// hints), else the root's NS. An empty NOERROR counts: the server answered.
    pub fn nameserver_check(server: IpAddr, search_domain: Option<&str>) -> DnsSpec {
        let domain = search_domain.and_then(|d| Query::parse(d).ok());
        let (query, record_type) = match domain {
            Some(query) => (query, QueryType::SOA),
            None => (
                Query {
                    text: ".".into(),
                    name: Name::root(),
                },
                QueryType::NS,
            ),
        };
        DnsSpec {
            query,
            record_type,
            servers: vec![Server::Addr(SocketAddr::new(server, 53))],
            transports: vec![Transport::Udp, Transport::Tcp],
            search: false,
            expect: Expect {
                rcode: Rcode::NOERROR,
                within: Vec::new(),
                equals: BTreeSet::new(),
                min_answers: 0,
            },
        }
    }

    /// `dns A db.corp.example via system, 198.19.10.1 over udp, tcp`.
    pub fn describe(&self) -> String {
        let servers: Vec<String> = self.servers.iter().map(Server::to_string).collect();
        let transports: Vec<&str> = self.transports.iter().map(|t| t.as_str()).collect();
        format!(
            "dns {} {} via {} over {}",
            self.record_type,
            self.query.text,
            servers.join(", "),
            transports.join(", ")
        )
    }

    /// Asks every (server, transport) pair at once and judges each answer. Each query stops at
    /// `budget`, so a round always reports every pair, including the ones that timed out.
    pub async fn run(&self, ctx: &NetnsContext, budget: Duration) -> Result<Outcome, Failure> {
        let deadline = Instant::now() + budget;
        let wants_conf = self.search || self.servers.contains(&Server::System);
        let conf = if wants_conf {
            Some(ResolvConf::read(&ctx.resolv_conf).await)
        } else {
            None
        };
        let mut targets: Vec<(Server, Result<SocketAddr, String>)> = Vec::new();
        for &server in &self.servers {
            match (server, &conf) {
                (Server::Addr(addr), _) => targets.push((server, Ok(addr))),
                (Server::System, Some(Ok(c))) if !c.nameservers.is_empty() => targets.extend(
                    c.nameservers
                        .iter()
                        .map(|ip| (server, Ok(SocketAddr::new(*ip, 53)))),
                ),
                (Server::System, Some(Err(e))) => targets.push((server, Err(e.clone()))),
                (Server::System, Some(Ok(_)) | None) => targets.push((
                    server,
                    Err(format!("no nameserver in {}", ctx.resolv_conf.display())),
                )),
            }
        }
        let search: Result<Option<&ResolvConf>, &String> = match (self.search, &conf) {
            (true, Some(Ok(c))) => Ok(Some(c)),
            (true, Some(Err(e))) => Err(e),
            _ => Ok(None),
        };
        let queries = targets.iter().flat_map(|(server, at)| {
            self.transports.iter().map(move |&transport| async move {
                let (took, reply) = match (at, search) {
                    (Ok(at), Ok(search)) => {
                        let (took, reply) = self.ask(*at, transport, search, deadline).await;
                        (Some(took), reply)
                    }
                    (Err(why), _) | (Ok(_), Err(why)) => {
                        (None, Reply::Failed(Reason::Error, why.clone()))
                    }
                };
                Asked {
                    server: *server,
                    at: at.as_ref().ok().copied(),
                    transport,
                    took,
                    reply,
                }
            })
        });
        let asked = join_all(queries).await;
        self.judge(&asked)
    }

    /// One query to one nameserver over one transport, from the calling thread's namespace;
    /// with a search list, one query per candidate name until one has an answer.
    async fn ask(
        &self,
        at: SocketAddr,
        transport: Transport,
        search: Option<&ResolvConf>,
        deadline: Instant,
    ) -> (Duration, Reply) {
        let started = Instant::now();
        let budget = deadline.saturating_duration_since(started);
        let exchange = self.exchange(at, transport, search, budget);
        let reply = match tokio::time::timeout_at(deadline, exchange).await {
            Ok(reply) => reply,
            Err(_elapsed) => Reply::Failed(Reason::Timeout, "timeout".into()),
        };
        (started.elapsed(), reply)
    }

    async fn exchange(
        &self,
        at: SocketAddr,
        transport: Transport,
        search: Option<&ResolvConf>,
        timeout: Duration,
    ) -> Reply {
        // The provider owns the exchange's background task, which ends when it is dropped at the
        // end of this call: nothing outlives the round.
        let provider = TokioRuntimeProvider::default();
        let exchange = match transport {
            // hickory resends an unanswered UDP query every few hundred milliseconds unless told
            // otherwise: a hidden retry that would turn a lost packet into a pass.
            Transport::Udp => UdpClientStream::builder(at, provider.clone())
                .with_timeout(Some(timeout))
                .with_max_retries(1)
                .exchange(),
            Transport::Tcp => {
                match TcpClientStream::exchange(at, None, timeout, None, provider.clone()).await {
                    Ok(exchange) => exchange,
                    Err(e) => return Reply::failed(&e),
                }
            }
        };
        let names = match search {
            Some(conf) => candidates(&self.query.name, conf),
            None => {
                let mut name = self.query.name.clone();
                name.set_fqdn(true);
                vec![name]
            }
        };
        // As glibc's res_search: move on to the next candidate after NXDOMAIN, NODATA or
        // SERVFAIL; stop at an answer or a transport failure. NODATA outranks SERVFAIL, which
        // outranks NXDOMAIN, in what is finally reported.
        let mut negative = Reply::NxDomain;
        for name in names {
            let reply =
                query_once(&exchange, name, self.record_type.record_type(), transport).await;
            match reply {
                Reply::NxDomain => {}
                Reply::NoData => negative = Reply::NoData,
                Reply::Rcode(ResponseCode::ServFail) if negative != Reply::NoData => {
                    negative = reply
                }
                Reply::Rcode(ResponseCode::ServFail) => {}
                other => return other,
            }
        }
        negative
    }

    /// What a round makes of `response` when it is the one answer, from `at`: the path a
    /// server's bytes take through the probe once hickory has decoded them (for the fuzz target).
    pub(crate) fn judge_response(
        &self,
        response: &DnsResponse,
        at: SocketAddr,
        transport: Transport,
    ) -> Result<Outcome, Failure> {
        self.judge(&[Asked {
            server: Server::Addr(at),
            at: Some(at),
            transport,
            took: Some(Duration::ZERO),
            reply: Reply::from_response(response, transport),
        }])
    }

    /// Judges every reply and sums the round up: it passes only if every pair did, and the
    /// failure reason is that of the first failing pair in config order.
    fn judge(&self, asked: &[Asked]) -> Result<Outcome, Failure> {
        let verdicts: Vec<Verdict> = asked.iter().map(|a| self.verdict(&a.reply)).collect();
        let mut pairs: Vec<DnsPair> = Vec::new();
        for (a, verdict) in asked.iter().zip(&verdicts) {
            let server = a.server.to_string();
            match pairs
                .iter_mut()
                .find(|p| p.server == server && p.transport == a.transport)
            {
                Some(pair) => {
                    pair.failure = pair.failure.or(failure_reason(verdict));
                    pair.durations.extend(a.took);
                }
                None => pairs.push(DnsPair {
                    server,
                    transport: a.transport,
                    failure: failure_reason(verdict),
                    durations: a.took.into_iter().collect(),
                }),
            }
        }
        let detail = self.render(asked, &verdicts);
        let report = Report::Dns(DnsReport { pairs });
        let failure = verdicts
            .iter()
            .find_map(|v| v.as_ref().err())
            .map(|(r, _)| *r);
        conclude(failure, detail, report)
    }

    /// What one reply means against the expectations, with the text people see for it.
    fn verdict(&self, reply: &Reply) -> Verdict {
        let expect = &self.expect;
        let nx_wanted = expect.rcode == Rcode::NXDOMAIN;
        match reply {
            Reply::Failed(reason, why) => Err((*reason, why.clone())),
            Reply::Rcode(code) => {
                let reason = match code {
                    ResponseCode::ServFail => Reason::Servfail,
                    ResponseCode::Refused => Reason::DnsRefused,
                    _ => Reason::Error,
                };
                Err((reason, rcode_name(*code)))
            }
            Reply::NxDomain if nx_wanted => Ok("NXDOMAIN".into()),
            Reply::NxDomain => Err((Reason::Nxdomain, "NXDOMAIN".into())),
            Reply::NoData if nx_wanted => {
                Err((Reason::Mismatch, "NODATA (expected NXDOMAIN)".into()))
            }
            Reply::NoData if expect.min_answers == 0 => Ok("NODATA".into()),
            Reply::NoData => Err((Reason::Nodata, "NODATA".into())),
            Reply::Answers(answers) => self.check_answers(answers),
        }
    }

    fn check_answers(&self, answers: &[Answer]) -> Verdict {
        let expect = &self.expect;
        let shown = show(answers, self.search);
        let mismatch = |why: String| Err((Reason::Mismatch, format!("{shown} ({why})")));
        if expect.rcode == Rcode::NXDOMAIN {
            return mismatch("expected NXDOMAIN".into());
        }
        let wanted = self.record_type.record_type();
        let matching: Vec<&Answer> = answers.iter().filter(|a| a.record_type == wanted).collect();
        if matching.is_empty() && expect.min_answers > 0 {
            // A CNAME that leads nowhere: the name exists, but not with this type.
            return Err((
                Reason::Nodata,
                format!("{shown} (no {} record)", self.record_type),
            ));
        }
        if matching.len() < expect.min_answers {
            return mismatch(format!(
                "{} {} records, expected at least {}",
                matching.len(),
                self.record_type,
                expect.min_answers
            ));
        }
        let ips: Vec<IpAddr> = matching.iter().filter_map(|a| a.ip).collect();
        if !expect.within.is_empty() {
            if let Some(outside) = ips
                .iter()
                .find(|ip| !expect.within.iter().any(|net| net.contains(*ip)))
            {
                return mismatch(format!("{outside} not within {}", list(&expect.within)));
            }
        }
        if !expect.equals.is_empty()
            && ips.iter().copied().collect::<BTreeSet<_>>() != expect.equals
        {
            return mismatch(format!("expected {}", list(&expect.equals)));
        }
        Ok(shown)
    }

    /// One line: `A db.corp.example: system 198.18.1.4 udp: A 198.19.10.5; tcp: timeout |
    /// 198.19.10.1 udp: A 198.19.10.5; tcp: A 198.19.10.5`.
    fn render(&self, asked: &[Asked], verdicts: &[Verdict]) -> String {
        let mut out = format!("{} {}:", self.record_type, self.query.text);
        let mut group = None;
        for (a, verdict) in asked.iter().zip(verdicts) {
            let text = match verdict {
                Ok(text) | Err((_, text)) => text,
            };
            if group == Some((a.server, a.at)) {
                let _ = write!(out, "; {}: {text}", a.transport.as_str());
                continue;
            }
            if group.is_some() {
                out.push_str(" |");
            }
            group = Some((a.server, a.at));
            let _ = match (a.server, a.at) {
                (Server::System, Some(at)) => write!(out, " system {}", Nameserver(at)),
                (server, _) => write!(out, " {server}"),
            };
            let _ = write!(out, " {}: {text}", a.transport.as_str());
        }
        out
    }
}

/// `Ok(text)` for a reply that meets the expectations, else the reason and the text.
type Verdict = Result<String, (Reason, String)>;

fn failure_reason(verdict: &Verdict) -> Option<Reason> {
    verdict.as_ref().err().map(|(reason, _)| *reason)
}

/// `A 198.19.10.5 A 198.19.10.6`, at most [`SHOWN_ANSWERS`] records, then `(+3 more)`. With a
/// search list each record carries its name, which says which candidate answered.
fn show(answers: &[Answer], with_owner: bool) -> String {
    if answers.is_empty() {
        return "NODATA".into();
    }
    let mut out = String::new();
    for a in answers.iter().take(SHOWN_ANSWERS) {
        if !out.is_empty() {
            out.push(' ');
        }
        if with_owner {
            let _ = write!(out, "{} ", a.owner);
        }
        let _ = write!(out, "{} {}", a.record_type, a.text);
    }
    if answers.len() > SHOWN_ANSWERS {
        let _ = write!(out, " (+{} more)", answers.len() - SHOWN_ANSWERS);
    }
    out
}

/// Response codes as dig prints them.
fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        other => format!("RCODE {}", u16::from(other)),
    }
}

fn list<T: fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    items.join(", ")
}

/// The names a search list makes of `name`, in the order glibc tries them: the name as written
/// first when it has at least `ndots` dots, last otherwise.
pub(crate) fn candidates(name: &Name, conf: &ResolvConf) -> Vec<Name> {
    let fqdn = |mut name: Name| {
        name.set_fqdn(true);
        name
    };
    if name.is_fqdn() {
        return vec![name.clone()];
    }
    let searched = conf.search.iter().filter_map(|domain| {
        let domain = Name::from_ascii(domain).ok()?;
        name.clone().append_domain(&domain).ok().map(fqdn)
    });
    let as_written = std::iter::once(fqdn(name.clone()));
    let dots = usize::from(name.num_labels()).saturating_sub(1);
    if dots >= conf.ndots {
        as_written.chain(searched).collect()
    } else {
        searched.chain(as_written).collect()
    }
}

async fn query_once(
    exchange: &DnsExchange<TokioRuntimeProvider>,
    name: Name,
    record_type: RecordType,
    transport: Transport,
) -> Reply {
    let question = Question::query(name, record_type);
    let mut responses = exchange.lookup(question, DnsRequestOptions::default());
    match responses.next().await {
        Some(Ok(response)) => Reply::from_response(&response, transport),
        Some(Err(e)) => Reply::failed(&e),
        // hickory ends the response stream when its own timeout fires.
        None => Reply::Failed(Reason::Timeout, "timeout".into()),
    }
}

impl Reply {
    fn from_response(response: &DnsResponse, transport: Transport) -> Reply {
        if response.truncation {
            let hint = match transport {
                Transport::Udp => " (the answer does not fit in UDP; ask over tcp)",
                Transport::Tcp => "",
            };
            return Reply::Failed(Reason::Error, format!("truncated{hint}"));
        }
        match response.response_code {
            ResponseCode::NoError if response.answers.is_empty() => Reply::NoData,
            ResponseCode::NoError => Reply::Answers(
                response
                    .answers
                    .iter()
                    .map(|record| Answer {
                        owner: printable(&record.name),
                        record_type: record.record_type(),
                        text: printable(&record.data),
                        ip: record.data.ip_addr(),
                    })
                    .collect(),
            ),
            ResponseCode::NXDomain => Reply::NxDomain,
            code => Reply::Rcode(code),
        }
    }

    fn failed(e: &NetError) -> Reply {
        match e {
            NetError::Timeout => Reply::Failed(Reason::Timeout, "timeout".into()),
            // The server's bytes did not decode: say so, not just what the decoder tripped on.
            NetError::Proto(e) => Reply::Failed(Reason::Error, format!("malformed answer: {e}")),
            // hickory's own end of a TCP stream: the server hung up without a usable answer (it
            // drops undecodable messages and strangers' IDs silently).
            NetError::Io(io)
                if io.raw_os_error().is_none()
                    && matches!(
                        io.kind(),
                        io::ErrorKind::UnexpectedEof | io::ErrorKind::BrokenPipe
                    ) =>
            {
                Reply::Failed(
                    Reason::Error,
                    format!("the server closed the connection without a valid answer ({io})"),
                )
            }
            NetError::Io(io) => {
                let reason = Reason::of_io(io);
                Reply::Failed(reason, format!("{reason} ({io})"))
            }
            other => Reply::Failed(Reason::Error, other.to_string()),
        }
    }
}

/// Record data for a one-line report: control characters replaced, long text cut. Display of
/// some record types fails by design (OPT), which must not panic on a hostile answer.
fn printable(data: &impl fmt::Display) -> String {
    let mut text = String::new();
    if write!(text, "{data}").is_err() {
        return "<unprintable>".into();
    }
    let mut out: String = text
        .chars()
        .take(SHOWN_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().count() > SHOWN_CHARS {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_net::proto::op::{Message, OpCode};
    use hickory_net::proto::rr::rdata::{A, CNAME, OPT, TXT};
    use hickory_net::proto::rr::{RData, Record};
    use hickory_net::proto::ProtoError;

    fn parse(yaml: &str) -> Result<DnsSpec, String> {
        serde_norway::from_str::<DnsSpec>(yaml).map_err(|e| e.to_string())
    }

    fn spec(yaml: &str) -> DnsSpec {
        parse(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn a(ip: &str) -> Answer {
        Answer {
            owner: "db.corp.example.".into(),
            record_type: RecordType::A,
            text: ip.into(),
            ip: Some(ip.parse().unwrap()),
        }
    }

    fn asked(server: Server, at: &str, transport: Transport, reply: Reply) -> Asked {
        Asked {
            server,
            at: Some(addr(at)),
            transport,
            took: Some(Duration::from_millis(3)),
            reply,
        }
    }

    #[test]
    fn defaults_ask_the_system_resolvers_over_udp_for_an_a_record() {
        let s = spec("{query: db.corp.example}");
        assert_eq!(s.record_type, QueryType::A);
        assert_eq!(s.servers, vec![Server::System]);
        assert_eq!(s.transports, vec![Transport::Udp]);
        assert!(!s.search);
        assert_eq!(s.expect.rcode, Rcode::NOERROR);
        assert_eq!(s.expect.min_answers, 1);
        assert_eq!(s.describe(), "dns A db.corp.example via system over udp");
    }

    #[test]
    fn full_spec_parses() {
        let s = spec(
            "{query: db.corp.example, type: A, servers: [system, 198.19.10.1, '198.19.10.2:5353', '[2001:db8::53]:53'],
              transport: [udp, tcp, udp], search: true,
              expect: {within: [198.19.0.0/16], equals: [198.19.10.5], min_answers: 1}}",
        );
        assert_eq!(
            s.servers,
            vec![
                Server::System,
                Server::Addr(addr("198.19.10.1:53")),
                Server::Addr(addr("198.19.10.2:5353")),
                Server::Addr(addr("[2001:db8::53]:53")),
            ]
        );
        assert_eq!(s.transports, vec![Transport::Udp, Transport::Tcp]);
        assert_eq!(
            s.describe(),
            "dns A db.corp.example via system, 198.19.10.1, 198.19.10.2:5353, 2001:db8::53 over udp, tcp"
        );
        assert_eq!(
            spec("{query: x.example, transport: tcp}").transports,
            vec![Transport::Tcp]
        );
        let ptr = spec("{query: 198.19.10.5, type: PTR}");
        assert_eq!(ptr.query.name.to_ascii(), "5.10.19.198.in-addr.arpa.");
        let negative = spec("{query: gone.corp.example, expect: {rcode: NXDOMAIN}}");
        assert_eq!(negative.expect.min_answers, 0);
    }

    #[test]
    fn config_errors_say_what_is_wrong() {
        let cases = [
            (
                "{query: x.example, servers: [10.0.0.300]}",
                r#""10.0.0.300" is not an IP address, IP:PORT or "system""#,
            ),
            (
                "{query: x.example, servers: ['198.19.10.1:0']}",
                "is not an IP address",
            ),
            ("{query: x.example, servers: []}", "servers: list `system`"),
            (
                "{query: x.example, transport: quic}",
                "unknown variant `quic`, expected `udp` or `tcp`",
            ),
            (
                "{query: x.example, transport: []}",
                "must list udp, tcp or both",
            ),
            ("{query: x.example, type: a}", "unknown variant `a`"),
            (
                "{query: 'bad name'}",
                r#""bad name" is not a valid DNS name"#,
            ),
            ("{query: 'a..b'}", "is not a valid DNS name"),
            ("{query: 198.19.10.5}", "ask for its name with type PTR"),
            (
                "{query: x.example, expect: {within: [198.19.0.0/33]}}",
                r#""198.19.0.0/33" is not a network"#,
            ),
            (
                "{query: x.example, expect: {equals: [nope]}}",
                r#""nope" is not an IP address"#,
            ),
            (
                "{query: x.example, type: MX, expect: {within: [198.19.0.0/16]}}",
                "apply to A and AAAA queries, not MX",
            ),
            (
                "{query: x.example, type: AAAA, expect: {equals: [198.19.10.5]}}",
                "198.19.10.5 can never be the answer to a AAAA query",
            ),
            (
                "{query: x.example, expect: {rcode: NXDOMAIN, min_answers: 1}}",
                "cannot be combined",
            ),
            ("{query: x.example, colour: red}", "unknown field `colour`"),
        ];
        for (yaml, want) in cases {
            let got = parse(yaml).unwrap_err();
            assert!(
                got.contains(want),
                "for {yaml}\n want: {want}\n  got: {got}"
            );
        }
    }

    #[test]
    fn resolv_conf_as_glibc_reads_it() {
        let conf = ResolvConf::parse(
            "# generated\nsearch old.example\nnameserver 198.18.0.10\nnameserver fe80::1%eth0\n\
             nameserver nonsense\ndomain corp.example\nsearch corp.example svc.example # note\n\
             options ndots:5 timeout:1\n",
        );
        assert_eq!(
            conf.nameservers,
            vec![
                "198.18.0.10".parse::<IpAddr>().unwrap(),
                "fe80::1".parse().unwrap()
            ]
        );
        assert_eq!(conf.search, vec!["corp.example", "svc.example"]);
        assert_eq!(conf.ndots, 5);
        assert_eq!(ResolvConf::parse("options ndots:99").ndots, 15);
        assert_eq!(ResolvConf::parse("").ndots, 1);
    }

    #[test]
    fn search_candidates_follow_ndots() {
        let conf = ResolvConf::parse("search corp.example svc.example\noptions ndots:2\n");
        let names = |q: &str| -> Vec<String> {
            candidates(&Query::parse(q).unwrap().name, &conf)
                .iter()
                .map(Name::to_ascii)
                .collect()
        };
        assert_eq!(names("db"), ["db.corp.example.", "db.svc.example.", "db."]);
        assert_eq!(
            names("db.dc1.corp"),
            [
                "db.dc1.corp.",
                "db.dc1.corp.corp.example.",
                "db.dc1.corp.svc.example."
            ]
        );
        assert_eq!(names("db.corp.example."), ["db.corp.example."]);
    }

    #[test]
    fn each_pair_is_judged_and_reported_on_its_own() {
        let s = spec(
            "{query: db.corp.example, servers: [system, 198.19.10.1], transport: [udp, tcp],
              expect: {within: [198.19.0.0/16]}}",
        );
        let rounds = vec![
            asked(
                Server::System,
                "198.18.1.4:53",
                Transport::Udp,
                Reply::Answers(vec![a("198.19.10.5")]),
            ),
            asked(
                Server::System,
                "198.18.1.4:53",
                Transport::Tcp,
                Reply::Failed(Reason::Timeout, "timeout".into()),
            ),
            asked(
                Server::System,
                "198.18.1.5:53",
                Transport::Udp,
                Reply::Answers(vec![a("198.19.10.5")]),
            ),
            asked(
                Server::System,
                "198.18.1.5:53",
                Transport::Tcp,
                Reply::Answers(vec![a("198.19.10.5")]),
            ),
            asked(
                Server::Addr(addr("198.19.10.1:53")),
                "198.19.10.1:53",
                Transport::Udp,
                Reply::Answers(vec![a("198.18.99.7")]),
            ),
            asked(
                Server::Addr(addr("198.19.10.1:53")),
                "198.19.10.1:53",
                Transport::Tcp,
                Reply::NxDomain,
            ),
        ];
        let failure = s.judge(&rounds).unwrap_err();
        assert_eq!(
            failure.reason,
            Reason::Timeout,
            "the first failing pair decides"
        );
        assert_eq!(
            failure.detail,
            "A db.corp.example: system 198.18.1.4 udp: A 198.19.10.5; tcp: timeout | \
             system 198.18.1.5 udp: A 198.19.10.5; tcp: A 198.19.10.5 | \
             198.19.10.1 udp: A 198.18.99.7 (198.18.99.7 not within 198.19.0.0/16); tcp: NXDOMAIN"
        );
        let Report::Dns(report) = failure.report else {
            panic!("expected a dns report");
        };
        let pairs: Vec<(&str, &str, Option<Reason>, usize)> = report
            .pairs
            .iter()
            .map(|p| {
                (
                    p.server.as_str(),
                    p.transport.as_str(),
                    p.failure,
                    p.durations.len(),
                )
            })
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("system", "udp", None, 2),
                ("system", "tcp", Some(Reason::Timeout), 2),
                ("198.19.10.1", "udp", Some(Reason::Mismatch), 1),
                ("198.19.10.1", "tcp", Some(Reason::Nxdomain), 1),
            ]
        );
    }

    #[test]
    fn expectations() {
        let verdict = |yaml: &str, reply: Reply| spec(yaml).verdict(&reply);
        let reason = |yaml: &str, reply: Reply| verdict(yaml, reply).map(|_| ()).map_err(|e| e.0);
        let q = "{query: db.corp.example}";
        assert_eq!(
            verdict(q, Reply::Answers(vec![a("198.19.10.5")])),
            Ok("A 198.19.10.5".into())
        );
        assert_eq!(reason(q, Reply::NxDomain), Err(Reason::Nxdomain));
        assert_eq!(reason(q, Reply::NoData), Err(Reason::Nodata));
        assert_eq!(
            reason(q, Reply::Rcode(ResponseCode::ServFail)),
            Err(Reason::Servfail)
        );
        assert_eq!(
            reason(q, Reply::Rcode(ResponseCode::Refused)),
            Err(Reason::DnsRefused)
        );
        assert_eq!(
            verdict(q, Reply::Rcode(ResponseCode::NotImp)),
            Err((Reason::Error, "NOTIMP".into()))
        );
        let dangling = Answer {
            owner: "alias.corp.example.".into(),
            record_type: RecordType::CNAME,
            text: "gone.corp.example.".into(),
            ip: None,
        };
        assert_eq!(
            verdict(q, Reply::Answers(vec![dangling])),
            Err((
                Reason::Nodata,
                "CNAME gone.corp.example. (no A record)".into()
            ))
        );

        let nx = "{query: gone.corp.example, expect: {rcode: NXDOMAIN}}";
        assert_eq!(verdict(nx, Reply::NxDomain), Ok("NXDOMAIN".into()));
        assert_eq!(
            verdict(nx, Reply::Answers(vec![a("198.19.10.5")])),
            Err((Reason::Mismatch, "A 198.19.10.5 (expected NXDOMAIN)".into()))
        );
        assert_eq!(reason(nx, Reply::NoData), Err(Reason::Mismatch));

        let two = "{query: db.corp.example, expect: {min_answers: 2}}";
        assert_eq!(
            verdict(two, Reply::Answers(vec![a("198.19.10.5")])),
            Err((
                Reason::Mismatch,
                "A 198.19.10.5 (1 A records, expected at least 2)".into()
            ))
        );
        let any = "{query: corp.example, type: SOA, expect: {min_answers: 0}}";
        assert_eq!(verdict(any, Reply::NoData), Ok("NODATA".into()));

        let equals = "{query: db.corp.example, expect: {equals: [198.19.10.6, 198.19.10.5]}}";
        let both = Reply::Answers(vec![a("198.19.10.5"), a("198.19.10.6"), a("198.19.10.5")]);
        assert!(verdict(equals, both).is_ok());
        assert_eq!(
            verdict(equals, Reply::Answers(vec![a("198.19.10.5")])),
            Err((
                Reason::Mismatch,
                "A 198.19.10.5 (expected 198.19.10.5, 198.19.10.6)".into()
            ))
        );
    }

    #[test]
    fn many_answers_are_counted_not_listed() {
        let answers: Vec<Answer> = (1..=6).map(|i| a(&format!("198.19.10.{i}"))).collect();
        assert_eq!(
            show(&answers, false),
            "A 198.19.10.1 A 198.19.10.2 A 198.19.10.3 A 198.19.10.4 (+2 more)"
        );
        assert_eq!(show(&answers[..1], true), "db.corp.example. A 198.19.10.1");
    }

    fn response(edit: impl FnOnce(&mut Message)) -> DnsResponse {
        let mut message = Message::response(7, OpCode::Query);
        edit(&mut message);
        DnsResponse::from_message(message).unwrap()
    }

    #[test]
    fn responses_become_replies_without_trusting_their_content() {
        let name = Name::from_ascii("db.corp.example.").unwrap();
        let record = |data: RData| Record::from_rdata(name.clone(), 60, data);
        let answered = response(|m| {
            m.add_answer(record(RData::CNAME(CNAME(name.clone()))));
            m.add_answer(record(RData::A(A::new(198, 19, 10, 5))));
            m.add_answer(record(RData::TXT(TXT::new(vec!["x\u{7}".repeat(40)]))));
            // A hostile server may put anything anywhere; rendering must not panic.
            m.add_answer(record(RData::OPT(OPT::default())));
        });
        let Reply::Answers(answers) = Reply::from_response(&answered, Transport::Udp) else {
            panic!("expected answers");
        };
        assert_eq!(answers[1].ip, Some("198.19.10.5".parse().unwrap()));
        assert!(answers[2].text.ends_with('…'), "{}", answers[2].text);
        assert!(!answers[2].text.contains('\u{7}'), "{}", answers[2].text);
        assert_eq!(answers[3].text, "<unprintable>");

        let empty = response(|_| {});
        assert_eq!(Reply::from_response(&empty, Transport::Udp), Reply::NoData);
        let nx = response(|m| m.metadata.response_code = ResponseCode::NXDomain);
        assert_eq!(Reply::from_response(&nx, Transport::Tcp), Reply::NxDomain);
        let truncated = response(|m| m.metadata.truncation = true);
        assert_eq!(
            Reply::from_response(&truncated, Transport::Udp),
            Reply::Failed(
                Reason::Error,
                "truncated (the answer does not fit in UDP; ask over tcp)".into()
            )
        );
    }

    #[test]
    fn transport_failures_say_what_the_server_did() {
        let failed = |e: NetError| Reply::failed(&e);
        assert_eq!(
            failed(NetError::from(ProtoError::from("label points nowhere"))),
            Reply::Failed(
                Reason::Error,
                "malformed answer: label points nowhere".into()
            )
        );
        assert_eq!(
            failed(NetError::from(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "stream closed"
            ))),
            Reply::Failed(
                Reason::Error,
                "the server closed the connection without a valid answer (stream closed)".into()
            )
        );
        assert_eq!(
            failed(NetError::from(io::Error::from_raw_os_error(
                libc::ECONNRESET
            ))),
            Reply::Failed(
                Reason::Reset,
                "reset (Connection reset by peer (os error 104))".into()
            )
        );
    }

    #[test]
    fn the_profile_check_asks_the_first_search_domain_or_the_root() {
        let ip: IpAddr = "198.18.0.10".parse().unwrap();
        let soa = DnsSpec::nameserver_check(ip, Some("corp.example"));
        assert_eq!(
            soa.describe(),
            "dns SOA corp.example via 198.18.0.10 over udp, tcp"
        );
        assert_eq!(soa.expect.min_answers, 0);
        let root = DnsSpec::nameserver_check(ip, None);
        assert_eq!(root.describe(), "dns NS . via 198.18.0.10 over udp, tcp");
        assert!(root.query.name.is_root());
    }
}
