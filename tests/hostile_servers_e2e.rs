//! End to end, hostile servers: a DNS server answering garbage, and targets that accept and
//! never answer. Every probe fails saying why, within its round, and the agent's descriptors
//! stay flat.

mod lab;
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use lab::{Host, Lab, ONPREM_IP};
use serde_json::Value;
use support::{assert_alive, closed, open_fds, pod_only, result, runs, Agent};

/// A small deterministic generator, so a failing run can be replayed.
struct XorShift(u64);

impl XorShift {
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0 as u8
            })
            .collect()
    }
}

/// What a misbehaving TCP server does with a connection it accepted; the connections it returns
/// are held open until the server stops.
type TcpBehaviour = fn(TcpStream, &mut XorShift) -> Option<TcpStream>;
/// What a misbehaving UDP server sends back for a datagram, if anything.
type UdpBehaviour = fn(&[u8], &mut XorShift) -> Option<Vec<u8>>;

/// Misbehaving servers on the on-prem host, each on its own thread until dropped.
struct Misbehaving {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<usize>>,
}

impl Misbehaving {
    fn new() -> Misbehaving {
        Misbehaving {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        }
    }

    fn udp(&mut self, lab: &Lab, port: u16, behaviour: UdpBehaviour) {
        let addr = SocketAddr::from((ONPREM_IP, port));
        let socket = lab.in_ns(Host::Onprem, move || UdpSocket::bind(addr).unwrap());
        socket.set_nonblocking(true).unwrap();
        let stop = self.stop.clone();
        self.threads.push(std::thread::spawn(move || {
            let mut rng = XorShift(u64::from(port) * 0x9E37_79B9);
            let mut buf = [0u8; 1500];
            while !stop.load(Ordering::Relaxed) {
                match socket.recv_from(&mut buf) {
                    Ok((len, peer)) => {
                        if let Some(answer) = behaviour(&buf[..len], &mut rng) {
                            let _ = socket.send_to(&answer, peer);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            0
        }));
    }

    /// Returns, when stopped, how many of the connections it held the client had closed.
    fn tcp(&mut self, lab: &Lab, port: u16, behaviour: TcpBehaviour) {
        let listener: TcpListener =
            lab.tcp_listen(Host::Onprem, SocketAddr::from((ONPREM_IP, port)));
        listener.set_nonblocking(true).unwrap();
        let stop = self.stop.clone();
        self.threads.push(std::thread::spawn(move || {
            let mut rng = XorShift(u64::from(port) * 0x9E37_79B9);
            let mut held = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        stream
                            .set_read_timeout(Some(Duration::from_secs(1)))
                            .unwrap();
                        held.extend(behaviour(stream, &mut rng));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            held.iter().filter(|s| closed(s)).count()
        }));
    }

    /// Stops every server; returns what the TCP ones counted.
    fn stop(self) -> Vec<usize> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect()
    }
}

/// The DNS query in a TCP stream (after its two-byte length), or `None`.
fn read_tcp_query(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).ok()?;
    let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut query).ok()?;
    Some(query)
}

fn framed(message: &[u8]) -> Vec<u8> {
    let mut out = (message.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(message);
    out
}

/// The query's ID, then random bytes: gets past the ID check into the decoder.
fn random_after_id(query: &[u8], rng: &mut XorShift) -> Option<Vec<u8>> {
    let mut answer = query.get(..2)?.to_vec();
    let len = 12 + usize::from(rng.bytes(1)[0]);
    answer.extend(rng.bytes(len));
    Some(answer)
}

/// A response to the query that declares one answer and stops in the middle of it.
fn truncated(query: &[u8], _: &mut XorShift) -> Option<Vec<u8>> {
    let mut answer = query.to_vec();
    *answer.get_mut(2)? = 0x81; // QR, RD
    *answer.get_mut(3)? = 0x80; // RA, NOERROR
    answer[6..8].copy_from_slice(&1u16.to_be_bytes()); // ANCOUNT
    answer[10..12].copy_from_slice(&0u16.to_be_bytes()); // no EDNS record follows
    let question_end = answer.len() - if query[11] > 0 { 11 } else { 0 };
    answer.truncate(question_end);
    answer.extend_from_slice(&[0xC0, 0x0C, 0x00, 0x01, 0x00]);
    Some(answer)
}

/// A well-formed answer with somebody else's ID, as a spoofer would send.
fn wrong_id(query: &[u8], rng: &mut XorShift) -> Option<Vec<u8>> {
    let mut answer = truncated(query, rng)?;
    answer.truncate(answer.len() - 5);
    answer.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 19, 10, 5]);
    answer[0] ^= 0xFF;
    Some(answer)
}

