//! The conntrack piece: the host's conntrack entry for a flow like the check's, sent now from
//! the namespace where the check failed. A reply tuple addressed elsewhere than the flow's own
//! source is SNAT or masquerade on the way out.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

use super::{Piece, What};
use crate::net::conntrack::{lookup, ConntrackError, Evidence, Flow};
use crate::net::Transport;
use crate::netns::{NetnsContext, NetnsId};
use crate::probe::traceroute::UDP_BASE_PORT;

/// Lookups of a flow not yet in the table: the datagram crosses into the host namespace
/// asynchronously, so its entry may appear a moment after the send.
const LOOKUPS: u32 = 5;
const BETWEEN_LOOKUPS: Duration = Duration::from_millis(20);

pub(super) async fn piece(
    ctx: &NetnsContext,
    ip: IpAddr,
    port: Option<u16>,
    budget: Duration,
) -> Piece {
    let destination = SocketAddr::new(ip, port.unwrap_or(UDP_BASE_PORT));
    let source = format!(
        "conntrack GET over netlink in the host namespace, for a UDP datagram sent from the {} \
         namespace to {destination}",
        ctx.id
    );
    let unavailable =
        |why: String| Piece::unavailable(What::Conntrack, NetnsId::Host, &source, why);
    let socket = match datagram(destination).await {
        Ok(socket) => socket,
        Err(why) => return unavailable(why),
    };
    let flow = match socket.local_addr() {
        Ok(local) => Flow {
            transport: Transport::Udp,
            source: local,
            destination,
        },
        Err(e) => return unavailable(format!("read the datagram's source address: {e}")),
    };
    let looked = tokio::time::timeout(budget, ctx.in_host(move || settled(flow))).await;
    drop(socket);
    match looked {
        Ok(Ok(Ok(evidence))) => Piece::text(
            What::Conntrack,
            NetnsId::Host,
            &source,
            text(&flow, evidence),
        ),
        Ok(Ok(Err(ConntrackError::PermissionDenied))) => {
            unavailable("needs CAP_NET_ADMIN in the host namespace".into())
        }
        Ok(Ok(Err(e))) => unavailable(format!("conntrack unavailable: {e}")),
        Ok(Err(e)) => unavailable(format!("namespace host not available: {e}")),
        Err(_) => unavailable(format!(
            "no answer within {}",
            humantime::format_duration(budget)
        )),
    }
}

/// Sends one small datagram to `destination` from a fresh socket, kept open while the entry is
/// read so that its port is not reused meanwhile.
async fn datagram(destination: SocketAddr) -> Result<UdpSocket, String> {
    let any: SocketAddr = match destination.ip() {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(any)
        .await
        .map_err(|e| format!("open a UDP socket: {e}"))?;
    socket
        .connect(destination)
        .await
        .map_err(|e| format!("no way to {destination}: {e}"))?;
    socket
        .send(b"hybridprobe evidence")
        .await
        .map_err(|e| format!("send a datagram to {destination}: {e}"))?;
    Ok(socket)
}

/// The flow's entry, looked up again a few times while it is not (yet) there.
async fn settled(flow: Flow) -> Result<Evidence, ConntrackError> {
    let mut found = lookup(&flow);
    for _ in 1..LOOKUPS {
        if !matches!(found, Ok(Evidence::NotTracked)) {
            break;
        }
        tokio::time::sleep(BETWEEN_LOOKUPS).await;
        found = lookup(&flow);
    }
    found
}

fn text(flow: &Flow, evidence: Evidence) -> String {
    match evidence {
        Evidence::Translated { to } => format!(
            "{flow}: replies go to {to}, not {}: the source was rewritten on the way out \
             (SNAT or masquerade)",
            flow.source
        ),
        Evidence::NotTranslated => {
            format!("{flow}: replies go back to {}: not translated", flow.source)
        }
        Evidence::NotTracked => {
            format!("{flow}: no entry in the host's table: not tracked there, so not translated")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewritten_reply_tuple_reads_as_snat() {
        let flow = Flow {
            transport: Transport::Udp,
            source: "198.18.2.10:40000".parse().unwrap(),
            destination: "198.19.10.1:389".parse().unwrap(),
        };
        let to = "198.18.1.4:40000".parse().unwrap();
        assert_eq!(
            text(&flow, Evidence::Translated { to }),
            "udp 198.18.2.10:40000 -> 198.19.10.1:389: replies go to 198.18.1.4:40000, not \
             198.18.2.10:40000: the source was rewritten on the way out (SNAT or masquerade)"
        );
        assert!(text(&flow, Evidence::NotTranslated).ends_with("not translated"));
    }
}
