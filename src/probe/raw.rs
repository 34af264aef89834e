//! Raw ICMPv4 for the path probes: echo requests out with a chosen TTL or don't-fragment, and
//! every ICMP message in, parsed down to what a probe matches its own packets by.
//!
//! A raw ICMP socket receives a copy of every ICMP message the namespace receives: echo replies,
//! and the errors (time exceeded, unreachable, fragmentation needed) that quote the header of the
//! packet that caused them, whatever its protocol. Unprivileged ICMP sockets never see those
//! errors, so these probes need CAP_NET_RAW.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::OnceLock;

use nix::{setsockopt_impl, sockopt_impl};
use pnet_packet::icmp::echo_request::MutableEchoRequestPacket;
use pnet_packet::icmp::{self, IcmpCode, IcmpPacket, IcmpTypes};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::resolver::Resolver;
use super::target::Host;
use super::{Failure, Reason};
use crate::netns::NetnsContext;

/// IPv4 and ICMP headers in front of an echo payload: IP size = payload + 28.
pub const ECHO_OVERHEAD: usize = 20 + 8;

/// IP protocol numbers of what a quoted header carried.
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

// `IP_MTU_DISCOVER` has no setter in nix or socket2; nix's macro generates one without our own
// unsafe code. IP_PMTUDISC_PROBE sets DF and sizes packets by the device MTU, ignoring the
// namespace's cached path MTU, which is what a measurement needs.
sockopt_impl!(
    MtuDiscover,
    SetOnly,
    libc::IPPROTO_IP,
    libc::IP_MTU_DISCOVER,
    libc::c_int
);

/// Echo identifiers keep concurrent probes' packets apart on raw sockets, which see every
/// reply: one counter for every probe kind that sends echo requests.
static NEXT_IDENT: AtomicU16 = AtomicU16::new(0);

/// A fresh echo identifier for one probe round.
pub fn next_ident() -> u16 {
    // The process id once, not a getpid(2) per round.
    static BASE: OnceLock<u16> = OnceLock::new();
    let base = *BASE.get_or_init(|| std::process::id() as u16);
    base.wrapping_add(NEXT_IDENT.fetch_add(1, Ordering::Relaxed))
}

/// The first IPv4 address of `host`, resolved in the probe's namespace: these probes measure
/// IPv4 paths only.
pub async fn ipv4_target(
    host: &Host,
    ctx: &NetnsContext,
    resolver: &Resolver,
    kind: &str,
) -> Result<Ipv4Addr, Failure> {
    let ips = host.resolve(ctx, resolver).await?;
    ips.iter()
        .find_map(|ip| match ip {
            std::net::IpAddr::V4(v4) => Some(*v4),
            std::net::IpAddr::V6(_) => None,
        })
        .ok_or_else(|| {
            Failure::new(
                Reason::Error,
                format!("{host}: {kind} measures IPv4 paths only"),
            )
        })
}

/// A raw ICMPv4 socket in the namespace of the thread that opened it.
///
/// Tokio's UDP socket drives it: its datagram calls are plain sendto/recvfrom, which is all a
/// raw socket needs, and it registers the descriptor without unsafe code.
pub struct RawIcmp {
    socket: UdpSocket,
}

/// One ICMP message received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    EchoReply {
        from: Ipv4Addr,
        ident: u16,
        seq: u16,
        /// The IP packet's total length, which an echo reply shares with its request.
        size: u16,
    },
    /// An error about a packet someone in this namespace sent.
    Error {
        from: Ipv4Addr,
        error: IcmpError,
        quoted: Quoted,
    },
    /// Anything else: echo requests, malformed or truncated messages.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpError {
    /// Type 11: a router dropped the packet when its TTL ran out.
    TimeExceeded,
    /// Type 3 code 4: too big to forward with DF set; `mtu` is the next hop's (0 if unsaid).
    FragNeeded { mtu: u16 },
    /// Type 3, any other code: 3 is port unreachable, which the destination itself sends.
    Unreachable { code: u8 },
}

/// The start of the packet an ICMP error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quoted {
    pub dst: Ipv4Addr,
    pub protocol: u8,
    /// The first 8 bytes of its transport header (RFC 792 guarantees at least these).
    pub head: [u8; 8],
}

