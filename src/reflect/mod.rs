//! `hybridprobe reflect`: the on-prem reflector, which tells a client the source address it saw.
//!
//! It answers STUN Binding requests over UDP and TCP on one port and, when an HTTP address is
//! given, `GET /whoami` and its own `/metrics`. It faces networks we do not control, so: sources
//! outside the allow-list get nothing; each source is rate limited in a fixed-size table, so
//! memory does not grow with the number of sources, and a TCP connection pays like a request, so
//! one source cannot hold every connection slot; a malformed request gets no answer; and an
//! answer is never longer than [`stun::MAX_RESPONSE_LEN`], so the reflector amplifies nothing.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::BuildHasher;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, Query, State as Shared};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use ipnet::IpNet;
use prometheus::{CounterVec, Encoder, Opts, Registry, TextEncoder};
use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::http::server::{self, Limits};
use crate::http::{wants_json, PLAIN_TEXT, PROMETHEUS_TEXT};
use crate::net::accept::accept_loop;
use crate::net::{stun, Transport};

/// The default STUN port (RFC 5389), UDP and TCP, on every address of both families; on a host
/// without IPv6 the same port on every IPv4 address (see [`bind`]).
pub const DEFAULT_LISTEN: &str = "[::]:3478";

/// Sources tracked by the rate limiter at once. A new source takes over its slot, so a flood of
/// sources costs nothing but fresh buckets.
const RATE_SLOTS: usize = 4096;
/// TCP connections served at once; more are closed on accept.
const MAX_TCP_CONNECTIONS: usize = 256;
/// Requests one TCP connection may make before it is closed.
const MAX_REQUESTS_PER_CONNECTION: usize = 16;
/// How long a TCP connection may sit between requests, or take to send one.
const TCP_IDLE: Duration = Duration::from_secs(5);
/// A full Ethernet frame; longer datagrams are cut short and then fail the length check.
const DATAGRAM_BUFFER: usize = 1500;

/// How the reflector runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ReflectConfig {
    /// UDP and TCP address for STUN.
    pub listen: SocketAddr,
    /// Address for `GET /whoami` and `/metrics`; none without it.
    pub http: Option<SocketAddr>,
    /// Source networks that may ask; everyone when empty.
    pub allow: Vec<IpNet>,
    /// Requests per second each source may make, on average.
    pub rate: u32,
    /// Requests a source may make at once after being quiet.
    pub burst: u32,
}

/// Why the reflector could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReflectError {
    #[error("cannot listen on {addr} ({transport}): {source}")]
    Listen {
        addr: SocketAddr,
        transport: &'static str,
        source: std::io::Error,
    },
}

fn listen_error(addr: SocketAddr, listener: Listener) -> impl FnOnce(io::Error) -> ReflectError {
    move |source| ReflectError::Listen {
        addr,
        transport: listener.as_str(),
        source,
    }
}

/// A socket bound to `addr` for `listener`. An IPv6 address takes IPv4 peers too (IPV6_V6ONLY
/// off, whatever `net.ipv6.bindv6only` says), so `[::]` is one listener for both families; on a
/// host without IPv6, `[::]` falls back to `0.0.0.0` on the same port.
fn bind(addr: SocketAddr, listener: Listener) -> Result<Socket, ReflectError> {
    let bound = bind_exactly(addr, listener);
    match bound {
        Err(e) if no_ipv6(addr, &e) => {
            let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, addr.port()));
            tracing::info!(%addr, fallback = %v4, "no IPv6 on this host: listening on IPv4 only");
            bind_exactly(v4, listener).map_err(listen_error(v4, listener))
        }
        bound => bound.map_err(listen_error(addr, listener)),
    }
}

/// `[::]` on a host whose kernel has IPv6 turned off (`ipv6.disable=1`).
fn no_ipv6(addr: SocketAddr, e: &io::Error) -> bool {
    addr.ip() == IpAddr::from(Ipv6Addr::UNSPECIFIED) && e.raw_os_error() == Some(libc::EAFNOSUPPORT)
}

