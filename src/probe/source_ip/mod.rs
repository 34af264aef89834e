//! The `source_ip` probe: which source address does on-prem see, and is that the policy?
//!
//! A reflector on the far side (a STUN server, or an HTTP endpoint that echoes the caller's
//! address) says what source it saw. That is compared with the address this namespace sends
//! from. With Azure CNI they must match (masquerade forbidden); with kubenet they must differ
//! (masquerade expected). The host's conntrack entry for the same flow adds local evidence of
//! whether this node did the SNAT.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use prometheus::GaugeVec;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{timeout_at, Instant};

use super::resolver::{self, Family, Resolver};
use super::series::{flag, InfoSeries};
use super::target::{Host, HostPort};
use super::{
    conclude, CheckLabels, Failure, Families, Measurements, Outcome, Probe, Reason, Target,
};
use crate::net::conntrack::{self, Evidence, Flow};
use crate::net::stun::{self, StunError};
use crate::net::Transport;
use crate::netns::{NetnsContext, NetnsId};

#[cfg(test)]
mod tests;
mod whoami;

pub(crate) use whoami::ask;
use whoami::http_whoami;
pub use whoami::HttpUrl;

/// `source_ip:` as written in config; checked into a [`SourceIpSpec`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSourceIpSpec {
    stun: Option<HostPort>,
    stun_transport: Option<Transport>,
    http: Option<HttpUrl>,
    json_field: Option<String>,
    expect: Option<IpAddr>,
    #[serde(default)]
    masquerade: Masquerade,
    to: Option<IpAddr>,
    #[serde(default)]
    resolver: Resolver,
    #[serde(default)]
    family: Family,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Masquerade {
    #[default]
    Forbidden,
    Expected,
    Any,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawSourceIpSpec")]
pub struct SourceIpSpec {
    pub reflector: Reflector,
    /// The address on-prem should see without masquerade; by default the source the kernel
    /// picks for the route to the reflector, in the probe's namespace.
    pub expect: Option<IpAddr>,
    pub policy: Policy,
    /// Who resolves the reflector's host name: `system` (the namespace's resolv.conf) or a
    /// list of servers.
    pub resolver: Resolver,
    /// Which addresses of the reflector's host are used: `any` (A first), `ipv4`, `ipv6`.
    pub family: Family,
}

/// Who tells us the address it saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Reflector {
    Stun {
        server: HostPort,
        transport: Transport,
    },
    /// A GET whose body is the address, as plain text or in the JSON field `json_field`.
    Http { url: HttpUrl, json_field: String },
}

/// What on-prem should see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// The namespace's own address (Azure CNI toward ranges in `nonMasqueradeCIDRs`).
    Forbidden,
    /// Anything else, and `to` when given (kubenet: the node IP).
    Expected { to: Option<IpAddr> },
    /// Report only.
    Any,
}

impl TryFrom<RawSourceIpSpec> for SourceIpSpec {
    type Error = String;

    fn try_from(raw: RawSourceIpSpec) -> Result<Self, String> {
        let reflector = match (raw.stun, raw.http) {
            (Some(server), None) => {
                if raw.json_field.is_some() {
                    return Err("json_field applies only to http".into());
                }
                Reflector::Stun {
                    server,
                    transport: raw.stun_transport.unwrap_or(Transport::Udp),
                }
            }
            (None, Some(url)) => {
                if raw.stun_transport.is_some() {
                    return Err("stun_transport applies only to stun".into());
                }
                Reflector::Http {
                    url,
                    json_field: raw.json_field.unwrap_or_else(|| "address".into()),
                }
            }
            (Some(_), Some(_)) => return Err("give either stun or http, not both".into()),
            (None, None) => return Err("give a reflector: stun: HOST:PORT or http: URL".into()),
        };
        let policy = match (raw.masquerade, raw.to) {
            (Masquerade::Forbidden, None) => Policy::Forbidden,
            (Masquerade::Expected, to) => Policy::Expected { to },
            (Masquerade::Any, None) => Policy::Any,
            (_, Some(_)) => return Err("`to` applies only to masquerade: expected".into()),
        };
        Ok(SourceIpSpec {
            reflector,
            expect: raw.expect,
            policy,
            resolver: raw.resolver,
            family: raw.family,
        })
    }
}

