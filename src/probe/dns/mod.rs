//! The `dns` probe: does each resolver, over each transport, answer a name as expected from this
//! namespace?
//!
//! Every (server, transport) pair gets its own socket or connection (UDP, TCP, or TLS for DNS
//! over TLS), opened inside the probe's namespace for one round: one query, one packet, no cache,
//! no retry, no fallback to another server or transport, no CNAME chasing, and no search list
//! unless asked. What one pair answered never hides what another did, and each pair is reported
//! on its own.
//!
//! TCP and TLS sit on hickory's transport layer (`hickory-net`) rather than its `Resolver`: the
//! resolver resends unanswered UDP queries, follows CNAMEs with further queries, and reports a
//! socket error (network unreachable) as "no connections available". A probe needs the raw
//! response of each server instead. Plain UDP, the common case, is written by hand on hickory's
//! message types (`udp.rs` says why).

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::future::join_all;
use futures_util::StreamExt;
use hickory_net::proto::op::{
    DnsRequest, DnsRequestOptions, DnsResponse, Message, Query as Question, ResponseCode,
};
use hickory_net::proto::rr::{Name, RecordType};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::runtime::{RuntimeProvider, Spawn};
use hickory_net::tcp::TcpClientStream;
use hickory_net::xfer::DnsExchange;
use hickory_net::{DnsHandle, DnsMultiplexer, NetError};
use prometheus::GaugeVec;
use serde::Deserialize;
use tokio::time::Instant;

use super::histogram::Histograms;
use super::series::flag;
use super::target::Host;
use super::tls::{self, TlsSpec};
use super::{CheckLabels, Failure, Families, Measurements, Outcome, Probe, Reason, Target};
use crate::netns::NetnsContext;

mod judge;
mod resolv_conf;
mod spec;
#[cfg(test)]
mod tests;
mod udp;

use judge::printable;
pub use resolv_conf::ResolvConf;
use spec::RawDnsSpec;
pub use spec::{DnsTransport, Expect, Query, QueryType, Rcode, Server, Truncation, TLS_PORT};

/// A validated `dns:` probe.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawDnsSpec")]
pub struct DnsSpec {
    pub query: Query,
    pub record_type: QueryType,
    /// In config order; `system` expands to every nameserver of the namespace's resolv.conf.
    pub servers: Vec<Server>,
    /// In config order, without duplicates.
    pub transports: Vec<DnsTransport>,
    /// Apply the resolv.conf search list and ndots, as applications do; off by default so a
    /// failure names exactly the query that failed.
    pub search: bool,
    /// A truncated UDP answer is followed over TCP unless `fail` is asked for.
    pub truncation: Truncation,
    /// The answer must carry the AA flag: the server is authoritative for the name.
    pub authoritative: bool,
    /// The RD flag of the query; `false` asks a server for what it holds itself.
    pub recursion_desired: bool,
    /// How `tls` pairs verify the server: CA file, server name, or no verification.
    pub tls: TlsSpec,
    pub expect: Expect,
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
    pub transport: DnsTransport,
    /// Why the pair failed (its first failing nameserver's reason); `None` when it passed. The
    /// diagnoses tell a server that never answered from one that answered wrongly by it.
    pub failure: Option<Reason>,
    /// Each query's duration; for an answer followed over TCP, both legs together.
    pub durations: Vec<Duration>,
    /// Set when a truncated UDP answer of the pair was followed over TCP: the legs judged apart,
    /// so the diagnoses see a server that answers over UDP and fails over TCP. The pair keeps
    /// its `udp` label.
    pub followed: Option<Followed>,
    /// The pair's first answer outside the expectations (`mismatch`), as the detail shows it
    /// with what was expected: `A 198.18.99.7 (198.18.99.7 not within 198.19.0.0/16)`. The
    /// diagnoses name it.
    pub mismatch: Option<String>,
}

/// The two legs of a UDP pair whose truncated answer was followed over TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Followed {
    /// The UDP legs' own failure; `None` when every one answered (truncated or not).
    pub udp: Option<Reason>,
    /// The TCP legs' failure; `None` when they answered as expected.
    pub tcp: Option<Reason>,
}

