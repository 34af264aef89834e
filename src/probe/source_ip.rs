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

use serde::de::{self, Deserializer};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{timeout_at, Instant};

use super::target::{Host, HostPort};
use super::{conclude, Failure, Outcome, Reason, Report};
use crate::net::conntrack::{self, Evidence, Flow, Transport};
use crate::net::stun::{self, StunError};
use crate::netns::{NetnsContext, NetnsId};

/// `source_ip:` as written in config; checked into a [`SourceIpSpec`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSourceIpSpec {
    stun: Option<HostPort>,
    stun_transport: Option<StunTransport>,
    http: Option<HttpUrl>,
    json_field: Option<String>,
    expect: Option<IpAddr>,
    #[serde(default)]
    masquerade: Masquerade,
    to: Option<IpAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StunTransport {
    #[default]
    Udp,
    Tcp,
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
}

/// Who tells us the address it saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Reflector {
    Stun {
        server: HostPort,
        transport: StunTransport,
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
                    transport: raw.stun_transport.unwrap_or_default(),
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
        })
    }
}

impl fmt::Display for Reflector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reflector::Stun { server, transport } => {
                let transport = match transport {
                    StunTransport::Udp => "udp",
                    StunTransport::Tcp => "tcp",
                };
                write!(f, "stun/{transport} {server}")
            }
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
/// A whoami answer is one address; anything much larger is not one.
const MAX_HTTP_RESPONSE: u64 = 16 * 1024;