impl Quoted {
    /// Identifier and sequence number, if it was an echo request.
    pub fn echo(&self) -> Option<(u16, u16)> {
        (self.protocol == PROTO_ICMP && self.head[0] == IcmpTypes::EchoRequest.0)
            .then(|| (be16(&self.head[4..6]), be16(&self.head[6..8])))
    }

    /// Source and destination port, if it was UDP or TCP.
    pub fn ports(&self) -> Option<(u16, u16)> {
        matches!(self.protocol, PROTO_UDP | PROTO_TCP)
            .then(|| (be16(&self.head[0..2]), be16(&self.head[2..4])))
    }
}

impl RawIcmp {
    /// Opens the socket; without CAP_NET_RAW the failure says so, naming `purpose`.
    pub fn open(purpose: &str) -> Result<RawIcmp, Failure> {
        let opened = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .and_then(|s| UdpSocket::from_std(s.into()));
        opened.map(|socket| RawIcmp { socket }).map_err(|e| {
            let reason = Reason::of_io(&e);
            let hint = if reason == Reason::PermissionDenied {
                format!(" ({purpose} needs CAP_NET_RAW: add it to the container's capabilities)")
            } else {
                String::new()
            };
            Failure::new(reason, format!("open a raw ICMP socket: {e}{hint}"))
        })
    }

    pub fn set_ttl(&self, ttl: u8) -> io::Result<()> {
        self.socket.set_ttl(u32::from(ttl))
    }

    /// Sets DF on every packet and sizes them by the device MTU, not the cached path MTU.
    pub fn set_probe_pmtu(&self) -> io::Result<()> {
        nix::sys::socket::setsockopt(&self.socket, MtuDiscover, &libc::IP_PMTUDISC_PROBE)
            .map_err(io::Error::from)
    }

    /// Sends an echo request whose IP packet is `ip_size` bytes (at least 28).
    pub async fn send_echo(
        &self,
        dst: Ipv4Addr,
        ident: u16,
        seq: u16,
        ip_size: usize,
    ) -> io::Result<()> {
        let packet = echo_request(ident, seq, ip_size.saturating_sub(20).max(8));
        self.socket
            .send_to(&packet, SocketAddrV4::new(dst, 0))
            .await
            .map(drop)
    }

    /// Waits for the next ICMP message.
    pub async fn recv(&self) -> io::Result<Message> {
        let mut buf = [0u8; 1600];
        let (n, _) = self.socket.recv_from(&mut buf).await?;
        Ok(parse(&buf[..n]))
    }
}

