//! Raw ICMP and ICMPv6 for the path probes: echo requests out with a chosen TTL (hop limit) or
//! don't-fragment, and every ICMP message in, parsed down to what a probe matches its own
//! packets by.
//!
//! A raw ICMP socket receives a copy of every ICMP message the namespace receives: echo replies,
//! and the errors (time exceeded, unreachable, fragmentation needed or Packet Too Big) that quote
//! the header of the packet that caused them, whatever its protocol. Unprivileged ICMP sockets
//! never see those errors, so these probes need CAP_NET_RAW. An IPv4 raw socket delivers the IP
//! header too; an ICMPv6 one delivers the ICMPv6 message alone, its sender in the address.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::OnceLock;

use nix::{setsockopt_impl, sockopt_impl};
use pnet_packet::icmp::echo_request::MutableEchoRequestPacket;
use pnet_packet::icmp::{self, IcmpCode, IcmpPacket, IcmpTypes};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::resolver::{Family, Resolver};
use super::target::Host;
use super::{Failure, Reason};
use crate::netns::NetnsContext;

/// IPv4 and ICMP headers in front of an echo payload: IP size = payload + 28.
pub const ECHO_OVERHEAD: usize = 20 + 8;

/// The IPv6 header in front of an ICMPv6 message; the probes send no extension headers.
pub const IPV6_HEADER: usize = 40;

/// IP protocol numbers (IPv6 next headers) of what a quoted header carried.
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

/// ICMPv6 message types (RFC 4443).
const V6_UNREACHABLE: u8 = 1;
const V6_TOO_BIG: u8 = 2;
const V6_TIME_EXCEEDED: u8 = 3;
const V6_ECHO_REQUEST: u8 = 128;
const V6_ECHO_REPLY: u8 = 129;

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

// The same for IPv6: IPV6_PMTUDISC_PROBE sizes packets by the device MTU; with IPV6_DONTFRAG
// the kernel refuses what is larger instead of fragmenting it itself.
sockopt_impl!(
    Ipv6MtuDiscover,
    SetOnly,
    libc::IPPROTO_IPV6,
    libc::IPV6_MTU_DISCOVER,
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

/// The address of `host` a path probe measures, resolved in the probe's namespace to `family`
/// (with `any`, its first IPv4 address when it has one, so a dual-stack name keeps the path it
/// always had).
pub async fn path_target(
    host: &Host,
    ctx: &NetnsContext,
    resolver: &Resolver,
    family: Family,
) -> Result<IpAddr, Failure> {
    let ips = host.resolve_family(ctx, resolver, family).await?;
    ips.first()
        .copied()
        .ok_or_else(|| Failure::new(Reason::Error, format!("{host}: no address")))
}

/// Sets the TTL (IPv4) or unicast hop limit (IPv6) of the packets `socket` sends.
pub fn set_hop_limit<S: AsFd>(socket: &S, ipv6: bool, hops: u8) -> io::Result<()> {
    let socket = socket2::SockRef::from(socket);
    if ipv6 {
        socket.set_unicast_hops_v6(u32::from(hops))
    } else {
        socket.set_ttl_v4(u32::from(hops))
    }
}

/// A raw ICMPv4 or ICMPv6 socket in the namespace of the thread that opened it.
///
/// Tokio's UDP socket drives it: its datagram calls are plain sendto/recvfrom, which is all a
/// raw socket needs, and it registers the descriptor without unsafe code.
pub struct RawIcmp {
    socket: UdpSocket,
    ipv6: bool,
}

/// One ICMP message received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    EchoReply {
        from: IpAddr,
        ident: u16,
        seq: u16,
        /// The IP packet's total length, which an echo reply shares with its request.
        size: u16,
    },
    /// An error about a packet someone in this namespace sent.
    Error {
        from: IpAddr,
        error: IcmpError,
        quoted: Quoted,
    },
    /// Anything else: echo requests, malformed or truncated messages.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpError {
    /// ICMP type 11, ICMPv6 type 3: a router dropped the packet when its TTL ran out.
    TimeExceeded,
    /// ICMP type 3 code 4 (fragmentation needed with DF set) or ICMPv6 type 2 (Packet Too Big):
    /// too big to forward; `mtu` is the next hop's (0 if unsaid, 65535 at most).
    TooBig { mtu: u16 },
    /// ICMP type 3 or ICMPv6 type 1 with the message's own code: port unreachable, which the
    /// destination itself sends, is code 3 in ICMP and 4 in ICMPv6 (see [`port_unreachable`]).
    Unreachable { code: u8 },
}

