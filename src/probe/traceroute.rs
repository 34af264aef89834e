//! The `traceroute` probe: the routers between this namespace and a target, from TTL-limited
//! (hop-limited, in IPv6) ICMP echo requests, UDP datagrams or TCP SYNs (firewalls let different
//! ones through).
//!
//! Probes go out in small waves of consecutive TTLs, so a short path costs one wave and the
//! destination gets only a few probes. A router whose TTL runs out answers "time exceeded"
//! quoting our packet; the destination answers with an echo reply, a port unreachable (UDP), or
//! a SYN-ACK or RST (TCP). ICMPv6 says the same with other type and code numbers.

use std::collections::BTreeMap;
use std::fmt::{self, Write};
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use ipnet::IpNet;
use prometheus::{CounterVec, GaugeVec};
use serde::Deserialize;
use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::time::Instant;

use super::raw::{self, port_unreachable, IcmpError, Message, RawIcmp, PROTO_TCP, PROTO_UDP};
use super::resolver::{Family, Resolver};
use super::route::some_ip_or_cidr;
use super::series::{flag, PerCheck};
use super::target::Host;
use super::{
    conclude, CheckLabels, Failure, Families, Measurements, Outcome, Probe, Reason, Target,
};
use crate::netns::NetnsContext;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Icmp,
    Udp,
    Tcp,
}

impl Protocol {
    fn as_str(self) -> &'static str {
        match self {
            Protocol::Icmp => "icmp",
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawTracerouteSpec")]
pub struct TracerouteSpec {
    /// An IP address, or a host name resolved in the probe's namespace every round (to
    /// `family`).
    pub target: Host,
    pub protocol: Protocol,
    /// TCP: the port SYNs go to. UDP: the first destination port, one more per TTL.
    pub port: u16,
    /// An address or prefix one of the hops must be in (the VPN gateway's inner address).
    pub expect_hop: Option<IpNet>,
    pub max_hops: u8,
    /// Who resolves a host name: `system` (the namespace's resolv.conf) or a list of servers.
    pub resolver: Resolver,
    /// Which of the target's addresses is traced: `any` (IPv4 first), `ipv4` or `ipv6`.
    pub family: Family,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTracerouteSpec {
    target: Host,
    #[serde(default = "default_protocol")]
    protocol: Protocol,
    port: Option<u16>,
    #[serde(default, deserialize_with = "some_ip_or_cidr")]
    expect_hop: Option<IpNet>,
    #[serde(default = "default_max_hops")]
    max_hops: u8,
    #[serde(default)]
    resolver: Resolver,
    #[serde(default)]
    family: Family,
}

fn default_protocol() -> Protocol {
    Protocol::Icmp
}

fn default_max_hops() -> u8 {
    30
}

/// Where classic traceroute starts its UDP destination ports.
pub const UDP_BASE_PORT: u16 = 33434;
/// TTLs per wave: hybrid paths are a handful of hops, so one wave usually reaches the target.
const WAVE: u8 = 4;
/// No wave waits longer for silent hops than this, however large the budget.
const MAX_WAVE_WAIT: Duration = Duration::from_secs(1);

impl TryFrom<RawTracerouteSpec> for TracerouteSpec {
    type Error = String;

    fn try_from(raw: RawTracerouteSpec) -> Result<Self, String> {
        if !(1..=64).contains(&raw.max_hops) {
            return Err("max_hops must be between 1 and 64".into());
        }
        let port = match (raw.protocol, raw.port) {
            (Protocol::Tcp, None) => return Err("protocol tcp needs a port".into()),
            (Protocol::Icmp, Some(_)) => return Err("protocol icmp takes no port".into()),
            (_, Some(0)) => return Err("port must not be 0".into()),
            (Protocol::Udp, Some(port)) if port > u16::MAX - u16::from(raw.max_hops) => {
                return Err(format!(
                    "port {port} leaves no room for one port per hop up to max_hops"
                ))
            }
            (_, Some(port)) => port,
            (Protocol::Udp, None) => UDP_BASE_PORT,
            (Protocol::Icmp, None) => 0,
        };
        Ok(TracerouteSpec {
            target: raw.target,
            protocol: raw.protocol,
            port,
            expect_hop: raw.expect_hop,
            max_hops: raw.max_hops,
            resolver: raw.resolver,
            family: raw.family,
        })
    }
}

/// What answered at one TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    /// A router on the way (time exceeded).
    Transit(IpAddr),
    /// The target itself.
    Reached(IpAddr),
    /// A router or the target refused to carry the probe (unreachable, with its ICMP code, or
    /// ICMPv6 code for an IPv6 address).
    Unreachable(IpAddr, u8),
}

impl Hop {
    fn addr(self) -> IpAddr {
        match self {
            Hop::Transit(a) | Hop::Reached(a) | Hop::Unreachable(a, _) => a,
        }
    }

    fn ends_path(self) -> bool {
        !matches!(self, Hop::Transit(_))
    }
}

/// One round's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracerouteReport {
    /// What answered at TTL 1, 2, ...; `None` for silence. Ends where the path ended, or at the
    /// last hop that answered.
    pub hops: Vec<Option<Hop>>,
    /// `None` without `expect_hop`.
    pub expected_hop_seen: Option<bool>,
}

impl TracerouteReport {
    pub fn reached(&self) -> bool {
        matches!(self.hops.last(), Some(Some(Hop::Reached(_))))
    }