impl SourceIpSpec {
    pub async fn run(&self, ctx: &NetnsContext, budget: Duration) -> Result<Outcome, Failure> {
        let deadline = Instant::now() + budget;
        let server = self.server(ctx).await?;
        let expected = match self.expect {
            Some(ip) => ip,
            None => route_source(server).await?,
        };
        let (observed, flow) = match &self.reflector {
            Reflector::Stun {
                transport: StunTransport::Udp,
                ..
            } => stun_udp(server, deadline).await?,
            Reflector::Stun {
                transport: StunTransport::Tcp,
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
        let (host, port) = match &self.reflector {
            Reflector::Stun { server, .. } => (&server.host, server.port),
            Reflector::Http { url, .. } => (&url.host, url.port),
        };
        Ok(SocketAddr::new(host.resolve(ctx).await?[0], port))
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
        let report = Report::SourceIp(report);
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

async fn http_whoami(
    url: &HttpUrl,
    json_field: &str,
    server: SocketAddr,
    deadline: Instant,
) -> Result<(SocketAddr, Flow), Failure> {
    let what = format!("GET {}", url.text);
    let (mut stream, flow) = connect(server, deadline, &what).await?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: hybridprobe/{}\r\nAccept: application/json, text/plain\r\nConnection: close\r\n\r\n",
        url.path,
        url.authority(),
        env!("CARGO_PKG_VERSION")
    );
    let exchange = async {
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        (&mut stream)
            .take(MAX_HTTP_RESPONSE + 1)
            .read_to_end(&mut response)
            .await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = timeout_at(deadline, exchange)
        .await
        .map_err(|_| Failure::new(Reason::Timeout, format!("{what}: no answer")))?
        .map_err(io_failure(what.clone()))?;
    let address = parse_http_response(&response, json_field)
        .map_err(|why| Failure::new(Reason::Error, format!("{what}: {why}")))?;
    // The reflector may not say which port it saw; only the address is compared.
    Ok((SocketAddr::new(address, 0), flow))
}

/// The address in a whoami response: status 200, and a body that is the address (plain text)
/// or a JSON object with it in `json_field`.
pub(crate) fn parse_http_response(response: &[u8], json_field: &str) -> Result<IpAddr, String> {
    if response.len() as u64 > MAX_HTTP_RESPONSE {
        return Err(format!("response is over {MAX_HTTP_RESPONSE} bytes"));
    }
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("response has no end of headers")?;
    let head = String::from_utf8_lossy(&response[..split]);
    let body = &response[split + 4..];
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| {
            format!(
                "not an HTTP status line: {:.80}",
                format!("{status_line:?}")
            )
        })?;
    if status != 200 {
        return Err(format!("status {status}, want 200"));
    }
    let chunked = lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = if chunked {
        dechunk(body).ok_or("malformed chunked body")?
    } else {
        body.to_vec()
    };
    parse_address_body(&String::from_utf8_lossy(&body), json_field)
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

fn parse_address_body(body: &str, json_field: &str) -> Result<IpAddr, String> {
    let body = body.trim();
    let text = if body.starts_with('{') {
        let json: serde_json::Value =
            serde_json::from_str(body).map_err(|e| format!("body is not valid JSON: {e}"))?;
        match json.get(json_field) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(_) => return Err(format!("JSON field {json_field:?} is not a string")),
            None => return Err(format!("JSON body has no field {json_field:?}")),
        }
    } else {
        body.lines().next().unwrap_or_default().trim().to_owned()
    };
    text.parse::<IpAddr>()
        .or_else(|_| text.parse::<SocketAddr>().map(|a| a.ip()))
        .map(|ip| ip.to_canonical())
        .map_err(|_| format!("{:.80} is not an address", format!("{text:?}")))
}

/// An `http://HOST[:PORT]/PATH` URL. No TLS: reflectors sit on the private path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub host: Host,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
    /// As written, for messages.
    pub text: String,
}

impl HttpUrl {
    pub fn parse(text: &str) -> Result<HttpUrl, String> {
        let invalid = |why: &str| format!("{text:?} is not a valid URL ({why})");
        let rest = text
            .strip_prefix("http://")
            .ok_or_else(|| invalid("only http:// is supported"))?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        if path
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(invalid("whitespace in the path"));
        }
        let port_of = |text: &str| {
            text.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| invalid("bad port"))
        };
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| invalid("unclosed ["))?;
            match after.strip_prefix(':') {
                Some(port) => (host, port_of(port)?),
                None if after.is_empty() => (host, 80),
                None => return Err(invalid("bad port")),
            }
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, port_of(port)?),
                None => (authority, 80),
            }
        };
        let host = Host::parse(host).ok_or_else(|| invalid("bad host"))?;
        Ok(HttpUrl {
            host,
            port,
            path,
            text: text.to_owned(),
        })
    }

    /// The `Host` header.
    fn authority(&self) -> String {
        let host = match &self.host {
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
            host => host.to_string(),
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        HttpUrl::parse(&text).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn parse(yaml: &str) -> Result<SourceIpSpec, String> {
        serde_norway::from_str::<SourceIpSpec>(yaml).map_err(|e| e.to_string())
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn config_forms_and_their_errors() {
        let spec = parse("{stun: '198.19.10.1:3478'}").unwrap();
        assert_eq!(spec.policy, Policy::Forbidden);
        assert_eq!(spec.reflector.to_string(), "stun/udp 198.19.10.1:3478");
        let spec = parse(
            "{stun: '198.19.10.1:3478', stun_transport: tcp, masquerade: expected, to: 198.18.1.4}",
        )
        .unwrap();
        assert_eq!(
            spec.policy,
            Policy::Expected {
                to: Some(ip("198.18.1.4"))
            }
        );
        assert_eq!(spec.reflector.to_string(), "stun/tcp 198.19.10.1:3478");
        let spec = parse("{http: 'http://198.19.10.1:8080/whoami', masquerade: any}").unwrap();
        assert_eq!(spec.policy, Policy::Any);
        match spec.reflector {
            Reflector::Http { url, json_field } => {
                assert_eq!((url.port, url.path.as_str()), (8080, "/whoami"));
                assert_eq!(json_field, "address");
            }
            other => panic!("{other:?}"),
        }
        for (yaml, want) in [
            ("{masquerade: any}", "give a reflector"),
            (
                "{stun: '198.19.10.1:3478', http: 'http://x/'}",
                "either stun or http",
            ),
            (
                "{stun: '198.19.10.1:3478', to: 198.18.1.4}",
                "`to` applies only",
            ),
            (
                "{http: 'http://x/', stun_transport: tcp}",
                "stun_transport applies only",
            ),
            ("{stun: 'x:1', json_field: ip}", "json_field applies only"),
            (
                "{stun: 'x:1', masquerade: sometimes}",
                "unknown variant `sometimes`",
            ),
            ("{http: 'https://x/'}", "only http:// is supported"),
            (
                "{stun: 'x:1', expect: 198.18.2.300}",
                "invalid IP address syntax",
            ),
            ("{stun: 'x:1', colour: red}", "unknown field `colour`"),
        ] {
            let got = parse(yaml).unwrap_err();
            assert!(got.contains(want), "{yaml}: want {want}, got {got}");
        }
    }

    #[test]
    fn urls() {
        let url = HttpUrl::parse("http://[2001:db8::1]:8080/whoami?format=json").unwrap();
        assert_eq!(url.host, Host::Ip(ip("2001:db8::1")));
        assert_eq!(url.port, 8080);
        assert_eq!(url.path, "/whoami?format=json");
        assert_eq!(url.authority(), "[2001:db8::1]:8080");
        let url = HttpUrl::parse("http://whoami.corp.example").unwrap();
        assert_eq!((url.port, url.path.as_str()), (80, "/"));
        assert_eq!(url.authority(), "whoami.corp.example");
        assert_eq!(
            HttpUrl::parse("http://198.19.10.1?x=1").unwrap().path,
            "/?x=1"
        );
        for bad in [
            "http://198.19.10.1:0/",
            "http://198.19.10.1:x/",
            "http://[2001:db8::1/",
            "http://a b/",
            "http://198.19.10.1/a b",
            "ftp://198.19.10.1/",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn whoami_bodies() {
        let ok = |body: &str| {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        };
        assert_eq!(
            parse_http_response(&ok("198.18.2.10\n"), "address"),
            Ok(ip("198.18.2.10"))
        );
        assert_eq!(
            parse_http_response(&ok(r#"{"address":"198.18.1.4","port":1}"#), "address"),
            Ok(ip("198.18.1.4"))
        );
        assert_eq!(
            parse_http_response(&ok(r#"{"ip":"198.18.1.4:5000"}"#), "ip"),
            Ok(ip("198.18.1.4"))
        );
        assert_eq!(
            parse_http_response(&ok("::ffff:198.18.2.10"), "address"),
            Ok(ip("198.18.2.10"))
        );
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n198.1\r\n6\r\n8.2.10\r\n0\r\n\r\n";
        assert_eq!(
            parse_http_response(chunked, "address"),
            Ok(ip("198.18.2.10"))
        );
        for (response, want) in [
            (b"HTTP/1.1 403 Forbidden\r\n\r\n".to_vec(), "status 403"),
            (ok("hello"), "is not an address"),
            (ok(r#"{"origin":"x"}"#), "no field \"address\""),
            (ok(r#"{"address":5}"#), "not a string"),
            (ok("{oops"), "not valid JSON"),
            (b"garbage".to_vec(), "no end of headers"),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n".to_vec(),
                "malformed chunked",
            ),
            (vec![b'x'; 20_000], "over"),
            // Found by the whoami_response fuzz target: the raw line reached /healthz.
            (
                b"\x1b[2J\x0bgarbage\r\n\r\n198.18.2.10".to_vec(),
                r#"not an HTTP status line: "\u{1b}[2J\u{b}garbage""#,
            ),
        ] {
            let got = parse_http_response(&response, "address").unwrap_err();
            assert!(got.contains(want), "want {want}, got {got}");
            assert!(!got.contains(char::is_control), "{got:?}");
        }
    }

    fn judge(policy: Policy, netns: NetnsId, observed: &str) -> Result<Outcome, Failure> {
        let spec = SourceIpSpec {
            reflector: Reflector::Stun {
                server: HostPort::parse("198.19.10.1:3478").unwrap(),
                transport: StunTransport::Udp,
            },
            expect: None,
            policy,
        };
        let report = SourceIpReport {
            expected: ip("198.18.2.10"),
            observed: ip(observed),
            snat_observed: Some(observed != "198.18.2.10"),
        };
        spec.judge(netns, report, "note")
    }

    #[test]
    fn policies() {
        let reason = |r: Result<Outcome, Failure>| r.err().map(|f| f.reason);
        let pod = NetnsId::Pod;
        let masq = judge(Policy::Forbidden, pod, "198.18.1.4").unwrap_err();
        assert_eq!(masq.reason, Reason::Masqueraded);
        assert_eq!(
            masq.detail,
            "expected 198.18.2.10, on-prem saw 198.18.1.4 via stun/udp 198.19.10.1:3478; \
             conntrack: note"
        );
        assert_eq!(reason(judge(Policy::Forbidden, pod, "198.18.2.10")), None);
        let kubenet = Policy::Expected {
            to: Some(ip("198.18.1.4")),
        };
        assert_eq!(reason(judge(kubenet, pod, "198.18.1.4")), None);
        assert_eq!(
            reason(judge(kubenet, pod, "198.18.2.10")),
            Some(Reason::NotMasqueraded)
        );
        assert_eq!(
            reason(judge(kubenet, pod, "198.18.9.9")),
            Some(Reason::UnexpectedSource)
        );
        assert_eq!(
            reason(judge(Policy::Expected { to: None }, pod, "198.18.9.9")),
            None
        );
        assert_eq!(reason(judge(Policy::Any, pod, "198.18.9.9")), None);
        let host = judge(kubenet, NetnsId::Host, "198.18.2.10").unwrap_err();
        assert!(host.detail.contains("netns: [pod]"), "{}", host.detail);
    }

    fn context() -> NetnsContext {
        NetnsContext {
            id: NetnsId::Pod,
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            host: None,
        }
    }

    /// A loopback STUN server that ignores the first request and sends a stray datagram, so
    /// only a retransmission gets the answer.
    #[tokio::test]
    async fn udp_retransmits_and_skips_stray_datagrams() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            let (_, _) = server.recv_from(&mut buf).await.unwrap();
            let (len, peer) = server.recv_from(&mut buf).await.unwrap();
            let id = stun::decode_request(&buf[..len]).unwrap();
            server.send_to(b"not stun at all", peer).await.unwrap();
            let reply = stun::encode_response(&id, peer);
            server.send_to(reply.as_bytes(), peer).await.unwrap();
        });
        let spec = parse(&format!("{{stun: '{addr}'}}")).unwrap();
        let outcome = spec.run(&context(), Duration::from_secs(3)).await.unwrap();
        assert!(
            outcome
                .detail
                .starts_with("expected 127.0.0.1, on-prem saw 127.0.0.1 via stun/udp"),
            "{}",
            outcome.detail
        );
        assert!(
            outcome
                .detail
                .ends_with("conntrack: skipped: no host namespace is configured"),
            "{}",
            outcome.detail
        );
        match outcome.report {
            Report::SourceIp(r) => assert_eq!(r.snat_observed, None),
            other => panic!("{other:?}"),
        }
    }

    /// Requests go out at 0, 500 and 1500 ms: three within 1.7 s.
    #[tokio::test]
    async fn a_silent_server_is_a_timeout_naming_the_requests_sent() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let spec = parse(&format!("{{stun: '{}'}}", server.local_addr().unwrap())).unwrap();
        let failure = spec
            .run(&context(), Duration::from_millis(1700))
            .await
            .unwrap_err();
        assert_eq!(failure.reason, Reason::Timeout);
        assert!(
            failure.detail.ends_with("no answer to 3 requests"),
            "{}",
            failure.detail
        );
    }

    #[tokio::test]
    async fn tcp_and_http_against_the_reflector_logic() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut conn, peer) = listener.accept().await.unwrap();
                let mut head = [0u8; 4];
                conn.peek(&mut head).await.unwrap();
                if &head == b"GET " {
                    let mut request = vec![0u8; 1024];
                    let _ = conn.read(&mut request).await.unwrap();
                    let body = format!("{{\"address\":\"{}\"}}", peer.ip());
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    conn.write_all(response.as_bytes()).await.unwrap();
                } else {
                    let mut request = [0u8; 20];
                    conn.read_exact(&mut request).await.unwrap();
                    let id = stun::decode_request(&request).unwrap();
                    let reply = stun::encode_response(&id, peer);
                    conn.write_all(reply.as_bytes()).await.unwrap();
                }
            }
        });
        for yaml in [
            format!("{{stun: '{addr}', stun_transport: tcp}}"),
            format!("{{http: 'http://{addr}/whoami'}}"),
        ] {
            let spec = parse(&yaml).unwrap();
            let outcome = spec.run(&context(), Duration::from_secs(2)).await;
            let outcome = outcome.unwrap_or_else(|f| panic!("{yaml}: {}", f.detail));
            assert!(
                outcome
                    .detail
                    .starts_with("expected 127.0.0.1, on-prem saw 127.0.0.1"),
                "{}",
                outcome.detail
            );
        }
    }

    #[tokio::test]
    async fn an_explicit_expectation_overrides_the_route_source() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            let (len, peer) = server.recv_from(&mut buf).await.unwrap();
            let id = stun::decode_request(&buf[..len]).unwrap();
            let reply = stun::encode_response(&id, peer);
            server.send_to(reply.as_bytes(), peer).await.unwrap();
        });
        let spec = parse(&format!("{{stun: '{addr}', expect: 127.0.0.2}}")).unwrap();
        let failure = spec
            .run(&context(), Duration::from_secs(2))
            .await
            .unwrap_err();
        assert_eq!(failure.reason, Reason::Masqueraded);
        assert!(
            failure
                .detail
                .starts_with("expected 127.0.0.2, on-prem saw 127.0.0.1"),
            "{}",
            failure.detail
        );
    }
}