impl DnsPair {
    pub fn ok(&self) -> bool {
        self.failure.is_none()
    }
}

// === running a round ===

/// One query of a round: whom, how, and what came back.
#[derive(Debug, Clone, PartialEq)]
struct Asked {
    server: Server,
    /// The nameserver asked; `None` when there was none to ask.
    at: Option<SocketAddr>,
    transport: DnsTransport,
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
    /// The TC bit: the answer did not fit.
    Truncated,
    /// A truncated UDP answer followed over TCP: what TCP answered for the same name.
    OverTcp(Box<Reply>),
    /// An answer without the AA flag when `authoritative: true` asks for it.
    NotAuthoritative(Box<Reply>),
    /// No usable reply: timeout, network error, a resolv.conf problem.
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

/// The `dns` kind's own series, one per (server, transport) pair of a check.
pub struct DnsSeries {
    success: GaugeVec,
    query_duration: Histograms,
}

/// Query durations, four buckets for each of a check's servers × transports: a cached or
/// node-local answer within 5 ms, an on-prem server's within 25 ms, a slow one within 100 ms
/// or 500 ms. Past that a query was retried or ran into its timeout, which `_count` and `_sum`
/// still show.
const QUERY_BUCKETS: &[f64] = &[0.005, 0.025, 0.1, 0.5];

/// `server` is `system` or an address from config, so it stays bounded.
const DNS_PAIR: &[&str] = &["server", "transport"];

impl Probe for DnsSpec {
    type Measurements = DnsReport;
    type Series = DnsSeries;

    fn register(families: &mut dyn Families) -> DnsSeries {
        DnsSeries {
            success: families.gauges(
                "hybridprobe_dns_success",
                "1 if every nameserver of the pair answered as expected in the last round; \
                 server is `system` for the namespace's resolv.conf nameservers.",
                &CheckLabels::names(DNS_PAIR),
            ),
            query_duration: families.histograms(
                "hybridprobe_dns_query_duration_seconds",
                "How long each DNS query took, answered or not.",
                &CheckLabels::names(DNS_PAIR),
                QUERY_BUCKETS,
            ),
        }
    }