fn tcp_dns(mut stream: TcpStream, rng: &mut XorShift, answer: UdpBehaviour) -> Option<TcpStream> {
    let query = read_tcp_query(&mut stream)?;
    let _ = stream.write_all(&framed(&answer(&query, rng)?));
    None
}

/// Says 65535 bytes follow, sends a few, and closes.
fn huge_length(mut stream: TcpStream, rng: &mut XorShift) -> Option<TcpStream> {
    let query = read_tcp_query(&mut stream)?;
    let mut answer = vec![0xFF, 0xFF];
    answer.extend_from_slice(&query[..2]);
    answer.extend(rng.bytes(100));
    let _ = stream.write_all(&answer);
    None
}

fn detail_of(verdict: &Value, probe: &str) -> (String, String) {
    result(verdict, probe, "pod")
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn dns_server_answering_garbage() {
    let Some(lab) = Lab::new("hostile-dns") else {
        return;
    };
    let mut servers = Misbehaving::new();
    servers.udp(&lab, 5301, random_after_id);
    servers.tcp(&lab, 5301, |s, rng| tcp_dns(s, rng, random_after_id));
    servers.udp(&lab, 5302, truncated);
    servers.tcp(&lab, 5302, |s, rng| tcp_dns(s, rng, truncated));
    servers.udp(&lab, 5303, wrong_id);
    servers.tcp(&lab, 5303, |s, rng| tcp_dns(s, rng, wrong_id));
    servers.tcp(&lab, 5304, huge_length);
    let probe = |name: &str, port: u16, transport: &str| {
        format!(
            "  - name: {name}\n    dns: {{ query: db.corp.example, servers: [\"{ONPREM_IP}:{port}\"], transport: {transport} }}\n"
        )
    };
    let config = pod_only(
        &[
            probe("random-udp", 5301, "udp"),
            probe("random-tcp", 5301, "tcp"),
            probe("truncated-udp", 5302, "udp"),
            probe("truncated-tcp", 5302, "tcp"),
            probe("wrong-id-udp", 5303, "udp"),
            probe("wrong-id-tcp", 5303, "tcp"),
            probe("huge-length-tcp", 5304, "tcp"),
        ]
        .concat(),
    );
    let agent = Agent::start(&lab, &config);
    agent.wait_ready();
    let wrong_id_udp = format!("A db.corp.example: {ONPREM_IP}:5303 udp: timeout");
    let expected = [
        ("random-udp", "error", "udp: malformed answer: "),
        ("truncated-udp", "error", "udp: malformed answer: "),
        // Over TCP hickory drops what it cannot decode, or cannot match to the query, and sees
        // the server hang up.
        (
            "random-tcp",
            "error",
            "tcp: the server closed the connection without a valid answer",
        ),
        (
            "truncated-tcp",
            "error",
            "tcp: the server closed the connection without a valid answer",
        ),
        (
            "wrong-id-tcp",
            "error",
            "tcp: the server closed the connection without a valid answer",
        ),
        (
            "huge-length-tcp",
            "error",
            "without a valid answer (closed while reading message)",
        ),
        // An answer with another query's ID is not this query's answer: like a lost one, a
        // timeout.
        ("wrong-id-udp", "timeout", &wrong_id_udp),
    ];
    for (probe, result, _) in expected {
        agent.wait_check(probe, "pod", result, Duration::from_secs(10));
    }
    let (code, verdict) = agent.healthz_json();
    assert_eq!(code, 503);
    for (probe, result, says) in expected {
        let (got, detail) = detail_of(&verdict, probe);
        assert_eq!(got, result, "{probe}: {detail}");
        assert!(detail.contains(says), "{probe}: {detail}");
    }
    assert_eq!(detail_of(&verdict, "wrong-id-udp").1, wrong_id_udp);
    assert_eq!(agent.get("/livez").0, 200);
    assert_alive(&lab, agent.handle);
    servers.stop();
}

/// Holds every connection it accepts, reading nothing and sending nothing.
fn hold(stream: TcpStream, _: &mut XorShift) -> Option<TcpStream> {
    Some(stream)
}

fn silent(_: &[u8], _: &mut XorShift) -> Option<Vec<u8>> {
    None
}

/// Targets that accept and never answer: every probe that waits for an answer times out within
/// its round, and each round's sockets are closed, so the agent's descriptors stay flat.
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn targets_that_accept_and_never_answer() {
    let Some(lab) = Lab::new("hostile-silent") else {
        return;
    };
    const PORT_HOLD: u16 = 7001;
    let mut servers = Misbehaving::new();
    servers.tcp(&lab, PORT_HOLD, hold);
    servers.udp(&lab, PORT_HOLD, silent);
    let target = SocketAddr::from((ONPREM_IP, PORT_HOLD));
    let config = pod_only(&format!(
        r#"  - name: tcp-held
    tcp: {{ target: "{target}" }}
  - name: whoami-held
    source_ip: {{ http: "http://{target}/whoami" }}
  - name: stun-tcp-held
    source_ip: {{ stun: "{target}", stun_transport: tcp }}
  - name: stun-udp-silent
    source_ip: {{ stun: "{target}" }}
  - name: dns-tcp-held
    dns: {{ query: db.corp.example, servers: ["{target}"], transport: tcp }}
"#
    ));
    let agent = Agent::start(&lab, &config);
    agent.wait_ready();
    let pid = lab.pid(agent.handle);
    // Warm-up: a few rounds of each, so the descriptors counted next are the steady ones.
    for probe in [
        "tcp-held",
        "whoami-held",
        "stun-tcp-held",
        "stun-udp-silent",
        "dns-tcp-held",
    ] {
        agent.wait_rounds(probe, "pod", 3, Duration::from_secs(10));
    }
    let fds = open_fds(pid);
    let runs_before = runs(&agent.metrics(), "whoami-held", "pod", "timeout");
    std::thread::sleep(Duration::from_secs(8));

    let (_, verdict) = agent.healthz_json();
    eprintln!("{verdict:#}");
    // Connecting is all a tcp check asks, and the connection is closed at once.
    assert_eq!(detail_of(&verdict, "tcp-held").0, "success");
    for (probe, says) in [
        ("whoami-held", "no answer"),
        ("stun-tcp-held", "no answer"),
        ("stun-udp-silent", "no answer to"),
        ("dns-tcp-held", "timeout"),
    ] {
        let (got, detail) = detail_of(&verdict, probe);
        assert_eq!(got, "timeout", "{probe}: {detail}");
        assert!(detail.contains(says), "{probe}: {detail}");
    }
    let metrics = agent.metrics();
    let rounds = runs(&metrics, "whoami-held", "pod", "timeout") - runs_before;
    assert!(rounds >= 5.0, "only {rounds} rounds in 8 s: a round hung");
    let fds_after = open_fds(pid);
    eprintln!("agent descriptors: {fds} after warm-up, {fds_after} after {rounds} more rounds");
    assert!(
        fds_after <= fds + 3,
        "descriptors grew from {fds} to {fds_after} over {rounds} rounds"
    );
    assert_alive(&lab, agent.handle);
    lab.stop(agent.handle);
    // The agent closed every connection the server held, but for the rounds in flight.
    let held_closed = servers.stop()[0];
    eprintln!("connections the agent closed on the holding server: {held_closed}");
    assert!(
        held_closed as f64 >= 4.0 * rounds,
        "the agent left connections open: only {held_closed} closed"
    );
}
