//! SNAT evidence from connection tracking: where does this namespace send a flow's replies?
//!
//! One targeted conntrack GET over netlink on a flow's original tuple (cheap even on a node with
//! 100k entries, where a dump is not). If the entry's reply tuple is addressed to anything but
//! the flow's own source, this namespace rewrote the source on the way out: SNAT or MASQUERADE.
//! Must run on a thread inside the namespace whose table is read (the host's, where pod traffic
//! is masqueraded); needs CAP_NET_ADMIN there.

use std::fmt;
use std::net::SocketAddr;

use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLMSG_ERROR, NLM_F_REQUEST,
};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Protocol, Tuple,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket};

use super::Transport;

/// The netlink message type of a conntrack entry: subsystem NFNL_SUBSYS_CTNETLINK (1) in the
/// high byte, IPCTNL_MSG_CT_NEW (0) in the low one.
const CONNTRACK_NEW: u16 = 1 << 8;

fn protocol(transport: Transport) -> Protocol {
    match transport {
        Transport::Udp => Protocol::Udp,
        Transport::Tcp => Protocol::Tcp,
    }
}

/// A flow as its originator sees it: its own socket's address and the peer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub transport: Transport,
    pub source: SocketAddr,
    pub destination: SocketAddr,
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} -> {}",
            self.transport.as_str(),
            self.source,
            self.destination
        )
    }
}

/// What the table says about a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// The source was rewritten: replies come back to `to`.
    Translated { to: SocketAddr },
    /// Replies go back to the flow's own source.
    NotTranslated,
    /// No entry: the namespace does not track the flow, so it cannot have translated it.
    NotTracked,
}

impl Evidence {
    pub fn snat_observed(self) -> bool {
        matches!(self, Evidence::Translated { .. })
    }
}

/// Why the table could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConntrackError {
    #[error("reading conntrack needs CAP_NET_ADMIN in the host namespace")]
    PermissionDenied,
    #[error("conntrack netlink {step}: {message}")]
    Netlink { step: &'static str, message: String },
}

fn netlink(step: &'static str) -> impl Fn(std::io::Error) -> ConntrackError {
    move |e| match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => ConntrackError::PermissionDenied,
        _ => ConntrackError::Netlink {
            step,
            message: e.to_string(),
        },
    }
}

/// Looks `flow` up in the conntrack table of the calling thread's namespace.
pub fn lookup(flow: &Flow) -> Result<Evidence, ConntrackError> {
    let mut socket = Socket::new(NETLINK_NETFILTER).map_err(netlink("socket"))?;
    socket.bind_auto().map_err(netlink("bind"))?;
    let request = encode_get(flow);
    socket.send(&request, 0).map_err(netlink("send"))?;
    // The kernel answers a GET while handling the send, so the reply is already queued; not
    // waiting means a missing answer is an error, never a hang on the namespace's only thread.
    let mut buf = vec![0u8; 8192];
    let len = socket
        .recv(&mut &mut buf[..], libc::MSG_DONTWAIT)
        .map_err(netlink("receive"))?;
    decode_reply(&buf[..len.min(buf.len())], flow)
}

fn encode_get(flow: &Flow) -> Vec<u8> {
    let family = if flow.source.is_ipv4() {
        NetfilterProtoFamily::IPv4
    } else {
        NetfilterProtoFamily::IPv6
    };
    let tuple = vec![
        Tuple::Ip(vec![
            IPTuple::SourceAddress(flow.source.ip()),
            IPTuple::DestinationAddress(flow.destination.ip()),
        ]),
        Tuple::Proto(vec![
            ProtoTuple::Protocol(protocol(flow.transport)),
            ProtoTuple::SourcePort(flow.source.port()),
            ProtoTuple::DestinationPort(flow.destination.port()),
        ]),
    ];
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST;
    let mut message = NetlinkMessage::new(
        header,
        NetlinkPayload::from(NetfilterMessage::new(
            NetfilterHeader::new(family, 0, 0),
            ConntrackMessage::Get(vec![ConntrackAttribute::CtaTupleOrig(tuple)]),
        )),
    );
    message.finalize();
    let mut buf = vec![0u8; message.buffer_len()];
    message.serialize(&mut buf);
    buf
}