    /// `dns A db.corp.example via system, 198.19.10.1 over udp, tcp`.
    fn describe(&self) -> String {
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
    async fn run(&self, ctx: &NetnsContext, budget: Duration) -> Result<Outcome, Failure> {
        self.round(ctx, budget).await
    }

    fn observe(series: &DnsSeries, check: CheckLabels<'_>, measured: &DnsReport) {
        for pair in &measured.pairs {
            let labels = check.with(&[pair.server.as_str(), pair.transport.as_str()]);
            series
                .success
                .with_label_values(&labels)
                .set(flag(pair.ok()));
            let duration = series.query_duration.with_label_values(&labels);
            for took in &pair.durations {
                duration.observe(took.as_secs_f64());
            }
        }
    }

    /// Each configured server is a target; the namespace's own resolvers (`system`) are not
    /// named by the config, so they say nothing about a path.
    fn targets(&self, failure: Option<&Failure>) -> Vec<Target> {
        self.servers
            .iter()
            .filter_map(|server| {
                let Server::Addr(addr) = server else {
                    return None;
                };
                let text = server.to_string();
                let answered = match failure.map(|f| (f, &f.measurements)) {
                    None => Some(true),
                    Some((_, Measurements::Dns(report))) => {
                        server_answered(report.pairs.iter().filter(|p| p.server == text).flat_map(
                            |p| match p.followed {
                                // A truncated UDP answer is an answer, whatever TCP did.
                                Some(legs) => vec![legs.udp, legs.tcp],
                                None => vec![p.failure],
                            },
                        ))
                    }
                    Some((f, _)) => f.reason.answered(),
                };
                Some(Target {
                    host: Host::Ip(addr.ip()),
                    text,
                    answered,
                })
            })
            .collect()
    }
}

/// A server answered when any of its pairs did; it did not when every pair that says anything
/// went unanswered.
fn server_answered(failures: impl Iterator<Item = Option<Reason>>) -> Option<bool> {
    let mut verdict = None;
    for failure in failures {
        match failure.map_or(Some(true), Reason::answered) {
            Some(true) => return Some(true),
            Some(false) => verdict = Some(false),
            None => {}
        }
    }
    verdict
}

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
            transports: vec![DnsTransport::Udp, DnsTransport::Tcp],
            search: false,
            truncation: Truncation::RetryTcp,
            authoritative: false,
            recursion_desired: true,
            tls: TlsSpec::default(),
            expect: Expect {
                rcode: Rcode::NOERROR,
                within: Vec::new(),
                equals: BTreeSet::new(),
                min_answers: 0,
            },
        }
    }

    /// Asks every (server, transport) pair at once and judges each answer. Each query stops at
    /// `budget`, so a round always reports every pair, including the ones that timed out.
    async fn round(&self, ctx: &NetnsContext, budget: Duration) -> Result<Outcome, Failure> {
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
                        let at = transport.port_of(*at);
                        let (took, reply) = self.ask(at, transport, search, deadline).await;
                        (Some(took), reply)
                    }
                    (Err(why), _) | (Ok(_), Err(why)) => {
                        (None, Reply::Failed(Reason::Error, why.clone()))
                    }
                };
                Asked {
                    server: *server,
                    at: at.as_ref().ok().map(|at| transport.port_of(*at)),
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
        transport: DnsTransport,
        search: Option<&ResolvConf>,
        deadline: Instant,
    ) -> (Duration, Reply) {
        let started = Instant::now();
        let exchange = self.exchange(at, transport, search, deadline);
        let reply = match tokio::time::timeout_at(deadline, exchange).await {
            Ok(reply) => reply,
            Err(_elapsed) => Reply::Failed(Reason::Timeout, "timeout".into()),
        };
        (started.elapsed(), reply)
    }

    async fn exchange(
        &self,
        at: SocketAddr,
        transport: DnsTransport,
        search: Option<&ResolvConf>,
        deadline: Instant,
    ) -> Reply {
        let client = match transport {
            DnsTransport::Udp => Ok(Client::Udp(at)),
            DnsTransport::Tcp => Client::tcp(at, deadline).await,
            DnsTransport::Tls => self.tls_client(at, deadline).await,
        };
        let client = match client {
            Ok(client) => client,
            Err(reply) => return reply,
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
        // A truncated UDP answer is followed over TCP for that name only, and the search goes
        // on from what TCP answered; the reply says when that happened.
        let mut negative = Reply::NxDomain;
        let mut negative_followed = false;
        for name in names {
            let mut reply = self.query_once(&client, name.clone()).await;
            let followed = reply == Reply::Truncated
                && transport == DnsTransport::Udp
                && self.truncation == Truncation::RetryTcp;
            if followed {
                reply = self.over_tcp(at, name, deadline).await;
            }
            match reply {
                Reply::NxDomain => {}
                Reply::NoData => (negative, negative_followed) = (Reply::NoData, followed),
                Reply::Rcode(ResponseCode::ServFail) if negative != Reply::NoData => {
                    (negative, negative_followed) = (reply, followed)
                }
                Reply::Rcode(ResponseCode::ServFail) => {}
                other => return followed_if(followed, other),
            }
        }
        followed_if(negative_followed, negative)
    }

    /// The TCP leg of a truncated UDP answer: the same name to the same server on a new
    /// connection, stopped at the round's deadline.
    async fn over_tcp(&self, at: SocketAddr, name: Name, deadline: Instant) -> Reply {
        let leg = async {
            match Client::tcp(at, deadline).await {
                Ok(client) => self.query_once(&client, name).await,
                Err(reply) => reply,
            }
        };
        match tokio::time::timeout_at(deadline, leg).await {
            Ok(reply) => reply,
            Err(_elapsed) => Reply::Failed(Reason::Timeout, "timeout".into()),
        }
    }

    /// A DNS-over-TLS connection to `at`: hickory's TLS stream with the probe's own client
    /// config, so a failed handshake gets the typed reason and names the certificate, as the
    /// `http` kind's do. hickory's `tls_exchange` would turn SNI off; `server_name` is sent.
    async fn tls_client(&self, at: SocketAddr, deadline: Instant) -> Result<Client, Reply> {
        let error = |why| Reply::Failed(Reason::Error, why);
        let (config, presented) = tls::client_config(&self.tls, b"dot").map_err(error)?;
        let name = tls::server_name(&self.tls, &at.ip().to_string()).map_err(error)?;
        let provider = TokioRuntimeProvider::default();
        let (connect, sender) =
            hickory_net::tls::tls_client_connect(at, name, config, provider.clone());
        let stream = match connect.await {
            Ok(stream) => stream,
            Err(NetError::Io(io)) => {
                let (reason, why) = tls::failed(&io, &presented);
                return Err(Reply::Failed(reason, format!("{reason} ({why})")));
            }
            Err(e) => return Err(Reply::failed(&e)),
        };
        let timeout = deadline.saturating_duration_since(Instant::now());
        let multiplexer = DnsMultiplexer::new(stream, sender).with_timeout(timeout);
        let (exchange, background) = DnsExchange::from_stream(multiplexer);
        provider.create_handle().spawn_bg(background);
        Ok(Client::Exchange {
            exchange,
            _tasks: provider,
        })
    }

    /// The question for `name` with the spec's flags, as hickory's client builds it: a random
    /// ID, and an EDNS record with hickory's default payload size.
    fn request(&self, name: Name) -> DnsRequest {
        let question = Question::query(name, self.record_type.record_type());
        let mut options = DnsRequestOptions::default();
        options.recursion_desired = self.recursion_desired;
        DnsRequest::from_query(question, options)
    }

    /// One question to the pair's server: one datagram over UDP, or one message on the open
    /// connection.
    async fn query_once(&self, client: &Client, name: Name) -> Reply {
        let request = self.request(name);
        let answer = match client {
            Client::Udp(at) => udp::exchange(*at, &request).await,
            // hickory ends the response stream when its own timeout fires.
            Client::Exchange { exchange, .. } => match exchange.send(request).next().await {
                Some(answer) => answer.map(DnsResponse::into_message),
                None => Err(NetError::Timeout),
            },
        };
        match answer {
            Ok(answer) => Reply::of(&answer, self.authoritative),
            Err(e) => Reply::failed(&e),
        }
    }
}