fn bind_exactly(addr: SocketAddr, listener: Listener) -> io::Result<Socket> {
    let (kind, protocol) = match listener {
        Listener::Stun(Transport::Udp) => (Type::DGRAM, Protocol::UDP),
        Listener::Stun(Transport::Tcp) | Listener::Http => (Type::STREAM, Protocol::TCP),
    };
    let socket = Socket::new(Domain::for_address(addr), kind, Some(protocol))?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    if kind == Type::STREAM {
        // As tokio's own bind: a restarted reflector takes its port back at once.
        socket.set_reuse_address(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// [`bind`], listening, as a tokio listener.
fn tcp_listener(addr: SocketAddr, listener: Listener) -> Result<TcpListener, ReflectError> {
    let socket = bind(addr, listener)?;
    // tokio's own backlog.
    socket
        .listen(1024)
        .and_then(|()| TcpListener::from_std(socket.into()))
        .map_err(listen_error(addr, listener))
}

/// `198.19.0.0/16`, or a bare address for one host: an `--allow` value.
pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{text:?} is not a CIDR (e.g. 198.19.0.0/16) or an IP address"))
}

/// Which listener a request came to: the `transport` label (`udp`, `tcp` or `http`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listener {
    Stun(Transport),
    Http,
}

impl Listener {
    const ALL: [Listener; 3] = [
        Listener::Stun(Transport::Udp),
        Listener::Stun(Transport::Tcp),
        Listener::Http,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Listener::Stun(transport) => transport.as_str(),
            Listener::Http => "http",
        }
    }
}

/// What became of one request: the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Answered,
    Malformed,
    /// The source is outside the allow-list.
    Rejected,
    RateLimited,
}

impl Outcome {
    const ALL: [Outcome; 4] = [
        Outcome::Answered,
        Outcome::Malformed,
        Outcome::Rejected,
        Outcome::RateLimited,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Malformed => "malformed",
            Outcome::Rejected => "rejected",
            Outcome::RateLimited => "rate_limited",
        }
    }
}

/// What every listener shares: the policy, the rate table and the counters.
struct Reflector {
    allow: Vec<IpNet>,
    limiter: Mutex<RateLimiter>,
    registry: Registry,
    requests: CounterVec,
}

impl Reflector {
    fn new(config: &ReflectConfig) -> Reflector {
        let registry = Registry::new();
        let requests = CounterVec::new(
            Opts::new(
                "hybridprobe_reflect_requests_total",
                "Requests the reflector received, by transport and what became of them.",
            ),
            &["transport", "outcome"],
        )
        .expect("valid counter");
        registry
            .register(Box::new(requests.clone()))
            .expect("unique counter");
        for listener in Listener::ALL {
            for outcome in Outcome::ALL {
                requests.with_label_values(&[listener.as_str(), outcome.as_str()]);
            }
        }
        Reflector {
            allow: config.allow.clone(),
            limiter: Mutex::new(RateLimiter::new(config.rate, config.burst)),
            registry,
            requests,
        }
    }

    fn allowed(&self, ip: IpAddr) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|net| net.contains(&ip))
    }

    fn within_rate(&self, ip: IpAddr) -> bool {
        // A panic elsewhere cannot leave the table inconsistent (each update is one slot write).
        let mut limiter = self.limiter.lock().unwrap_or_else(|p| p.into_inner());
        limiter.allow(ip, Instant::now())
    }

    /// The allow-list, then the rate limit: `Err` says why the request gets no answer.
    fn admit(&self, ip: IpAddr) -> Result<(), Outcome> {
        if !self.allowed(ip) {
            return Err(Outcome::Rejected);
        }
        if !self.within_rate(ip) {
            return Err(Outcome::RateLimited);
        }
        Ok(())
    }

    fn count(&self, listener: Listener, outcome: Outcome) {
        self.requests
            .with_label_values(&[listener.as_str(), outcome.as_str()])
            .inc();
    }

    /// Answers one STUN message from `from`, or says why not.
    fn answer(&self, message: &[u8], from: SocketAddr) -> Result<stun::Response, Outcome> {
        self.admit(from.ip())?;
        let id = stun::decode_request(message).map_err(|_| Outcome::Malformed)?;
        Ok(stun::encode_response(&id, from))
    }
}

/// Token buckets for recently seen sources, in a fixed table indexed by a keyed hash of the
/// address: memory is fixed, and a source cannot choose whose slot it takes.
struct RateLimiter {
    slots: Vec<Option<Bucket>>,
    hasher: RandomState,
    rate: f64,
    burst: f64,
}

