//! The kernel floor: a minimal prober making the socket calls of the agent's `tcp`, `icmp`, `dns`
//! and `http` rounds on the lab workload, with nothing around them, for `vs_blackbox` to measure.
//!
//! Each target runs on its own one-second schedule, spread over the second and with the agent's
//! 500 ms timeout, on one current-thread runtime as the agent's: a TCP connect then close; an
//! echo request on one ICMP socket shared by every target (DGRAM if the namespace allows it, else
//! raw, as the agent picks), its reply read by one task; a DNS query for the workload's name from
//! a fresh UDP socket, as the agent sends each query; for HTTP a fresh TCP
//! connection, a GET written in one piece, the whole response read until the server closes,
//! then close. It checks only what tells a success from a failure (connected; an echo reply of
//! its own; an answer with the query's id and NOERROR; a `200` status line), builds no report
//! and keeps no series.
//!
//! `vs_blackbox` starts it in the pod namespace as `floor --bench --tcp N --icmp N --dns N
//! --http N` and
//! reads its progress lines (`floor: ok N failed N`, every 200 ms) for the probes it ran.

#[path = "../tests/lab/mod.rs"]
mod lab;

mod common;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio::time::{interval_at, timeout, Instant, MissedTickBehavior};

use common::{Kind, Target, Workload, HTTP_PATH, TCP_PORT};
use lab::dns::DB_NAME;

const TIMEOUT: Duration = Duration::from_millis(500);
const EVERY: Duration = Duration::from_secs(1);

fn main() {
    let (mut tcp, mut icmp, mut dns, mut http) = (0, 0, 0, 0);
    let run = common::options(
        "floor",
        "bench/vs-blackbox.sh",
        &mut [
            ("tcp", &mut tcp),
            ("icmp", &mut icmp),
            ("dns", &mut dns),
            ("http", &mut http),
        ],
    );
    let count = |n: u64| usize::try_from(n).expect("a count that fits in memory");
    let workload = Workload {
        tcp: count(tcp),
        icmp: count(icmp),
        dns: count(dns),
        http: count(http),
    };
    if !run || workload.total() == 0 {
        println!("floor: nothing to probe; bench/vs-blackbox.sh runs it in the lab");
        return;
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(tokio::task::LocalSet::new().run_until(probe(workload)));
}

/// Probes `workload` until killed, printing the running totals.
async fn probe(workload: Workload) {
    let counts = Rc::new((Cell::new(0u64), Cell::new(0u64)));
    let pinger = Rc::new(Pinger::open().expect("an ICMP socket"));
    tokio::task::spawn_local(pinger.clone().receive());
    let targets = workload.targets();
    let n = targets.len() as u32;
    let start = Instant::now();
    for (i, target) in targets.into_iter().enumerate() {
        let (counts, pinger) = (counts.clone(), pinger.clone());
        let mut ticks = interval_at(start + EVERY * i as u32 / n, EVERY);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        tokio::task::spawn_local(async move {
            loop {
                ticks.tick().await;
                let ok = matches!(
                    timeout(TIMEOUT, round(&target, &pinger)).await,
                    Ok(Ok(true))
                );
                let cell = if ok { &counts.0 } else { &counts.1 };
                cell.set(cell.get() + 1);
            }
        });
    }
    let mut said = (0, 0);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = (counts.0.get(), counts.1.get());
        if now != said {
            println!("floor: ok {} failed {}", now.0, now.1);
            said = now;
        }
    }
}

async fn round(target: &Target, pinger: &Pinger) -> io::Result<bool> {
    match target.kind {
        Kind::Tcp => TcpStream::connect((target.addr, TCP_PORT))
            .await
            .map(|_| true),
        Kind::Icmp => pinger.ping(target.addr).await,
        Kind::Dns => ask(target.addr).await,
        Kind::Http => get(target.addr).await,
    }
}

