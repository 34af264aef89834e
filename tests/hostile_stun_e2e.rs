//! End to end, hostile clients: the reflector flooded with valid STUN requests and idle TCP
//! connections by one source still answers the others, within its memory, and says so in its
//! metrics.

mod lab;
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use hybridprobe::net::stun;
use lab::{Host, Lab, NODE_IP, ONPREM_IP};
use support::{assert_alive, closed, connections, metric, status_kib, BIN};

const REFLECT_PORT: u16 = 3479;
const WHOAMI_PORT: u16 = 8080;

fn reflector_requests(lab: &Lab, transport: &str, outcome: &str) -> f64 {
    let url = format!("http://{ONPREM_IP}:{WHOAMI_PORT}/metrics");
    let (code, body) = lab.http_get(Host::Onprem, &url, false);
    assert_eq!(code, 200, "{body}");
    metric(
        &body,
        "hybridprobe_reflect_requests_total",
        &[("transport", transport), ("outcome", outcome)],
    )
    .unwrap_or_else(|| panic!("no {transport}/{outcome} in {body}"))
}

/// A STUN Binding exchange over TCP from `h`: the address the server saw.
fn stun_tcp(lab: &Lab, h: Host, server: SocketAddr) -> Option<SocketAddr> {
    let mut stream = connections(lab, h, server, 1).remove(0);
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let (id, request) = stun::new_request().unwrap();
    stream.write_all(&request).ok()?;
    let mut answer = [0u8; 32];
    stream.read_exact(&mut answer).ok()?;
    stun::decode_response(&answer, &id).ok()
}

/// Sends valid Binding requests from `socket` as fast as it goes for `secs`; returns how many
/// were sent and how many answered.
fn stun_flood(socket: UdpSocket, secs: u64) -> (usize, usize) {
    socket.set_nonblocking(true).unwrap();
    let end = Instant::now() + Duration::from_secs(secs);
    let (mut sent, mut answered) = (0, 0);
    let mut buf = [0u8; 1500];
    while Instant::now() < end {
        let (_, request) = stun::new_request().unwrap();
        if socket.send(&request).is_ok() {
            sent += 1;
        }
        while let Ok(len) = socket.recv(&mut buf) {
            answered += usize::from(len > 0);
        }
        if sent % 64 == 0 {
            // Paced so the receive buffers keep up and every request reaches the reflector.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    while let Ok(len) = socket.recv(&mut buf) {
        answered += usize::from(len > 0);
    }
    (sent, answered)
}

/// Extends source_ip_e2e (malformed floods, one request from a disallowed source, the rate limit
/// at small scale) with floods of valid requests and of TCP connections.
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn reflector_flooded_by_one_source_still_answers_the_others() {
    let Some(lab) = Lab::new("hostile-reflect") else {
        return;
    };
    let server = SocketAddr::from((ONPREM_IP, REFLECT_PORT));
    let (listen, whoami) = (
        server.to_string(),
        SocketAddr::from((ONPREM_IP, WHOAMI_PORT)).to_string(),
    );
    let (rate, burst) = (20.0, 20.0);
    let reflector = lab.spawn(
        Host::Onprem,
        BIN,
        &[
            "reflect",
            "--listen",
            &listen,
            "--http",
            &whoami,
            "--rate",
            "20",
            "--burst",
            "20",
            "--allow",
            "198.18.2.10",
            "--allow",
            "198.18.1.4",
            "--allow",
            "198.19.10.1",
        ],
        &[],
    );
    lab.wait_until("the reflector to answer", Duration::from_secs(10), || {
        lab.stun_binding(Host::Onprem, server, Duration::from_millis(200))
            .is_some()
    });
    let pid = lab.pid(reflector);
    let rss_before = status_kib(pid, "VmRSS:");

    // The pod floods with valid requests over UDP and with TCP connections that never ask.
    let flood_socket = lab.udp_socket(Host::Pod);
    flood_socket.connect(server).unwrap();
    let started = Instant::now();
    let flood = std::thread::spawn(move || stun_flood(flood_socket, 4));
    let idle = connections(&lab, Host::Pod, server, 300);
    // Meanwhile the node, another source, is answered over UDP, TCP and HTTP.
    let node = Some(SocketAddr::from((NODE_IP, 0)).ip());
    assert_eq!(
        lab.stun_binding(Host::Node, server, Duration::from_secs(2))
            .map(|a| a.ip()),
        node
    );
    assert_eq!(stun_tcp(&lab, Host::Node, server).map(|a| a.ip()), node);
    let url = format!("http://{whoami}/whoami");
    assert_eq!(
        lab.http_get(Host::Node, &url, false),
        (200, format!("{NODE_IP}\n"))
    );
    let (sent, answered) = flood.join().unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!("flood: {sent} requests in {elapsed:.1}s, {answered} answered");
    assert!(sent > 1000, "only {sent} requests sent");
    assert!(
        (answered as f64) <= burst + rate * elapsed + 1.0,
        "{answered} answers to one source in {elapsed:.1}s at {rate}/s, burst {burst}"
    );
    // Counted, not just dropped (some of the flood may be lost in socket buffers).
    let limited = reflector_requests(&lab, "udp", "rate_limited");
    assert!(
        limited >= 1000.0,
        "{limited} of {sent} counted rate limited"
    );
    // Most idle connections were closed at once, having no token to pay with.
    let refused = idle.iter().filter(|s| closed(s)).count();
    assert!(
        refused >= 250,
        "only {refused} of 300 idle connections closed"
    );
    assert!(reflector_requests(&lab, "tcp", "rate_limited") >= 250.0);

    // A disallowed source (the VNET gateway) gets nothing, however much it asks.
    let rejected_before = reflector_requests(&lab, "udp", "rejected");
    let outsider = lab.udp_socket(Host::VnetGw);
    outsider.connect(server).unwrap();
    let (sent, answered) = stun_flood(outsider, 2);
    assert_eq!(answered, 0, "the reflector answered a disallowed source");
    let rejected = reflector_requests(&lab, "udp", "rejected") - rejected_before;
    assert!(rejected >= 500.0, "{rejected} of {sent} counted rejected");
    assert_eq!(stun_tcp(&lab, Host::VnetGw, server), None);
    assert_eq!(lab.http_get(Host::VnetGw, &url, false).0, 403);

    assert_alive(&lab, reflector);
    let rss_after = status_kib(pid, "VmRSS:");
    eprintln!("reflector RSS: {rss_before} KiB before, {rss_after} KiB after the floods");
    assert!(
        rss_after < rss_before + 8 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
}