    /// Hops to the target, or to the last hop that answered when it was not reached.
    pub fn hop_count(&self) -> usize {
        self.hops.len()
    }

    /// True when `self` took another path than `before`: some hop answered from a different
    /// address, or the target was reached at another distance. A hop silent in either round is
    /// loss or rate limiting, not a change, and neither is an outage past the last answering hop.
    pub fn path_changed(&self, before: &TracerouteReport) -> bool {
        let differs = self
            .hops
            .iter()
            .zip(&before.hops)
            .any(|(now, then)| match (now, then) {
                (Some(now), Some(then)) => now.addr() != then.addr(),
                _ => false,
            });
        differs || (self.reached() && before.reached() && self.hops.len() != before.hops.len())
    }
}

impl fmt::Display for TracerouteReport {
    /// `1 198.18.2.1, 2 *, 3 198.19.10.1`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, hop) in self.hops.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match hop {
                Some(Hop::Unreachable(addr, code)) => {
                    write!(f, "{} {addr} !{}", i + 1, unreachable_mark(*addr, *code))?
                }
                Some(hop) => write!(f, "{} {}", i + 1, hop.addr())?,
                None => write!(f, "{} *", i + 1)?,
            }
        }
        Ok(())
    }
}

/// traceroute's marks: !N network, !H host, !P protocol, !F fragmentation needed, !X
/// administratively prohibited, !S beyond the source's scope, each from its family's codes.
fn unreachable_mark(from: IpAddr, code: u8) -> String {
    let mark = match (from, code) {
        (_, 0) => "N",
        (IpAddr::V4(_), 1) | (IpAddr::V6(_), 3) => "H",
        (IpAddr::V4(_), 2) => "P",
        (IpAddr::V4(_), 4) => "F",
        (IpAddr::V4(_), 9 | 10 | 13) | (IpAddr::V6(_), 1 | 5 | 6) => "X",
        (IpAddr::V6(_), 2) => "S",
        (_, other) => return format!("<{other}>"),
    };
    mark.into()
}

/// What one ICMP message means for this round's probes: the TTL it answers and the hop.
struct Matcher {
    protocol: Protocol,
    target: IpAddr,
    ident: u16,
    /// UDP: our socket's port (destination ports encode the TTL). TCP: port per TTL.
    udp_port: u16,
    tcp_ports: BTreeMap<u16, u8>,
    dst_port: u16,
}