/// A GET over a fresh connection, the response read to its end (the server closes, as the
/// request asks); true for a `200` status line.
async fn get(server: Ipv4Addr) -> io::Result<bool> {
    let mut stream = TcpStream::connect((server, 80)).await?;
    let request = format!(
        "GET {HTTP_PATH} HTTP/1.1\r\nHost: {server}\r\nUser-Agent: floor\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::with_capacity(1024);
    stream.read_to_end(&mut response).await?;
    Ok(response.starts_with(b"HTTP/1.1 200 "))
}

/// One A query from a fresh socket; true for an answer to it with NOERROR and a record.
async fn ask(server: Ipv4Addr) -> io::Result<bool> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await?;
    let id = rand_id();
    let mut query = Vec::with_capacity(64);
    query.extend_from_slice(&id.to_be_bytes());
    query.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in DB_NAME.trim_end_matches('.').split('.') {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    socket.send_to(&query, (server, 53)).await?;
    let mut buf = [0u8; 512];
    loop {
        let (n, from) = socket.recv_from(&mut buf).await?;
        if from == SocketAddr::from((server, 53)) && n >= 12 && buf[..2] == id.to_be_bytes() {
            let rcode = buf[3] & 0x0f;
            let answers = u16::from_be_bytes([buf[6], buf[7]]);
            return Ok(rcode == 0 && answers > 0);
        }
    }
}

fn rand_id() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now()) as u16
}

/// One ICMP socket for every echo target, and the requests waiting for their replies.
struct Pinger {
    socket: UdpSocket,
    /// A raw socket reads IP headers and every echo reply of the namespace; a DGRAM one reads
    /// only its own replies, whose identifier the kernel set.
    raw: bool,
    ident: u16,
    next_sequence: Cell<u16>,
    waiting: RefCell<HashMap<(Ipv4Addr, u16), oneshot::Sender<()>>>,
}

impl Pinger {
    fn open() -> io::Result<Pinger> {
        let open = |kind| Socket::new(Domain::IPV4, kind, Some(Protocol::ICMPV4));
        let (socket, raw) = match open(Type::DGRAM) {
            Ok(socket) => (socket, false),
            Err(_) => (open(Type::RAW)?, true),
        };
        socket.set_nonblocking(true)?;
        Ok(Pinger {
            socket: UdpSocket::from_std(socket.into())?,
            raw,
            ident: std::process::id() as u16,
            next_sequence: Cell::new(0),
            waiting: RefCell::new(HashMap::new()),
        })
    }

    async fn ping(&self, to: Ipv4Addr) -> io::Result<bool> {
        let sequence = self.next_sequence.get();
        self.next_sequence.set(sequence.wrapping_add(1));
        let mut request = [0u8; 8 + 56];
        request[0] = 8;
        request[4..6].copy_from_slice(&self.ident.to_be_bytes());
        request[6..8].copy_from_slice(&sequence.to_be_bytes());
        let sum = checksum(&request);
        request[2..4].copy_from_slice(&sum.to_be_bytes());
        let (tx, rx) = oneshot::channel();
        self.waiting.borrow_mut().insert((to, sequence), tx);
        let _forget = Waiting(self, (to, sequence));
        self.socket.send_to(&request, (to, 0)).await?;
        Ok(rx.await.is_ok())
    }

    /// Hands each echo reply to the request waiting for it.
    async fn receive(self: Rc<Self>) {
        let mut buf = [0u8; 2048];
        loop {
            let Ok((n, from)) = self.socket.recv_from(&mut buf).await else {
                continue;
            };
            let IpAddr::V4(from) = from.ip() else {
                continue;
            };
            let skip = if self.raw {
                usize::from(buf[0] & 0x0f) * 4
            } else {
                0
            };
            let Some(icmp) = buf[..n].get(skip..skip + 8) else {
                continue;
            };
            let ident = u16::from_be_bytes([icmp[4], icmp[5]]);
            if icmp[0] != 0 || (self.raw && ident != self.ident) {
                continue;
            }
            let sequence = u16::from_be_bytes([icmp[6], icmp[7]]);
            let waiting = self.waiting.borrow_mut().remove(&(from, sequence));
            if let Some(tx) = waiting {
                let _ = tx.send(());
            }
        }
    }
}

/// A request that stops waiting, answered or timed out, leaves no entry behind.
struct Waiting<'a>(&'a Pinger, (Ipv4Addr, u16));

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.borrow_mut().remove(&self.1);
    }
}

/// The Internet checksum (RFC 1071), which a raw socket leaves to its sender.
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