#[derive(Clone, Copy)]
struct Bucket {
    ip: IpAddr,
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    fn new(rate: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            slots: vec![None; RATE_SLOTS],
            hasher: RandomState::new(),
            rate: f64::from(rate.max(1)),
            burst: f64::from(burst.max(1)),
        }
    }

    /// Takes a token from `ip`'s bucket, if it has one.
    fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let index = (self.hasher.hash_one(ip) % RATE_SLOTS as u64) as usize;
        let slot = &mut self.slots[index];
        let bucket = match slot {
            Some(bucket) if bucket.ip == ip => {
                let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * self.rate;
                bucket.tokens = (bucket.tokens + refill).min(self.burst);
                bucket.at = now;
                bucket
            }
            _ => slot.insert(Bucket {
                ip,
                tokens: self.burst,
                at: now,
            }),
        };
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Runs the reflector until `shutdown` completes.
pub async fn run(
    config: ReflectConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ReflectError> {
    let udp = UdpSocket::from_std(bind(config.listen, Listener::Stun(Transport::Udp))?.into())
        .map_err(listen_error(config.listen, Listener::Stun(Transport::Udp)))?;
    // With port 0 the kernel picks UDP's port; TCP then takes the same one.
    let stun_addr = udp
        .local_addr()
        .map_err(listen_error(config.listen, Listener::Stun(Transport::Udp)))?;
    let tcp = tcp_listener(stun_addr, Listener::Stun(Transport::Tcp))?;
    let http = match config.http {
        Some(addr) => Some(tcp_listener(addr, Listener::Http)?),
        None => None,
    };
    let reflector = Arc::new(Reflector::new(&config));
    tracing::info!(
        stun = %stun_addr,
        http = ?http.as_ref().and_then(|l| l.local_addr().ok()),
        allow = ?config.allow,
        rate = config.rate,
        burst = config.burst,
        "reflector started"
    );
    let http_server = async {
        match http {
            Some(listener) => {
                let app = router(reflector.clone());
                server::serve(listener, app, Limits::default(), std::future::pending()).await
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = serve_udp(udp, reflector.clone()) => Ok(()),
        () = serve_tcp(tcp, reflector.clone()) => Ok(()),
        () = http_server => Ok(()),
        () = shutdown => {
            tracing::info!("reflector stopping");
            Ok(())
        }
    }
}

async fn serve_udp(socket: UdpSocket, reflector: Arc<Reflector>) {
    let mut buf = [0u8; DATAGRAM_BUFFER];
    loop {
        let (len, peer) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(e) => {
                // ICMP errors for earlier answers can surface here; they concern one peer only.
                tracing::debug!(error = %e, "udp receive");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let from = canonical(peer);
        match reflector.answer(&buf[..len], from) {
            Ok(response) => {
                if let Err(e) = socket.send_to(response.as_bytes(), peer).await {
                    tracing::debug!(%peer, error = %e, "udp send");
                }
                reflector.count(Listener::Stun(Transport::Udp), Outcome::Answered);
            }
            Err(outcome) => reflector.count(Listener::Stun(Transport::Udp), outcome),
        }
    }
}

async fn serve_tcp(listener: TcpListener, reflector: Arc<Reflector>) {
    let permits = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    let on_conn = |stream: TcpStream, peer: SocketAddr| {
        let from = canonical(peer);
        // A connection takes a token, as a request does: one source cannot hold every slot
        // with connections that never ask.
        if let Err(outcome) = reflector.admit(from.ip()) {
            reflector.count(Listener::Stun(Transport::Tcp), outcome);
            return None;
        }
        let reflector = reflector.clone();
        Some(async move { serve_connection(stream, from, &reflector).await })
    };
    let on_full = |_peer| reflector.count(Listener::Stun(Transport::Tcp), Outcome::RateLimited);
    accept_loop(&listener, &permits, "tcp", on_conn, on_full).await;
}

/// Answers framed requests on one connection until it closes, idles, misbehaves or has asked
/// its share.
async fn serve_connection(mut stream: TcpStream, from: SocketAddr, reflector: &Reflector) {
    let mut buf = [0u8; stun::MAX_MESSAGE_LEN];
    for _ in 0..MAX_REQUESTS_PER_CONNECTION {
        let read = async {
            stream.read_exact(&mut buf[..stun::HEADER_LEN]).await?;
            let Ok(body) = stun::body_len(&buf[..stun::HEADER_LEN]) else {
                return Ok(None);
            };
            let end = stun::HEADER_LEN + body;
            stream.read_exact(&mut buf[stun::HEADER_LEN..end]).await?;
            Ok::<_, std::io::Error>(Some(end))
        };
        let end = match tokio::time::timeout(TCP_IDLE, read).await {
            Ok(Ok(Some(end))) => end,
            Ok(Ok(None)) => {
                // A bad header leaves the stream unframed: nothing after it can be trusted.
                reflector.count(Listener::Stun(Transport::Tcp), Outcome::Malformed);
                return;
            }
            Ok(Err(_)) | Err(_) => return,
        };
        match reflector.answer(&buf[..end], from) {
            Ok(response) => {
                let write = stream.write_all(response.as_bytes());
                if !matches!(tokio::time::timeout(TCP_IDLE, write).await, Ok(Ok(()))) {
                    return;
                }
                reflector.count(Listener::Stun(Transport::Tcp), Outcome::Answered);
            }
            Err(outcome) => {
                reflector.count(Listener::Stun(Transport::Tcp), outcome);
                return;
            }
        }
    }
}

/// A dual-stack socket reports IPv4 peers as `::ffff:a.b.c.d`; the peer's address is the IPv4
/// one, for the allow-list and for the answer.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

// === HTTP ===

fn router(reflector: Arc<Reflector>) -> Router {
    Router::new()
        .route("/whoami", get(whoami))
        .route("/metrics", get(metrics))
        .with_state(reflector)
}

#[derive(Deserialize)]
struct WhoamiQuery {
    format: Option<String>,
}

/// The JSON body of `/whoami`.
#[derive(Serialize)]
struct Seen {
    address: IpAddr,
    port: u16,
}

async fn whoami(
    Shared(reflector): Shared<Arc<Reflector>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<WhoamiQuery>,
    headers: HeaderMap,
) -> Response {
    let from = canonical(peer);
    if let Err(outcome) = reflector.admit(from.ip()) {
        reflector.count(Listener::Http, outcome);
        let code = match outcome {
            Outcome::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::FORBIDDEN,
        };
        return (code, [(header::CONTENT_TYPE, PLAIN_TEXT)], "").into_response();
    }
    reflector.count(Listener::Http, Outcome::Answered);
    if wants_json(query.format.as_deref(), &headers) {
        axum::Json(Seen {
            address: from.ip(),
            port: from.port(),
        })
        .into_response()
    } else {
        (
            [(header::CONTENT_TYPE, PLAIN_TEXT)],
            format!("{}\n", from.ip()),
        )
            .into_response()
    }
}

async fn metrics(Shared(reflector): Shared<Arc<Reflector>>) -> Response {
    let mut out = Vec::with_capacity(4096);
    TextEncoder::new()
        .encode(&reflector.registry.gather(), &mut out)
        .expect("text encoding into a Vec cannot fail");
    ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], out).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(allow: &[&str], rate: u32, burst: u32) -> ReflectConfig {
        ReflectConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            http: None,
            allow: allow.iter().map(|a| parse_cidr(a).unwrap()).collect(),
            rate,
            burst,
        }
    }

    fn from(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn allow_list_parsing() {
        assert_eq!(
            parse_cidr("198.19.10.7/16").unwrap().to_string(),
            "198.19.0.0/16"
        );
        assert_eq!(
            parse_cidr("198.18.2.10").unwrap().to_string(),
            "198.18.2.10/32"
        );
        assert!(parse_cidr("198.19.0.0/33")
            .unwrap_err()
            .contains("is not a CIDR"));
    }

    #[test]
    fn answers_only_allowed_sources_and_only_binding_requests() {
        let reflector = Reflector::new(&config(&["198.18.2.0/24"], 100, 100));
        let id = [9u8; 12];
        let request = stun::encode_request(&id);
        let pod = from("198.18.2.10:40000");
        let response = reflector.answer(&request, pod).unwrap();
        assert_eq!(stun::decode_response(response.as_bytes(), &id), Ok(pod));
        assert_eq!(
            reflector.answer(&request, from("198.18.1.4:40000")),
            Err(Outcome::Rejected)
        );
        assert_eq!(
            reflector.answer(response.as_bytes(), pod),
            Err(Outcome::Malformed)
        );
        assert_eq!(reflector.answer(&[0u8; 3], pod), Err(Outcome::Malformed));
    }

    #[test]
    fn dual_stack_peers_are_answered_with_their_ipv4_address() {
        assert_eq!(
            canonical(from("[::ffff:198.18.2.10]:5")),
            from("198.18.2.10:5")
        );
        assert_eq!(canonical(from("[2001:db8::1]:5")), from("[2001:db8::1]:5"));
    }

    /// One `[::]` socket: an IPv4 client is allowed and answered as its IPv4 address, never as
    /// `::ffff:a.b.c.d`, and an IPv6 client as its own.
    #[tokio::test]
    async fn one_ipv6_socket_serves_both_families() {
        let udp = Listener::Stun(Transport::Udp);
        let socket = UdpSocket::from_std(bind(from("[::]:0"), udp).unwrap().into()).unwrap();
        let port = socket.local_addr().unwrap().port();
        let reflector = Reflector::new(&config(&["127.0.0.0/8", "::1"], 100, 100));
        tokio::spawn(serve_udp(socket, Arc::new(reflector)));
        for client in ["127.0.0.1:0", "[::1]:0"] {
            let client = UdpSocket::bind(from(client)).await.unwrap();
            let local = client.local_addr().unwrap();
            client.connect((local.ip(), port)).await.unwrap();
            let id = [3u8; 12];
            client.send(&stun::encode_request(&id)).await.unwrap();
            let mut answer = [0u8; 64];
            let len = tokio::time::timeout(Duration::from_secs(2), client.recv(&mut answer))
                .await
                .expect("an answer in time")
                .unwrap();
            assert_eq!(stun::decode_response(&answer[..len], &id), Ok(local));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn each_source_gets_its_burst_then_its_rate() {
        let mut limiter = RateLimiter::new(2, 3);
        let (a, b) = (
            "198.18.2.10".parse().unwrap(),
            "198.18.2.11".parse().unwrap(),
        );
        let now = Instant::now();
        let granted = (0..10).filter(|_| limiter.allow(a, now)).count();
        assert_eq!(granted, 3);
        assert!(limiter.allow(b, now), "another source has its own bucket");
        let later = now + Duration::from_millis(1000);
        let granted = (0..10).filter(|_| limiter.allow(a, later)).count();
        assert_eq!(granted, 2, "two tokens per second refill");
    }

    #[test]
    fn the_rate_table_never_grows() {
        let mut limiter = RateLimiter::new(1, 1);
        let now = Instant::now();
        for i in 0..20_000u32 {
            limiter.allow(IpAddr::from(i.to_be_bytes()), now);
        }
        assert_eq!(limiter.slots.len(), RATE_SLOTS);
    }

    /// Connections that never ask used to cost nothing, so one source could take every TCP slot
    /// and leave other sources unanswered.
    #[tokio::test]
    async fn one_source_cannot_hold_every_tcp_slot() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reflector = Arc::new(Reflector::new(&config(&[], 1, 20)));
        tokio::spawn(serve_tcp(listener, reflector.clone()));
        let mut idle = Vec::new();
        for _ in 0..MAX_TCP_CONNECTIONS + 10 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        let other = tokio::net::TcpSocket::new_v4().unwrap();
        other.bind(from("127.0.0.2:0")).unwrap();
        let mut stream = other.connect(addr).await.unwrap();
        let id = [7u8; 12];
        stream.write_all(&stun::encode_request(&id)).await.unwrap();
        let mut answer = [0u8; 32];
        tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut answer))
            .await
            .expect("an answer in time")
            .expect("an answer, not a closed connection");
        let seen = stun::decode_response(&answer, &id).unwrap();
        assert_eq!(seen.ip(), from("127.0.0.2:0").ip());
        let limited = reflector
            .requests
            .with_label_values(&["tcp", "rate_limited"])
            .get();
        assert_eq!(limited, (MAX_TCP_CONNECTIONS + 10 - 20) as f64);
    }

    #[test]
    fn every_label_combination_is_declared_up_front() {
        let reflector = Reflector::new(&config(&[], 1, 1));
        let families = reflector.registry.gather();
        assert_eq!(families[0].get_metric().len(), 12);
    }
}