impl Matcher {
    fn classify(&self, message: &Message) -> Option<(u8, Hop)> {
        match *message {
            Message::EchoReply {
                from, ident, seq, ..
            } if self.protocol == Protocol::Icmp && from == self.target && ident == self.ident => {
                Some((u8::try_from(seq).ok()?, Hop::Reached(from)))
            }
            Message::Error {
                from,
                error,
                quoted,
            } if quoted.dst == self.target => {
                let ttl = match self.protocol {
                    Protocol::Icmp => {
                        let (ident, seq) = quoted.echo()?;
                        (ident == self.ident).then_some(u8::try_from(seq).ok()?)?
                    }
                    Protocol::Udp if quoted.protocol == PROTO_UDP => {
                        let (src, dst) = quoted.ports()?;
                        let offset = dst.checked_sub(self.dst_port)?;
                        (src == self.udp_port).then_some(u8::try_from(offset + 1).ok()?)?
                    }
                    Protocol::Tcp if quoted.protocol == PROTO_TCP => {
                        let (src, dst) = quoted.ports()?;
                        (dst == self.dst_port).then_some(*self.tcp_ports.get(&src)?)?
                    }
                    Protocol::Udp | Protocol::Tcp => return None,
                };
                let hop = match error {
                    IcmpError::TimeExceeded => Hop::Transit(from),
                    // Port unreachable from the target is how a UDP probe arrives.
                    IcmpError::Unreachable { code }
                        if from == self.target && port_unreachable(from, code) =>
                    {
                        Hop::Reached(from)
                    }
                    IcmpError::Unreachable { code } => Hop::Unreachable(from, code),
                    IcmpError::TooBig { .. } if from.is_ipv4() => Hop::Unreachable(from, 4),
                    // ICMPv6 has no unreachable code for it, and no IPv6 link is narrower than
                    // our probes: a Packet Too Big for one is bogus.
                    IcmpError::TooBig { .. } => return None,
                };
                Some((ttl, hop))
            }
            _ => None,
        }
    }
}

type Connect = Pin<Box<dyn Future<Output = (u8, io::Result<TcpStream>)> + Send>>;

/// The `traceroute` kind's own series, and each check's last hop list to count path changes.
pub struct TracerouteSeries {
    hops: GaugeVec,
    expected_hop_seen: GaugeVec,
    path_changes: CounterVec,
    last: PerCheck<TracerouteReport>,
}

impl Probe for TracerouteSpec {
    type Measurements = TracerouteReport;
    type Series = TracerouteSeries;

    fn register(families: &mut dyn Families) -> TracerouteSeries {
        let labels = &CheckLabels::names(&[]);
        TracerouteSeries {
            hops: families.gauges(
                "hybridprobe_traceroute_hops",
                "Hops to the target, or to the last hop that answered when it was not reached.",
                labels,
            ),
            expected_hop_seen: families.gauges(
                "hybridprobe_traceroute_expected_hop_seen",
                "1 when a hop of the last traceroute was in expect_hop, 0 when none was.",
                labels,
            ),
            path_changes: families.counters(
                "hybridprobe_traceroute_path_changes_total",
                "Rounds whose hop list differed from the round before (silent hops aside).",
                labels,
            ),
            last: PerCheck::default(),
        }
    }

    fn describe(&self) -> String {
        format!("traceroute to {}{}", self.target, self.family.note())
    }

    async fn run(&self, ctx: &NetnsContext, budget: Duration) -> Result<Outcome, Failure> {
        self.round(ctx, budget).await
    }

    /// The counter of path changes exists from the start, so `increase()` sees the first one.
    fn declare(series: &TracerouteSeries, check: CheckLabels<'_>) {
        series.path_changes.with_label_values(&check.values());
    }

    fn observe(series: &TracerouteSeries, check: CheckLabels<'_>, measured: &TracerouteReport) {
        let labels = check.values();
        series
            .hops
            .with_label_values(&labels)
            .set(measured.hop_count() as f64);
        if let Some(seen) = measured.expected_hop_seen {
            series
                .expected_hop_seen
                .with_label_values(&labels)
                .set(flag(seen));
        }
        let before = series.last.lock().insert(check.key(), measured.clone());
        if before.is_some_and(|before| measured.path_changed(&before)) {
            series.path_changes.with_label_values(&labels).inc();
        }
    }