/// True when an unreachable `code` from `from` means "port unreachable" in its family's ICMP.
pub fn port_unreachable(from: IpAddr, code: u8) -> bool {
    code == if from.is_ipv4() { 3 } else { 4 }
}

/// The start of the packet an ICMP error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quoted {
    pub dst: IpAddr,
    pub protocol: u8,
    /// The first 8 bytes of its transport header (RFC 792 and RFC 4443 guarantee these).
    pub head: [u8; 8],
}

impl Quoted {
    /// Identifier and sequence number, if it was an echo request of the quoted packet's family.
    pub fn echo(&self) -> Option<(u16, u16)> {
        let (protocol, request) = match self.dst {
            IpAddr::V4(_) => (PROTO_ICMP, IcmpTypes::EchoRequest.0),
            IpAddr::V6(_) => (PROTO_ICMPV6, V6_ECHO_REQUEST),
        };
        (self.protocol == protocol && self.head[0] == request)
            .then(|| (be16(&self.head[4..6]), be16(&self.head[6..8])))
    }

    /// Source and destination port, if it was UDP or TCP.
    pub fn ports(&self) -> Option<(u16, u16)> {
        matches!(self.protocol, PROTO_UDP | PROTO_TCP)
            .then(|| (be16(&self.head[0..2]), be16(&self.head[2..4])))
    }
}

impl RawIcmp {
    /// Opens the socket for `target`'s family; without CAP_NET_RAW the failure says so, naming
    /// `purpose`.
    pub fn open(target: IpAddr, purpose: &str) -> Result<RawIcmp, Failure> {
        let ipv6 = target.is_ipv6();
        let (domain, protocol) = if ipv6 {
            (Domain::IPV6, Protocol::ICMPV6)
        } else {
            (Domain::IPV4, Protocol::ICMPV4)
        };
        let opened = Socket::new(domain, Type::RAW, Some(protocol))
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .and_then(|s| UdpSocket::from_std(s.into()));
        opened.map(|socket| RawIcmp { socket, ipv6 }).map_err(|e| {
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
        set_hop_limit(&self.socket, self.ipv6, ttl)
    }

    /// Never fragments (DF on IPv4, IPV6_DONTFRAG on IPv6) and sizes packets by the device MTU,
    /// not the cached path MTU.
    pub fn set_probe_pmtu(&self) -> io::Result<()> {
        use nix::sys::socket::{setsockopt, sockopt::Ipv6DontFrag};
        let set = if self.ipv6 {
            setsockopt(&self.socket, Ipv6MtuDiscover, &libc::IPV6_PMTUDISC_PROBE)
                .and_then(|()| setsockopt(&self.socket, Ipv6DontFrag, &true))
        } else {
            setsockopt(&self.socket, MtuDiscover, &libc::IP_PMTUDISC_PROBE)
        };
        set.map_err(io::Error::from)
    }

    /// Sends an echo request whose IP packet is `ip_size` bytes (at least 28, or 48 in IPv6).
    pub async fn send_echo(
        &self,
        dst: IpAddr,
        ident: u16,
        seq: u16,
        ip_size: usize,
    ) -> io::Result<()> {
        let packet = if self.ipv6 {
            // The kernel fills in an ICMPv6 checksum, which covers the IPv6 pseudo-header.
            let mut packet = echo_request(ident, seq, ip_size.saturating_sub(IPV6_HEADER).max(8));
            packet[0] = V6_ECHO_REQUEST;
            packet[2..4].fill(0);
            packet
        } else {
            echo_request(ident, seq, ip_size.saturating_sub(20).max(8))
        };
        self.socket
            .send_to(&packet, SocketAddr::new(dst, 0))
            .await
            .map(drop)
    }

    /// Waits for the next ICMP message.
    pub async fn recv(&self) -> io::Result<Message> {
        let mut buf = [0u8; 1600];
        let (n, from) = self.socket.recv_from(&mut buf).await?;
        Ok(match from.ip() {
            IpAddr::V6(from) if self.ipv6 => parse_v6(from, &buf[..n]),
            _ => parse(&buf[..n]),
        })
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
                from: Ipv4Addr::from(from).into(),
                ident: be16(&icmp[4..6]),
                seq: be16(&icmp[6..8]),
                size,
            })
        }
        (3, 4) => IcmpError::TooBig {
            mtu: be16(&icmp[6..8]),
        },
        (3, code) => IcmpError::Unreachable { code },
        (11, _) => IcmpError::TimeExceeded,
        _ => return None,
    };
    let (_, quoted_protocol, transport) = ip_split(&icmp[8..])?;
    let quoted_dst = icmp[8..].get(16..20)?;
    Some(Message::Error {
        from: Ipv4Addr::from(from).into(),
        error,
        quoted: Quoted {
            dst: Ipv4Addr::from(<[u8; 4]>::try_from(quoted_dst).ok()?).into(),
            protocol: quoted_protocol,
            head: transport.get(..8)?.try_into().ok()?,
        },
    })
}