/// An ICMP echo request of `icmp_len` bytes (header included), checksummed.
fn echo_request(ident: u16, seq: u16, icmp_len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; icmp_len];
    if let Some(mut echo) = MutableEchoRequestPacket::new(&mut buf) {
        echo.set_icmp_type(IcmpTypes::EchoRequest);
        echo.set_icmp_code(IcmpCode(0));
        echo.set_identifier(ident);
        echo.set_sequence_number(seq);
    }
    if let Some(packet) = IcmpPacket::new(&buf) {
        let sum = icmp::checksum(&packet);
        buf[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    buf
}

/// Parses what a raw IPv4 ICMP socket delivers: the IP header, then the ICMP message. Never
/// panics: anything short or odd is `Other`.
pub fn parse(packet: &[u8]) -> Message {
    parse_checked(packet).unwrap_or(Message::Other)
}

fn parse_checked(packet: &[u8]) -> Option<Message> {
    let (from, protocol, icmp) = ip_split(packet)?;
    let size = be16(packet.get(2..4)?);
    if protocol != PROTO_ICMP || icmp.len() < 8 {
        return None;
    }
    let (kind, code) = (icmp[0], icmp[1]);
    let error = match (kind, code) {
        (0, _) => {
            return Some(Message::EchoReply {
                from: Ipv4Addr::from(from),
                ident: be16(&icmp[4..6]),
                seq: be16(&icmp[6..8]),
                size,
            })
        }
        (3, 4) => IcmpError::FragNeeded {
            mtu: be16(&icmp[6..8]),
        },
        (3, code) => IcmpError::Unreachable { code },
        (11, _) => IcmpError::TimeExceeded,
        _ => return None,
    };
    let (_, quoted_protocol, transport) = ip_split(&icmp[8..])?;
    let quoted_dst = icmp[8..].get(16..20)?;
    Some(Message::Error {
        from: Ipv4Addr::from(from),
        error,
        quoted: Quoted {
            dst: Ipv4Addr::from(<[u8; 4]>::try_from(quoted_dst).ok()?),
            protocol: quoted_protocol,
            head: transport.get(..8)?.try_into().ok()?,
        },
    })
}

/// Source address, protocol and payload of an IPv4 packet.
fn ip_split(packet: &[u8]) -> Option<([u8; 4], u8, &[u8])> {
    let first = *packet.first()?;
    let header_len = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || header_len < 20 {
        return None;
    }
    let src: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
    Some((src, *packet.get(9)?, packet.get(header_len..)?))
}

fn be16(bytes: &[u8]) -> u16 {
    u16::from_be_bytes([bytes[0], bytes[1]])
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// An IPv4 header from `src` to `dst` carrying `protocol`, followed by `payload`.
    pub fn ip(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, protocol, 0, 0];
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        let total = (p.len() + payload.len()) as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    /// An ICMP error of `kind`/`code` from `router`, quoting `original` (an IP packet).
    pub fn icmp_error(router: Ipv4Addr, kind: u8, code: u8, mtu: u16, original: &[u8]) -> Vec<u8> {
        let mut icmp = vec![kind, code, 0, 0, 0, 0];
        icmp.extend_from_slice(&mtu.to_be_bytes());
        icmp.extend_from_slice(&original[..original.len().min(28)]);
        ip(router, ME, PROTO_ICMP, &icmp)
    }

    pub const ME: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 10);
    pub const THEM: Ipv4Addr = Ipv4Addr::new(198, 19, 10, 1);
    const GW: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);

    #[test]
    fn echo_requests_round_trip_through_the_parser_as_quoted_headers() {
        let request = echo_request(0x1234, 7, 1372);
        assert_eq!(request.len(), 1372);
        assert!(IcmpPacket::new(&request)
            .is_some_and(|p| icmp::checksum(&p) == u16::from_be_bytes([request[2], request[3]])));
        let original = ip(ME, THEM, PROTO_ICMP, &request);
        let message = parse(&icmp_error(GW, 3, 4, 1400, &original));
        let Message::Error {
            from,
            error,
            quoted,
        } = message
        else {
            panic!("not an error: {message:?}");
        };
        assert_eq!(from, GW);
        assert_eq!(error, IcmpError::FragNeeded { mtu: 1400 });
        assert_eq!(quoted.dst, THEM);
        assert_eq!(quoted.echo(), Some((0x1234, 7)));
        assert_eq!(quoted.ports(), None);
    }

    #[test]
    fn echo_replies_time_exceeded_and_port_unreachable() {
        let mut reply = echo_request(9, 3, 8);
        reply[0] = 0;
        assert_eq!(
            parse(&ip(THEM, ME, PROTO_ICMP, &reply)),
            Message::EchoReply {
                from: THEM,
                ident: 9,
                seq: 3,
                size: 28,
            }
        );
        let udp = [0x82, 0x35, 0x82, 0x9b, 0, 8, 0, 0];
        let original = ip(ME, THEM, PROTO_UDP, &udp);
        let Message::Error { error, quoted, .. } = parse(&icmp_error(GW, 11, 0, 0, &original))
        else {
            panic!("not an error");
        };
        assert_eq!(error, IcmpError::TimeExceeded);
        assert_eq!(quoted.ports(), Some((0x8235, 0x829b)));
        let Message::Error { error, .. } = parse(&icmp_error(THEM, 3, 3, 0, &original)) else {
            panic!("not an error");
        };
        assert_eq!(error, IcmpError::Unreachable { code: 3 });
    }

    #[test]
    fn short_or_odd_input_is_other_never_a_panic() {
        let original = ip(ME, THEM, PROTO_UDP, &[0; 8]);
        let full = icmp_error(GW, 11, 0, 0, &original);
        for len in 0..full.len() {
            let _ = parse(&full[..len]);
        }
        assert_eq!(parse(&full[..full.len() - 1]), Message::Other);
        assert_eq!(parse(&[0x65; 40]), Message::Other, "IPv6 version nibble");
        assert_eq!(parse(&[0x41; 40]), Message::Other, "header length below 20");
        assert_eq!(
            parse(&ip(THEM, ME, PROTO_UDP, &[0; 16])),
            Message::Other,
            "not ICMP"
        );
    }
}