    fn forget(series: &TracerouteSeries, check: CheckLabels<'_>) {
        series.last.forget(check);
    }

    /// A trace that reached the target crossed the path, whatever its hops say.
    fn family(&self) -> Option<(&Host, Family)> {
        Some((&self.target, self.family))
    }

    fn targets(&self, failure: Option<&Failure>) -> Vec<Target> {
        let reached = |m: &Measurements| match m {
            Measurements::Traceroute(report) => Some(report.reached()),
            _ => None,
        };
        vec![Target::judged(
            &self.target,
            self.target.to_string(),
            failure,
            reached,
        )]
    }
}

impl TracerouteSpec {
    async fn round(&self, ctx: &NetnsContext, budget: Duration) -> Result<Outcome, Failure> {
        let deadline = Instant::now() + budget;
        let target = raw::path_target(&self.target, ctx, &self.resolver, self.family).await?;
        let icmp = RawIcmp::open(target, "traceroute")?;
        let sender = match self.protocol {
            Protocol::Icmp => Sender::Icmp(&icmp),
            Protocol::Udp => Sender::Udp(udp_socket(target).await?),
            Protocol::Tcp => Sender::Tcp,
        };
        let mut matcher = Matcher {
            protocol: self.protocol,
            target,
            ident: raw::next_ident(),
            udp_port: match &sender {
                Sender::Udp(socket) => socket.local_addr().map(|a| a.port()).unwrap_or(0),
                Sender::Icmp(_) | Sender::Tcp => 0,
            },
            tcp_ports: BTreeMap::new(),
            dst_port: self.port,
        };
        let mut hops: BTreeMap<u8, Hop> = BTreeMap::new();
        let mut connects: FuturesUnordered<Connect> = FuturesUnordered::new();
        let mut sent = 0u8;
        while sent < self.max_hops && path_end(&hops).is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let first = sent + 1;
            let last = sent.saturating_add(WAVE).min(self.max_hops);
            let waves_left = u32::from((self.max_hops - sent).div_ceil(WAVE));
            let until = Instant::now() + (left / waves_left).min(MAX_WAVE_WAIT);
            for ttl in first..=last {
                if let Some(connect) = sender.send(&mut matcher, ttl).await? {
                    connects.push(connect);
                }
            }
            sent = last;
            let wave_done = |hops: &BTreeMap<u8, Hop>| match path_end(hops) {
                Some(end) => (1..end).all(|ttl| hops.contains_key(&ttl)),
                None => (first..=last).all(|ttl| hops.contains_key(&ttl)),
            };
            while !wave_done(&hops) {
                let answer = tokio::select! {
                    message = icmp.recv() => {
                        let message = message.map_err(|e| Failure::new(
                            Reason::of_io(&e),
                            format!("receive on the raw ICMP socket: {e}"),
                        ))?;
                        matcher.classify(&message)
                    }
                    Some((ttl, connected)) = connects.next(), if !connects.is_empty() => {
                        match connected {
                            // A SYN-ACK or a RST: either way the target itself answered.
                            Ok(_) => Some((ttl, Hop::Reached(target))),
                            Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
                                Some((ttl, Hop::Reached(target)))
                            }
                            Err(_) => None,
                        }
                    }
                    _ = tokio::time::sleep_until(until) => break,
                };
                if let Some((ttl, hop)) = answer {
                    hops.entry(ttl).or_insert(hop);
                }
            }
        }
        drop(connects);
        self.judge(target, &hops, sent)
    }

    fn judge(
        &self,
        target: IpAddr,
        hops: &BTreeMap<u8, Hop>,
        sent: u8,
    ) -> Result<Outcome, Failure> {
        let last = path_end(hops)
            .or_else(|| hops.keys().next_back().copied())
            .unwrap_or(0);
        let path: Vec<Option<Hop>> = (1..=last).map(|ttl| hops.get(&ttl).copied()).collect();
        let report = TracerouteReport {
            expected_hop_seen: self.expect_hop.map(|expected| {
                path.iter()
                    .flatten()
                    .any(|hop| expected.contains(&hop.addr()))
            }),
            hops: path,
        };
        let protocol = self.protocol.as_str();
        let mut detail = String::new();
        let failure = match hops.get(&last) {
            Some(Hop::Reached(_)) => {
                let _ = write!(
                    detail,
                    "{target} reached in {last} hops ({protocol}): {report}"
                );
                None
            }
            Some(Hop::Unreachable(from, code)) => {
                let _ = write!(
                    detail,
                    "{target} unreachable: {from} answered unreachable (code {code}) at hop \
                     {last} ({protocol}): {report}"
                );
                Some(Reason::Unreachable)
            }
            _ => {
                let _ = write!(
                    detail,
                    "{target} not reached within {sent} hops ({protocol})"
                );
                if !report.hops.is_empty() {
                    let _ = write!(detail, ": {report}, then no answer");
                }
                Some(Reason::Timeout)
            }
        };
        let failure = failure.or_else(|| {
            let expected = self.expect_hop?;
            (report.expected_hop_seen == Some(false)).then(|| {
                let _ = write!(detail, " (expected a hop in {expected})");
                Reason::Mismatch
            })
        });
        conclude(failure, detail, Measurements::Traceroute(report))
    }
}