/// Parses what a raw ICMPv6 socket delivers, the ICMPv6 message alone, from `from`. Never
/// panics: anything short or odd is `Other`.
pub fn parse_v6(from: Ipv6Addr, icmp: &[u8]) -> Message {
    parse_v6_checked(from, icmp).unwrap_or(Message::Other)
}

fn parse_v6_checked(from: Ipv6Addr, icmp: &[u8]) -> Option<Message> {
    let (kind, code) = (*icmp.first()?, *icmp.get(1)?);
    let body = icmp.get(4..8)?;
    let error = match kind {
        V6_ECHO_REPLY => {
            return Some(Message::EchoReply {
                from: from.into(),
                ident: be16(&body[0..2]),
                seq: be16(&body[2..4]),
                size: u16::try_from(icmp.len() + IPV6_HEADER).ok()?,
            })
        }
        V6_TOO_BIG => {
            let mtu = u32::from_be_bytes(body.try_into().ok()?);
            IcmpError::TooBig {
                mtu: u16::try_from(mtu).unwrap_or(u16::MAX),
            }
        }
        V6_UNREACHABLE => IcmpError::Unreachable { code },
        V6_TIME_EXCEEDED => IcmpError::TimeExceeded,
        _ => return None,
    };
    // The invoking packet: an IPv6 header, then (as the probes send none) no extension headers.
    let original = icmp.get(8..)?;
    if original.first()? >> 4 != 6 {
        return None;
    }
    let dst: [u8; 16] = original.get(24..40)?.try_into().ok()?;
    Some(Message::Error {
        from: from.into(),
        error,
        quoted: Quoted {
            dst: Ipv6Addr::from(dst).into(),
            protocol: *original.get(6)?,
            head: original
                .get(IPV6_HEADER..IPV6_HEADER + 8)?
                .try_into()
                .ok()?,
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

    /// An IPv6 header from `src` to `dst` with next header `next`, followed by `payload`.
    pub fn ip6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        p.extend_from_slice(&[next, 64]);
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(payload);
        p
    }

    /// An ICMPv6 error of `kind`/`code` (as a raw ICMPv6 socket delivers it: no IPv6 header),
    /// with `param` (the MTU of a Packet Too Big), quoting `original` (an IPv6 packet).
    pub fn icmp6_error(kind: u8, code: u8, param: u32, original: &[u8]) -> Vec<u8> {
        let mut icmp = vec![kind, code, 0, 0];
        icmp.extend_from_slice(&param.to_be_bytes());
        icmp.extend_from_slice(original);
        icmp
    }

    /// An ICMPv6 echo request or reply (`kind` 128 or 129).
    pub fn echo6(kind: u8, ident: u16, seq: u16, len: usize) -> Vec<u8> {
        let mut icmp = vec![kind, 0, 0, 0];
        icmp.extend_from_slice(&ident.to_be_bytes());
        icmp.extend_from_slice(&seq.to_be_bytes());
        icmp.resize(len.max(8), 0);
        icmp
    }

    pub const ME: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 10);
    pub const ME6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 2, 0, 0, 0, 0x10);
    pub const THEM6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0x10, 0, 0, 0, 1);
    pub const GW6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 1);
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
        assert_eq!(error, IcmpError::TooBig { mtu: 1400 });
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
                from: THEM.into(),
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

    #[test]
    fn icmpv6_replies_and_errors_quote_our_packets() {
        assert_eq!(
            parse_v6(THEM6, &echo6(V6_ECHO_REPLY, 9, 3, 1360)),
            Message::EchoReply {
                from: THEM6.into(),
                ident: 9,
                seq: 3,
                size: 1400,
            }
        );
        let request = echo6(V6_ECHO_REQUEST, 0x1234, 7, 1460);
        let original = ip6(ME6, THEM6, PROTO_ICMPV6, &request);
        let Message::Error {
            from,
            error,
            quoted,
        } = parse_v6(GW6, &icmp6_error(2, 0, 1400, &original[..1232]))
        else {
            panic!("not an error");
        };
        assert_eq!(from, IpAddr::from(GW6));
        assert_eq!(error, IcmpError::TooBig { mtu: 1400 });
        assert_eq!(quoted.dst, IpAddr::from(THEM6));
        assert_eq!(quoted.echo(), Some((0x1234, 7)));
        assert_eq!(quoted.ports(), None);
        let Message::Error { error, .. } = parse_v6(GW6, &icmp6_error(2, 0, 1 << 20, &original))
        else {
            panic!("not an error");
        };
        assert_eq!(error, IcmpError::TooBig { mtu: u16::MAX }, "a jumbo MTU");

        let udp = [0x82, 0x35, 0x82, 0x9b, 0, 8, 0, 0];
        let original = ip6(ME6, THEM6, PROTO_UDP, &udp);
        let Message::Error { error, quoted, .. } = parse_v6(GW6, &icmp6_error(3, 0, 0, &original))
        else {
            panic!("not an error");
        };
        assert_eq!(error, IcmpError::TimeExceeded);
        assert_eq!(quoted.ports(), Some((0x8235, 0x829b)));
        assert_eq!(quoted.echo(), None);
        let Message::Error { from, error, .. } = parse_v6(THEM6, &icmp6_error(1, 4, 0, &original))
        else {
            panic!("not an error");
        };
        assert_eq!(error, IcmpError::Unreachable { code: 4 });
        assert!(port_unreachable(from, 4) && !port_unreachable(from, 3));
        assert!(port_unreachable(THEM.into(), 3));
    }

    #[test]
    fn icmpv6_an_ipv4_echo_is_no_ipv6_echo() {
        // An ICMP (protocol 1) echo request quoted in an IPv6 error is not ours.
        let original = ip6(ME6, THEM6, PROTO_ICMP, &echo6(8, 1, 2, 8));
        let Message::Error { quoted, .. } = parse_v6(GW6, &icmp6_error(3, 0, 0, &original)) else {
            panic!("not an error");
        };
        assert_eq!(quoted.echo(), None);
    }

    #[test]
    fn short_or_odd_icmpv6_is_other_never_a_panic() {
        let original = ip6(ME6, THEM6, PROTO_UDP, &[0; 8]);
        let full = icmp6_error(2, 0, 1280, &original);
        for len in 0..full.len() {
            assert_eq!(parse_v6(GW6, &full[..len]), Message::Other, "{len} bytes");
        }
        assert!(matches!(parse_v6(GW6, &full), Message::Error { .. }));
        let mut ipv4_inside = full.clone();
        ipv4_inside[8] = 0x45;
        assert_eq!(parse_v6(GW6, &ipv4_inside), Message::Other, "version 4");
        for kind in [0, 4, 127, 128, 130, 135, 255] {
            let mut odd = full.clone();
            odd[0] = kind;
            assert_eq!(parse_v6(GW6, &odd), Message::Other, "type {kind}");
        }
        assert_eq!(parse_v6(GW6, &[V6_ECHO_REPLY; 7]), Message::Other);
        assert_eq!(parse_v6(GW6, &vec![V6_ECHO_REPLY; 70_000]), Message::Other);
        let mut state = 0x2545_f491_u32;
        for len in 0..400 {
            let garbage: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    state as u8
                })
                .collect();
            let _ = parse_v6(GW6, &garbage);
        }
    }
}