impl fmt::Display for Reflector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reflector::Stun { server, transport } => write!(f, "stun/{transport} {server}"),
            Reflector::Http { url, .. } => f.write_str(&url.text),
        }
    }
}

/// What a round saw, for the source-IP metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceIpReport {
    pub expected: IpAddr,
    pub observed: IpAddr,
    /// Whether the host's conntrack shows this node SNAT'd the flow; `None` when it could not
    /// be read.
    pub snat_observed: Option<bool>,
}

impl SourceIpReport {
    pub fn preserved(&self) -> bool {
        self.expected == self.observed
    }
}

/// RFC 5389 section 7.2.1: the first retransmission after 500 ms, doubling each time, seven
/// requests at most. The round's budget usually ends the exchange sooner.
const INITIAL_RTO: Duration = Duration::from_millis(500);
const MAX_TRANSMISSIONS: u32 = 7;

/// The `source_ip` kind's own series.
pub struct SourceIpSeries {
    preserved: GaugeVec,
    /// The source address the namespace sends from and the one on-prem saw.
    info: InfoSeries,
    snat_observed: GaugeVec,
}

impl Probe for SourceIpSpec {
    type Measurements = SourceIpReport;
    type Series = SourceIpSeries;

    fn register(families: &mut dyn Families) -> SourceIpSeries {
        let labels = &CheckLabels::names(&[]);
        SourceIpSeries {
            preserved: families.gauges(
                "hybridprobe_source_ip_preserved",
                "1 if on-prem saw the namespace's own source address in the last observation, 0 if \
                 it saw another (masquerade).",
                labels,
            ),
            info: InfoSeries::new(families.gauges(
                "hybridprobe_source_ip_info",
                "Always 1: the source address the namespace sends from and the one on-prem saw, \
                 as of the last observation.",
                &CheckLabels::names(&["expected", "observed"]),
            )),
            snat_observed: families.gauges(
                "hybridprobe_snat_observed",
                "1 if the host's conntrack shows this node SNAT'd the probe's flow, 0 if not; \
                 absent when conntrack could not be read.",
                labels,
            ),
        }
    }

    fn describe(&self) -> String {
        format!("source address via {}", self.reflector)
    }

    async fn run(&self, ctx: &NetnsContext, budget: Duration) -> Result<Outcome, Failure> {
        self.round(ctx, budget).await
    }

    fn observe(series: &SourceIpSeries, check: CheckLabels<'_>, measured: &SourceIpReport) {
        let labels = check.values();
        series
            .preserved
            .with_label_values(&labels)
            .set(flag(measured.preserved()));
        let addresses = vec![measured.expected.to_string(), measured.observed.to_string()];
        series.info.set(check, Some(addresses));
        match measured.snat_observed {
            Some(snat) => series
                .snat_observed
                .with_label_values(&labels)
                .set(flag(snat)),
            None => {
                // Err only when the series is already gone, which is the goal.
                let _ = series.snat_observed.remove_label_values(&labels);
            }
        }
    }

    fn forget(series: &SourceIpSeries, check: CheckLabels<'_>) {
        series.info.forget(check);
    }

    fn targets(&self, failure: Option<&Failure>) -> Vec<Target> {
        let (host, text) = match &self.reflector {
            Reflector::Stun { server, .. } => (&server.host, server.to_string()),
            Reflector::Http { url, .. } => (&url.host, url.text.clone()),
        };
        vec![Target::by_reason(host, text, failure)]
    }

    fn family(&self) -> Option<(&Host, Family)> {
        Some((self.reflector_at().0, self.family))
    }
}