/// Reads the kernel's answer to [`encode_get`] for `flow`, of either family: the reply tuple's
/// destination says where replies go. Malformed bytes are an error, never a panic.
pub(crate) fn decode_reply(buf: &[u8], flow: &Flow) -> Result<Evidence, ConntrackError> {
    let bad = |message: String| ConntrackError::Netlink {
        step: "answer",
        message,
    };
    let kind = NetlinkBuffer::new_checked(buf)
        .map_err(|e| bad(format!("cannot decode: {e}")))?
        .message_type();
    // The kernel answers a GET with the entry or an error. Anything else is refused unread: the
    // crate's parsers of other netfilter subsystems panic on some malformed attributes.
    if kind != NLMSG_ERROR && kind != CONNTRACK_NEW {
        return Err(bad(format!(
            "message type {kind:#06x}, not a conntrack entry"
        )));
    }
    let message = NetlinkMessage::<NetfilterMessage>::deserialize(buf)
        .map_err(|e| bad(format!("cannot decode: {e}")))?;
    let attributes = match message.payload {
        NetlinkPayload::Error(e) if e.raw_code() == -libc::ENOENT => {
            return Ok(Evidence::NotTracked)
        }
        // Not `to_io`, which negates the code without a check: i32::MIN overflows.
        NetlinkPayload::Error(e) => {
            return Err(match e.raw_code().checked_neg() {
                Some(errno) => netlink("answer")(std::io::Error::from_raw_os_error(errno)),
                None => bad(format!("error code {}", e.raw_code())),
            })
        }
        NetlinkPayload::InnerMessage(NetfilterMessage {
            inner: NetfilterMessageInner::Conntrack(ConntrackMessage::New(attributes)),
            ..
        }) => attributes,
        other => return Err(bad(format!("unexpected message {other:?}"))),
    };
    let reply = attributes
        .iter()
        .find_map(|a| match a {
            ConntrackAttribute::CtaTupleReply(tuple) => Some(tuple),
            _ => None,
        })
        .ok_or_else(|| bad("the entry has no reply tuple".into()))?;
    let ip = reply.iter().find_map(|t| match t {
        Tuple::Ip(parts) => parts.iter().find_map(|p| match p {
            IPTuple::DestinationAddress(ip) => Some(*ip),
            _ => None,
        }),
        _ => None,
    });
    let port = reply.iter().find_map(|t| match t {
        Tuple::Proto(parts) => parts.iter().find_map(|p| match p {
            ProtoTuple::DestinationPort(port) => Some(*port),
            _ => None,
        }),
        _ => None,
    });
    let (Some(ip), Some(port)) = (ip, port) else {
        return Err(bad("the reply tuple has no destination".into()));
    };
    let to = SocketAddr::new(ip, port);
    Ok(if to.ip() == flow.source.ip() {
        Evidence::NotTranslated
    } else {
        Evidence::Translated { to }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(source: &str, destination: &str) -> Flow {
        Flow {
            transport: Transport::Udp,
            source: source.parse().unwrap(),
            destination: destination.parse().unwrap(),
        }
    }

    fn v4() -> Flow {
        flow("198.18.2.10:40000", "198.19.10.1:3478")
    }

    fn v6() -> Flow {
        flow("[2001:2:0:1802::10]:40000", "[2001:2:0:1910::1]:3478")
    }

    fn tuple(src: SocketAddr, dst: SocketAddr) -> Vec<Tuple> {
        vec![
            Tuple::Ip(vec![
                IPTuple::SourceAddress(src.ip()),
                IPTuple::DestinationAddress(dst.ip()),
            ]),
            Tuple::Proto(vec![
                ProtoTuple::Protocol(Protocol::Udp),
                ProtoTuple::SourcePort(src.port()),
                ProtoTuple::DestinationPort(dst.port()),
            ]),
        ]
    }

    fn family(flow: &Flow) -> NetfilterProtoFamily {
        if flow.source.is_ipv4() {
            NetfilterProtoFamily::IPv4
        } else {
            NetfilterProtoFamily::IPv6
        }
    }

    /// What the kernel sends back for a GET of `flow`: a NEW message with both tuples, in the
    /// flow's family.
    fn kernel_answer(flow: &Flow, reply_destination: SocketAddr) -> Vec<u8> {
        let mut message = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::from(NetfilterMessage::new(
                NetfilterHeader::new(family(flow), 0, 0),
                ConntrackMessage::New(vec![
                    ConntrackAttribute::CtaTupleOrig(tuple(flow.source, flow.destination)),
                    ConntrackAttribute::CtaTupleReply(tuple(flow.destination, reply_destination)),
                ]),
            )),
        );
        message.finalize();
        let mut buf = vec![0u8; message.buffer_len()];
        message.serialize(&mut buf);
        buf
    }

    /// A reply tuple addressed to the node is SNAT, for IPv4, and NAT66 for IPv6.
    #[test]
    fn a_reply_to_another_address_is_snat_in_either_family() {
        for (flow, node) in [
            (v4(), "198.18.1.4:40000"),
            (v6(), "[2001:2:0:1801::4]:40000"),
        ] {
            let node = node.parse().unwrap();
            assert_eq!(
                decode_reply(&kernel_answer(&flow, node), &flow),
                Ok(Evidence::Translated { to: node })
            );
            assert_eq!(
                decode_reply(&kernel_answer(&flow, flow.source), &flow),
                Ok(Evidence::NotTranslated)
            );
        }
    }

    #[test]
    fn the_request_round_trips_through_the_crate_in_its_family() {
        for flow in [v4(), v6()] {
            let request = encode_get(&flow);
            let parsed = NetlinkMessage::<NetfilterMessage>::deserialize(&request).unwrap();
            assert_eq!(parsed.header.flags, NLM_F_REQUEST);
            let NetlinkPayload::InnerMessage(message) = parsed.payload else {
                panic!("not a netfilter message: {parsed:?}");
            };
            assert_eq!(message.header.family, family(&flow));
            let NetfilterMessageInner::Conntrack(ConntrackMessage::Get(attributes)) = message.inner
            else {
                panic!("not a conntrack GET: {:?}", message.inner);
            };
            let want = ConntrackAttribute::CtaTupleOrig(tuple(flow.source, flow.destination));
            assert_eq!(attributes, [want]);
        }
    }

    #[test]
    fn garbage_is_an_error() {
        let flow = v4();
        assert!(decode_reply(&[1, 2, 3], &flow).is_err());
        let mut truncated = kernel_answer(&flow, flow.source);
        truncated.truncate(truncated.len() - 6);
        assert!(decode_reply(&truncated, &flow).is_err());
    }

    /// Answers captured from kernel 6.18 for entries made with `conntrack -I` (the kept fuzz
    /// corpus), and two broken ones.
    #[test]
    fn real_kernel_answers_are_read_in_both_families() {
        macro_rules! kept {
            ($name:literal) => {
                include_bytes!(concat!("../../fuzz/corpus/conntrack_reply/", $name)).as_slice()
            };
        }
        let at = |text: &str| -> SocketAddr { text.parse().unwrap() };
        let (v4, v6) = (v4(), v6());
        let read = [
            (kept!("kernel-6.18-ipv4-masquerade"), v4),
            (kept!("kernel-6.18-ipv6-nat66"), v6),
            (
                kept!("kernel-6.18-ipv6-not-translated"),
                Flow {
                    source: at("[2001:2:0:1802::10]:40001"),
                    ..v6
                },
            ),
            (kept!("kernel-6.18-enoent"), v6),
        ]
        .map(|(answer, flow)| decode_reply(answer, &flow));
        assert_eq!(
            read,
            [
                Ok(Evidence::Translated {
                    to: at("198.18.1.4:40000")
                }),
                Ok(Evidence::Translated {
                    to: at("[2001:2:0:1801::4]:40000")
                }),
                Ok(Evidence::NotTranslated),
                Ok(Evidence::NotTracked),
            ]
        );
        assert!(decode_reply(kept!("truncated-ipv6-address"), &v6).is_err());
        assert!(decode_reply(kept!("ipv6-address-of-9-bytes"), &v6).is_err());
        // Found by the fuzzer: an error whose code cannot be negated, and an nftables message,
        // whose parser in the crate panicked.
        for (answer, says) in [
            (kept!("error-code-i32-min"), "error code -2147483648"),
            (
                kept!("nftables-message-not-an-answer"),
                "not a conntrack entry",
            ),
        ] {
            let read = decode_reply(answer, &v6);
            let refused = read.as_ref().is_err_and(|e| e.to_string().ends_with(says));
            assert!(refused, "{read:?}");
        }
    }

    /// Every truncation and every flipped byte of a real-shaped answer, of either family: an
    /// error or a reading, never a panic, and a translation only to another address.
    #[test]
    fn a_mangled_answer_never_panics() {
        for flow in [v4(), v6()] {
            let answer = kernel_answer(&flow, flow.source);
            for len in 0..answer.len() {
                let _ = decode_reply(&answer[..len], &flow);
            }
            for at in 0..answer.len() {
                for flip in [0x01, 0x80, 0xff] {
                    let mut mangled = answer.clone();
                    mangled[at] ^= flip;
                    if let Ok(Evidence::Translated { to }) = decode_reply(&mangled, &flow) {
                        assert_ne!(to.ip(), flow.source.ip());
                    }
                }
            }
        }
    }
}