/// The TTL at which the path ended (the target, or a router refusing it), if any did.
fn path_end(hops: &BTreeMap<u8, Hop>) -> Option<u8> {
    hops.iter()
        .find(|(_, hop)| hop.ends_path())
        .map(|(ttl, _)| *ttl)
}

/// Where a round's probes leave from.
enum Sender<'a> {
    /// The raw socket that also listens.
    Icmp(&'a RawIcmp),
    Udp(UdpSocket),
    /// A socket per TTL, made as each probe is sent.
    Tcp,
}

impl Sender<'_> {
    /// Sends the probe for `ttl`; a TCP probe is a connection attempt, returned to be awaited.
    async fn send(&self, matcher: &mut Matcher, ttl: u8) -> Result<Option<Connect>, Failure> {
        let target = matcher.target;
        let failed = |e: io::Error| {
            Failure::new(
                Reason::of_io(&e),
                format!("send a TTL {ttl} probe to {target}: {e}"),
            )
        };
        match self {
            Sender::Icmp(icmp) => {
                icmp.set_ttl(ttl).map_err(failed)?;
                icmp.send_echo(target, matcher.ident, u16::from(ttl), 64)
                    .await
                    .map_err(failed)?;
                Ok(None)
            }
            Sender::Udp(udp) => {
                raw::set_hop_limit(udp, target.is_ipv6(), ttl).map_err(failed)?;
                let port = matcher.dst_port + u16::from(ttl) - 1;
                udp.send_to(&[0u8; 32], SocketAddr::new(target, port))
                    .await
                    .map_err(failed)?;
                Ok(None)
            }
            Sender::Tcp => {
                let (socket, port) = tcp_socket(target, ttl).map_err(failed)?;
                matcher.tcp_ports.insert(port, ttl);
                let addr = SocketAddr::new(target, matcher.dst_port);
                Ok(Some(Box::pin(
                    async move { (ttl, socket.connect(addr).await) },
                )))
            }
        }
    }
}

/// The unspecified address of `target`'s family, to bind to.
fn unspecified(target: IpAddr) -> IpAddr {
    match target {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    }
}

async fn udp_socket(target: IpAddr) -> Result<UdpSocket, Failure> {
    UdpSocket::bind(SocketAddr::new(unspecified(target), 0))
        .await
        .map_err(|e| Failure::new(Reason::of_io(&e), format!("open a UDP socket: {e}")))
}