impl SourceIpSpec {
    async fn round(&self, ctx: &NetnsContext, budget: Duration) -> Result<Outcome, Failure> {
        let deadline = Instant::now() + budget;
        let server = self.server(ctx).await?;
        let expected = match self.expect {
            Some(ip) => ip,
            None => route_source(server).await?,
        };
        let (observed, flow) = match &self.reflector {
            Reflector::Stun {
                transport: Transport::Udp,
                ..
            } => stun_udp(server, deadline).await?,
            Reflector::Stun {
                transport: Transport::Tcp,
                ..
            } => stun_tcp(server, deadline).await?,
            Reflector::Http { url, json_field } => {
                http_whoami(url, json_field, server, deadline).await?
            }
        };
        let evidence = ctx
            .in_host(move || async move { conntrack::lookup(&flow) })
            .await;
        let (snat_observed, conntrack_note) = match evidence {
            Ok(Ok(evidence)) => (
                Some(evidence.snat_observed()),
                conntrack_note(evidence, &flow),
            ),
            Ok(Err(e)) => (None, format!("skipped: {e}")),
            Err(e) => (None, format!("skipped: {e}")),
        };
        self.judge(
            ctx.id,
            SourceIpReport {
                expected,
                observed: observed.ip(),
                snat_observed,
            },
            &conntrack_note,
        )
    }

    /// The reflector's address, resolved in the probe's namespace.
    async fn server(&self, ctx: &NetnsContext) -> Result<SocketAddr, Failure> {
        let (host, port) = self.reflector_at();
        let ips = host
            .resolve_family(ctx, &self.resolver, self.family)
            .await?;
        Ok(resolver::socket_addr(ips[0], port))
    }

    /// The reflector's host and port.
    fn reflector_at(&self) -> (&Host, u16) {
        match &self.reflector {
            Reflector::Stun { server, .. } => (&server.host, server.port),
            Reflector::Http { url, .. } => (&url.host, url.port),
        }
    }

    fn judge(
        &self,
        netns: NetnsId,
        report: SourceIpReport,
        conntrack_note: &str,
    ) -> Result<Outcome, Failure> {
        let (expected, observed) = (report.expected, report.observed);
        let saw = format!("on-prem saw {observed}");
        let (head, failure) = match self.policy {
            Policy::Forbidden => (
                format!("expected {expected}, {saw}"),
                (observed != expected).then_some(Reason::Masqueraded),
            ),
            Policy::Any => (format!("source {expected}, {saw}"), None),
            Policy::Expected { to } => {
                let target = to.map(|to| format!(" to {to}")).unwrap_or_default();
                let failure = if observed == expected {
                    Some(Reason::NotMasqueraded)
                } else if to.is_some_and(|to| to != observed) {
                    Some(Reason::UnexpectedSource)
                } else {
                    None
                };
                (
                    format!("expected {expected} masqueraded{target}, {saw}"),
                    failure,
                )
            }
        };
        let hint = if failure == Some(Reason::NotMasqueraded) && netns == NetnsId::Host {
            " (the host's own traffic is never masqueraded: limit this probe to netns: [pod])"
        } else {
            ""
        };
        let detail = format!(
            "{head}{hint} via {}; conntrack: {conntrack_note}",
            self.reflector
        );
        let report = Measurements::SourceIp(report);
        conclude(failure, detail, report)
    }
}

fn conntrack_note(evidence: Evidence, flow: &Flow) -> String {
    match evidence {
        Evidence::Translated { to } => format!("this node SNAT'd {} to {to}", flow.source),
        Evidence::NotTranslated => "this node did not SNAT the flow".into(),
        Evidence::NotTracked => "this node does not track the flow, so did not SNAT it".into(),
    }
}

fn io_failure(what: String) -> impl FnOnce(std::io::Error) -> Failure {
    move |e| Failure::new(Reason::of_io(&e), format!("{what}: {e}"))
}

fn unspecified(peer: SocketAddr) -> SocketAddr {
    match peer {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    }
}

/// The source address the kernel picks for the route to `server` in this namespace: connecting
/// a UDP socket sends nothing, but chooses the route and the source.
async fn route_source(server: SocketAddr) -> Result<IpAddr, Failure> {
    let what = || format!("find the source address for {}", server.ip());
    let socket = UdpSocket::bind(unspecified(server))
        .await
        .map_err(io_failure(what()))?;
    socket.connect(server).await.map_err(io_failure(what()))?;
    Ok(socket.local_addr().map_err(io_failure(what()))?.ip())
}

