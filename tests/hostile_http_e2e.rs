//! End to end, hostile clients: the agent's HTTP server under slow, huge and numerous clients.
//! It keeps answering, stays under the DaemonSet's memory limit and cuts off what it must.

mod lab;
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lab::{Host, Lab, ONPREM_IP, POD_IP};
use support::{assert_alive, closed, connections, pod_only, status_kib, Agent, PORT};

/// The DaemonSet's memory limit (deploy/base): whatever clients do, the agent stays under it.
const MEMORY_LIMIT: u64 = 64 << 20;
/// The HTTP server's connection limit (`server::Limits::default`).
const CONNECTIONS: usize = 256;
const LDAP_PORT: u16 = 389;

/// Sends `request` on a connection made from `h` and reads the answer until the server closes.
fn exchange(lab: &Lab, h: Host, addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = connections(lab, h, addr, 1).remove(0);
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// Slowloris: each connection sends a request head one byte per pass, as long as the server
/// keeps it open or until `deadline`. Returns how many the server never closed.
fn trickle(mut streams: Vec<TcpStream>, deadline: Duration) -> usize {
    let head = b"GET /metrics HTTP/1.1\r\nHost: agent\r\n".iter();
    let mut bytes = head.chain(b"X-Slow: yes\r\n".iter().cycle());
    let end = Instant::now() + deadline;
    while !streams.is_empty() && Instant::now() < end {
        let byte = *bytes.next().unwrap();
        streams.retain_mut(|s| s.write_all(&[byte]).is_ok() && !closed(s));
        std::thread::sleep(Duration::from_millis(200));
    }
    streams.len()
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn http_server_bounds_slow_huge_and_many_clients() {
    let Some(lab) = Lab::new("hostile-http") else {
        return;
    };
    lab.serve_tcp(Host::Onprem, SocketAddr::from((ONPREM_IP, LDAP_PORT)));
    let agent = Agent::start(
        &lab,
        &pod_only(&format!(
            "  - name: ldap\n    tcp: {{ target: \"{ONPREM_IP}:{LDAP_PORT}\" }}\n"
        )),
    );
    agent.wait_ready();
    let pid = lab.pid(agent.handle);
    let addr = SocketAddr::from((POD_IP, PORT));
    eprintln!("agent RSS at start: {} KiB", status_kib(pid, "VmRSS:"));

    // Slowloris from the node, below the connection limit: the kubelet's /livez is answered
    // throughout, and the server cuts every slow client off.
    let slow = connections(&lab, Host::Node, addr, 200);
    let attack = std::thread::spawn(move || trickle(slow, Duration::from_secs(30)));
    for _ in 0..5 {
        assert_eq!(
            agent.get("/livez"),
            (200, "ok\n".into()),
            "during slowloris"
        );
        std::thread::sleep(Duration::from_millis(400));
    }
    assert_eq!(
        attack.join().unwrap(),
        0,
        "slow clients the server never cut off"
    );

    // Beyond the limit: the extra connections are closed at once; the held ones are cut at the
    // header timeout, and then the agent answers again.
    let flood = connections(&lab, Host::Node, addr, CONNECTIONS + 44);
    // Well within the header timeout, which would close the held ones too.
    let refused = || flood.iter().filter(|s| closed(s)).count();
    let start = Instant::now();
    while refused() < 44 && start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(refused(), 44, "connections over the limit of {CONNECTIONS}");
    lab.wait_until(
        "idle connections to be cut",
        Duration::from_secs(15),
        || flood.iter().all(closed),
    );
    assert_eq!(agent.get("/livez").0, 200);

    // A head over the limit gets 431; a declared body nobody reads is never buffered.
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nHost: agent\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 << 10)
    );
    let answer = exchange(&lab, Host::Node, addr, huge.as_bytes());
    assert!(
        answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large"),
        "{answer:.200}"
    );
    let post = b"POST /metrics HTTP/1.1\r\nHost: agent\r\nContent-Length: 1073741824\r\n\r\n";
    let answer = exchange(&lab, Host::Node, addr, post);
    assert!(
        answer.starts_with("HTTP/1.1 405 Method Not Allowed"),
        "{answer:.200}"
    );

    // A hundred scrapers at once: every one gets the whole page.
    let scrapers = connections(&lab, Host::Pod, addr, 100);
    let scrapes: Vec<JoinHandle<String>> = scrapers
        .into_iter()
        .map(|mut s| {
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                s.write_all(b"GET /metrics HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n")
                    .unwrap();
                let mut page = String::new();
                let _ = s.read_to_string(&mut page);
                page
            })
        })
        .collect();
    for scrape in scrapes {
        let page = scrape.join().unwrap();
        assert!(page.starts_with("HTTP/1.1 200 OK"), "{page:.200}");
        assert!(
            page.contains("hybridprobe_probe_success{"),
            "incomplete: {page:.200}"
        );
    }

    assert_eq!(agent.get("/livez").0, 200);
    agent.wait_check("ldap", "pod", "success", Duration::from_secs(5));
    assert_alive(&lab, agent.handle);
    let peak = status_kib(pid, "VmHWM:");
    eprintln!(
        "agent RSS after: {} KiB, peak {peak} KiB",
        status_kib(pid, "VmRSS:")
    );
    assert!(
        peak * 1024 < MEMORY_LIMIT,
        "peak RSS {peak} KiB over the limit"
    );
}