/// Where a pair's questions go.
enum Client {
    /// Plain UDP, by hand (`udp.rs`): a fresh socket for each question, as hickory's client has.
    Udp(SocketAddr),
    /// An open TCP or TLS connection in hickory's client.
    Exchange {
        exchange: DnsExchange<TokioRuntimeProvider>,
        /// Owns the exchange's background task, which ends when the client is dropped: nothing
        /// outlives the round.
        _tasks: TokioRuntimeProvider,
    },
}

impl Client {
    /// A new TCP connection to `at`, given until `deadline` to connect and to answer.
    async fn tcp(at: SocketAddr, deadline: Instant) -> Result<Client, Reply> {
        let provider = TokioRuntimeProvider::default();
        let timeout = deadline.saturating_duration_since(Instant::now());
        match TcpClientStream::exchange(at, None, timeout, None, provider.clone()).await {
            Ok(exchange) => Ok(Client::Exchange {
                exchange,
                _tasks: provider,
            }),
            Err(e) => Err(Reply::failed(&e)),
        }
    }
}

fn followed_if(followed: bool, reply: Reply) -> Reply {
    if followed {
        Reply::OverTcp(Box::new(reply))
    } else {
        reply
    }
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

impl Reply {
    /// What a response says; with `require_aa`, an answer without the AA flag is marked.
    fn of(response: &Message, require_aa: bool) -> Reply {
        let reply = Reply::from_response(response);
        let answered = matches!(reply, Reply::Answers(_) | Reply::NxDomain | Reply::NoData);
        if require_aa && answered && !response.authoritative {
            return Reply::NotAuthoritative(Box::new(reply));
        }
        reply
    }

    fn from_response(response: &Message) -> Reply {
        if response.truncation {
            return Reply::Truncated;
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