async fn stun_udp(server: SocketAddr, deadline: Instant) -> Result<(SocketAddr, Flow), Failure> {
    let what = format!("stun/udp {server}");
    let socket = UdpSocket::bind(unspecified(server))
        .await
        .map_err(io_failure(what.clone()))?;
    // Connected: the kernel filters out datagrams from anyone else, and reports ICMP port
    // unreachable as ECONNREFUSED.
    socket
        .connect(server)
        .await
        .map_err(io_failure(what.clone()))?;
    let local = socket.local_addr().map_err(io_failure(what.clone()))?;
    let (id, request) = stun::new_request().map_err(io_failure(what.clone()))?;
    let mut buf = [0u8; stun::MAX_MESSAGE_LEN];
    let mut rto = INITIAL_RTO;
    let mut next_send = Instant::now();
    let mut sent = 0u32;
    let mut last_bad: Option<StunError> = None;
    loop {
        if sent < MAX_TRANSMISSIONS && Instant::now() >= next_send {
            socket
                .send(&request)
                .await
                .map_err(io_failure(what.clone()))?;
            sent += 1;
            next_send += rto;
            rto *= 2;
        }
        let wake = if sent < MAX_TRANSMISSIONS {
            next_send.min(deadline)
        } else {
            deadline
        };
        match timeout_at(wake, socket.recv(&mut buf)).await {
            Err(_) if Instant::now() >= deadline => {
                let bad = last_bad
                    .map(|e| format!("; the last datagram was not an answer: {e}"))
                    .unwrap_or_default();
                return Err(Failure::new(
                    Reason::Timeout,
                    format!("{what}: no answer to {sent} requests{bad}"),
                ));
            }
            Err(_) => {}
            Ok(Err(e)) => return Err(io_failure(what)(e)),
            Ok(Ok(len)) => match stun::decode_response(&buf[..len], &id) {
                Ok(observed) => {
                    let flow = Flow {
                        transport: Transport::Udp,
                        source: local,
                        destination: server,
                    };
                    return Ok((observed, flow));
                }
                Err(e @ StunError::ErrorResponse { .. }) => {
                    return Err(Failure::new(Reason::Error, format!("{what}: {e}")))
                }
                // A stray or mangled datagram: the real answer may still come.
                Err(e) => last_bad = Some(e),
            },
        }
    }
}

/// Connects within the deadline; a deadline that passes first is a timeout.
async fn connect(
    server: SocketAddr,
    deadline: Instant,
    what: &str,
) -> Result<(TcpStream, Flow), Failure> {
    let stream = timeout_at(deadline, TcpStream::connect(server))
        .await
        .map_err(|_| Failure::new(Reason::Timeout, format!("{what}: connect timed out")))?
        .map_err(io_failure(format!("{what}: connect")))?;
    let local = stream
        .local_addr()
        .map_err(io_failure(format!("{what}: connect")))?;
    let flow = Flow {
        transport: Transport::Tcp,
        source: local,
        destination: server,
    };
    Ok((stream, flow))
}

async fn stun_tcp(server: SocketAddr, deadline: Instant) -> Result<(SocketAddr, Flow), Failure> {
    let what = format!("stun/tcp {server}");
    let (mut stream, flow) = connect(server, deadline, &what).await?;
    let (id, request) = stun::new_request().map_err(io_failure(what.clone()))?;
    let exchange = async {
        stream.write_all(&request).await?;
        let mut buf = [0u8; stun::MAX_MESSAGE_LEN];
        stream.read_exact(&mut buf[..stun::HEADER_LEN]).await?;
        let body = match stun::body_len(&buf[..stun::HEADER_LEN]) {
            Ok(body) => body,
            Err(e) => return Ok(Err(e)),
        };
        let end = stun::HEADER_LEN + body;
        stream.read_exact(&mut buf[stun::HEADER_LEN..end]).await?;
        Ok::<_, std::io::Error>(stun::decode_response(&buf[..end], &id))
    };
    let answer = timeout_at(deadline, exchange)
        .await
        .map_err(|_| Failure::new(Reason::Timeout, format!("{what}: no answer")))?
        .map_err(io_failure(what.clone()))?;
    let observed = answer.map_err(|e| Failure::new(Reason::Error, format!("{what}: {e}")))?;
    Ok((observed, flow))
}