/// A TCP socket toward `target` whose SYNs carry `ttl`, bound so its port is known before the
/// SYN leaves.
fn tcp_socket(target: IpAddr, ttl: u8) -> io::Result<(TcpSocket, u16)> {
    let bind = SocketAddr::new(unspecified(target), 0);
    let socket = Socket::new(
        Domain::for_address(bind),
        Type::STREAM,
        Some(SockProtocol::TCP),
    )?;
    raw::set_hop_limit(&socket, target.is_ipv6(), ttl)?;
    socket.set_nonblocking(true)?;
    socket.bind(&bind.into())?;
    let port = socket
        .local_addr()?
        .as_socket()
        .map(|a| a.port())
        .unwrap_or(0);
    Ok((TcpSocket::from_std_stream(socket.into()), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::raw::tests::{icmp_error, ip, ME, THEM};
    use crate::probe::raw::{parse, PROTO_ICMP};

    const NODE: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
    const VNET: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);

    fn spec(yaml: &str) -> Result<TracerouteSpec, String> {
        serde_norway::from_str(yaml).map_err(|e| e.to_string())
    }

    fn matcher(protocol: Protocol, dst_port: u16) -> Matcher {
        Matcher {
            protocol,
            target: THEM.into(),
            ident: 77,
            udp_port: 40000,
            tcp_ports: [(50001, 3)].into_iter().collect(),
            dst_port,
        }
    }

    fn header(a: u16, b: u16) -> Vec<u8> {
        let mut h = a.to_be_bytes().to_vec();
        h.extend_from_slice(&b.to_be_bytes());
        h.extend_from_slice(&[0, 8, 0, 0]);
        h
    }

    #[test]
    fn spec_defaults_and_validation() {
        let icmp = spec("{target: 198.19.10.1}").unwrap();
        assert_eq!(
            (icmp.protocol, icmp.max_hops, icmp.port),
            (Protocol::Icmp, 30, 0)
        );
        let udp =
            spec("{target: 198.19.10.1, protocol: udp, expect_hop: 198.18.254.0/30}").unwrap();
        assert_eq!(udp.port, UDP_BASE_PORT);
        assert!(udp
            .expect_hop
            .unwrap()
            .contains(&"198.18.254.2".parse::<IpAddr>().unwrap()));
        assert_eq!(
            spec("{target: x, protocol: tcp, port: 389}").unwrap().port,
            389
        );
        for (yaml, error) in [
            ("{target: x, protocol: tcp}", "protocol tcp needs a port"),
            ("{target: x, port: 80}", "protocol icmp takes no port"),
            (
                "{target: x, max_hops: 0}",
                "max_hops must be between 1 and 64",
            ),
            ("{target: x, protocol: sctp}", "unknown variant `sctp`"),
            (
                "{target: x, expect_hop: 198.18.300.1}",
                "is not a valid address or prefix",
            ),
            ("{target: x, protocol: udp, port: 65530}", "leaves no room"),
            ("{target: x, hops: 3}", "unknown field `hops`"),
        ] {
            let got = spec(yaml).unwrap_err();
            assert!(got.contains(error), "{yaml}: {got}");
        }
    }

    #[test]
    fn icmp_answers_map_to_their_ttl() {
        let m = matcher(Protocol::Icmp, 0);
        let mut request = vec![8u8, 0, 0, 0];
        request.extend_from_slice(&77u16.to_be_bytes());
        request.extend_from_slice(&2u16.to_be_bytes());
        let original = ip(ME, THEM, PROTO_ICMP, &request);
        let exceeded = parse(&icmp_error(VNET, 11, 0, 0, &original));
        assert_eq!(m.classify(&exceeded), Some((2, Hop::Transit(VNET.into()))));
        let mut reply = request.clone();
        reply[0] = 0;
        let reply = parse(&ip(THEM, ME, PROTO_ICMP, &reply));
        assert_eq!(m.classify(&reply), Some((2, Hop::Reached(THEM.into()))));
        let other = Matcher { ident: 78, ..m };
        assert_eq!(other.classify(&exceeded), None);
    }

    #[test]
    fn udp_and_tcp_answers_match_on_ports() {
        let udp = matcher(Protocol::Udp, UDP_BASE_PORT);
        let original = ip(ME, THEM, PROTO_UDP, &header(40000, UDP_BASE_PORT + 1));
        let exceeded = parse(&icmp_error(NODE, 11, 0, 0, &original));
        assert_eq!(
            udp.classify(&exceeded),
            Some((2, Hop::Transit(NODE.into())))
        );
        let port_unreachable = parse(&icmp_error(THEM, 3, 3, 0, &original));
        assert_eq!(
            udp.classify(&port_unreachable),
            Some((2, Hop::Reached(THEM.into())))
        );
        let filtered = parse(&icmp_error(VNET, 3, 13, 0, &original));
        assert_eq!(
            udp.classify(&filtered),
            Some((2, Hop::Unreachable(VNET.into(), 13)))
        );
        let someone_else = ip(ME, THEM, PROTO_UDP, &header(40001, UDP_BASE_PORT + 1));
        assert_eq!(
            udp.classify(&parse(&icmp_error(NODE, 11, 0, 0, &someone_else))),
            None
        );

        let tcp = matcher(Protocol::Tcp, 389);
        let syn = ip(ME, THEM, PROTO_TCP, &header(50001, 389));
        assert_eq!(
            tcp.classify(&parse(&icmp_error(VNET, 11, 0, 0, &syn))),
            Some((3, Hop::Transit(VNET.into())))
        );
        assert_eq!(
            udp.classify(&parse(&icmp_error(VNET, 11, 0, 0, &syn))),
            None
        );
    }

    fn hops(list: &[(u8, Hop)]) -> BTreeMap<u8, Hop> {
        list.iter().copied().collect()
    }

    #[test]
    fn judged_paths_read_like_traceroute() {
        let s = spec("{target: 198.19.10.1, expect_hop: 198.18.1.1}").unwrap();
        let path = hops(&[
            (1, Hop::Transit(NODE.into())),
            (2, Hop::Transit(VNET.into())),
            (4, Hop::Reached(THEM.into())),
            (5, Hop::Reached(THEM.into())),
        ]);
        let ok = s.judge(THEM.into(), &path, 8).unwrap();
        assert_eq!(
            ok.detail,
            "198.19.10.1 reached in 4 hops (icmp): 1 198.18.2.1, 2 198.18.1.1, 3 *, 4 198.19.10.1"
        );
        let Measurements::Traceroute(report) = ok.measurements else {
            panic!("no report");
        };
        assert_eq!(
            (report.hop_count(), report.expected_hop_seen),
            (4, Some(true))
        );

        let elsewhere = spec("{target: 198.19.10.1, expect_hop: 198.18.9.0/24}").unwrap();
        let failure = elsewhere.judge(THEM.into(), &path, 8).unwrap_err();
        assert_eq!(failure.reason, Reason::Mismatch);
        assert!(
            failure
                .detail
                .ends_with("(expected a hop in 198.18.9.0/24)"),
            "{}",
            failure.detail
        );

        let lost = hops(&[
            (1, Hop::Transit(NODE.into())),
            (2, Hop::Transit(VNET.into())),
        ]);
        let failure = s.judge(THEM.into(), &lost, 30).unwrap_err();
        assert_eq!(failure.reason, Reason::Timeout);
        assert_eq!(
            failure.detail,
            "198.19.10.1 not reached within 30 hops (icmp): 1 198.18.2.1, 2 198.18.1.1, then no answer"
        );
        let refused = hops(&[
            (1, Hop::Transit(NODE.into())),
            (2, Hop::Unreachable(VNET.into(), 0)),
        ]);
        let failure = s.judge(THEM.into(), &refused, 4).unwrap_err();
        assert_eq!(failure.reason, Reason::Unreachable);
        assert!(
            failure.detail.contains("2 198.18.1.1 !N"),
            "{}",
            failure.detail
        );
    }

    #[test]
    fn path_changes_ignore_silence_and_outages() {
        let report = |list: &[Option<Hop>]| TracerouteReport {
            hops: list.to_vec(),
            expected_hop_seen: None,
        };
        let (n, v, t) = (
            Some(Hop::Transit(NODE.into())),
            Some(Hop::Transit(VNET.into())),
            Some(Hop::Reached(THEM.into())),
        );
        let base = report(&[n, v, t]);
        assert!(!base.path_changed(&base));
        assert!(!report(&[n, None, t]).path_changed(&base), "a silent hop");
        assert!(!report(&[n, v]).path_changed(&base), "an outage past hop 2");
        assert!(report(&[v, n, t]).path_changed(&base), "other routers");
        assert!(
            report(&[n, v, None, t]).path_changed(&base),
            "one hop longer"
        );
    }

    #[test]
    fn icmpv6_answers_map_to_their_hop_limit() {
        use crate::probe::raw::tests::{echo6, icmp6_error, ip6, GW6, ME6, THEM6};
        use crate::probe::raw::{parse_v6, PROTO_ICMPV6};
        let icmp = Matcher {
            target: THEM6.into(),
            ..matcher(Protocol::Icmp, 0)
        };
        let original = ip6(ME6, THEM6, PROTO_ICMPV6, &echo6(128, 77, 2, 64));
        let exceeded = parse_v6(GW6, &icmp6_error(3, 0, 0, &original));
        assert_eq!(
            icmp.classify(&exceeded),
            Some((2, Hop::Transit(GW6.into())))
        );
        let reply = parse_v6(THEM6, &echo6(129, 77, 3, 64));
        assert_eq!(icmp.classify(&reply), Some((3, Hop::Reached(THEM6.into()))));
        let too_big = parse_v6(GW6, &icmp6_error(2, 0, 1280, &original));
        assert_eq!(icmp.classify(&too_big), None, "a bogus Packet Too Big");
        let v4 = matcher(Protocol::Icmp, 0);
        assert_eq!(v4.classify(&exceeded), None, "another target");

        let udp = Matcher {
            target: THEM6.into(),
            ..matcher(Protocol::Udp, UDP_BASE_PORT)
        };
        let original = ip6(ME6, THEM6, PROTO_UDP, &header(40000, UDP_BASE_PORT + 2));
        let arrived = parse_v6(THEM6, &icmp6_error(1, 4, 0, &original));
        assert_eq!(
            udp.classify(&arrived),
            Some((3, Hop::Reached(THEM6.into())))
        );
        // Code 3 is "address unreachable" in ICMPv6, not the port unreachable it is in ICMP.
        let address = parse_v6(THEM6, &icmp6_error(1, 3, 0, &original));
        let hop = Hop::Unreachable(THEM6.into(), 3);
        assert_eq!(udp.classify(&address), Some((3, hop)));
        let report = TracerouteReport {
            hops: vec![
                Some(Hop::Transit(GW6.into())),
                Some(Hop::Unreachable(GW6.into(), 1)),
            ],
            expected_hop_seen: None,
        };
        assert_eq!(report.to_string(), "1 2001:2:0:1::1, 2 2001:2:0:1::1 !X");
        assert_eq!(unreachable_mark(THEM6.into(), 3), "H");
        assert_eq!(unreachable_mark(THEM.into(), 3), "<3>");
    }

    #[test]
    fn expect_hop_takes_ipv6_prefixes() {
        use crate::probe::raw::tests::{GW6, THEM6};
        let s = spec("{target: '2001:2:0:10::1', expect_hop: '2001:2:0:1::/64'}").unwrap();
        let path = hops(&[
            (1, Hop::Transit(GW6.into())),
            (2, Hop::Reached(THEM6.into())),
        ]);
        let ok = s.judge(THEM6.into(), &path, 4).unwrap();
        assert_eq!(
            ok.detail,
            "2001:2:0:10::1 reached in 2 hops (icmp): 1 2001:2:0:1::1, 2 2001:2:0:10::1"
        );
        let elsewhere = spec("{target: '2001:2:0:10::1', expect_hop: '2001:2:9::/48'}").unwrap();
        let failure = elsewhere.judge(THEM6.into(), &path, 4).unwrap_err();
        assert_eq!(failure.reason, Reason::Mismatch);
    }
}
