//! A DNS question over plain UDP, written by hand: one datagram out, the first one that answers
//! it back.
//!
//! hickory's client (`UdpClientStream` behind a `DnsExchange`) spawns a background task, a
//! channel and a retry timer for every exchange and copies each datagram on its way through
//! them: most of the probe's user time for its one question. The probe needs none of that, so
//! only the socket and the matching are written here; the message is still encoded and decoded by
//! hickory's proto, and an answer is matched to its query as hickory's client does (source
//! address, ID, then question), so a spoofed or late answer is ignored the same way. TCP and DNS
//! over TLS stay on hickory's client.
//!
//! The socket is not connected: a connected one would report a closed port's ICMP error as
//! `refused`, where the probe has always reported a UDP query nobody answers as a `timeout`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use hickory_net::proto::op::{Message, MessageType};
use hickory_net::proto::ProtoError;
use hickory_net::udp::MAX_RECEIVE_BUFFER_SIZE;
use hickory_net::NetError;
use tokio::net::UdpSocket;

/// Sends `query` to `server` from a fresh socket on a port the kernel picks at random, once (no
/// resend), and waits for its answer; the caller's deadline ends the wait.
pub(super) async fn exchange(server: SocketAddr, query: &Message) -> Result<Message, NetError> {
    let wire = query.to_vec()?;
    let any = match server {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let socket = UdpSocket::bind(any).await?;
    socket.send_to(&wire, server).await?;
    // As much as the query's EDNS record says it takes, as hickory reads.
    let mut buf = vec![0; MAX_RECEIVE_BUFFER_SIZE.min(usize::from(query.max_payload()))];
    loop {
        let (len, from) = socket.recv_from(&mut buf).await?;
        if from.ip().to_canonical() != server.ip().to_canonical() || from.port() != server.port() {
            continue;
        }
        if let Some(answer) = answer_to(query, &buf[..len]) {
            return answer;
        }
    }
}

/// What a datagram from the server makes of `query`: `None` when it answers another query (too
/// short for an ID, another ID, or another question: a late answer to an earlier round, or a
/// spoofer's); else the answer, or why it does not decode. The ID is checked before anything is
/// decoded, so a stranger's bytes cost no parsing.
pub(super) fn answer_to(query: &Message, datagram: &[u8]) -> Option<Result<Message, NetError>> {
    let id = datagram
        .first_chunk::<2>()
        .map(|id| u16::from_be_bytes(*id))?;
    if id != query.id {
        return None;
    }
    let answer = match Message::from_vec(datagram) {
        Ok(answer) if answer.message_type == MessageType::Response => answer,
        Ok(_) => return Some(Err(ProtoError::NotAResponse.into())),
        Err(e) => return Some(Err(ProtoError::from(e).into())),
    };
    let asked = &query.queries;
    let same_question = answer.queries.len() == asked.len()
        && answer
            .queries
            .iter()
            .all(|question| asked.contains(question));
    same_question.then_some(Ok(answer))
}
