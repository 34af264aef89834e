//! End to end: hostile clients and broken conditions. The agent's HTTP server under slow, huge
//! and numerous clients; the reflector flooded; each missing privilege; the host namespace going
//! away under a running agent; a DNS server answering garbage; targets that accept and never
//! answer. Nothing crashes, nothing leaks, every failure says why.

mod lab;
mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hybridprobe::net::stun;
use lab::{dns, Host, Lab, ProcHandle, NODE_IP, ONPREM_IP, POD_IP};
use serde_json::Value;
use support::{check, metric, write_config, Agent, BIN, PORT};

/// The DaemonSet's memory limit (deploy/base): whatever clients do, the agent stays under it.
const MEMORY_LIMIT: u64 = 64 << 20;
/// The HTTP server's connection limit (`server::Limits::default`).
const CONNECTIONS: usize = 256;
const LDAP_PORT: u16 = 389;
const REFLECT_PORT: u16 = 3479;
const WHOAMI_PORT: u16 = 8080;

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Fails the test if the process exited or panicked.
fn assert_alive(lab: &Lab, handle: ProcHandle) {
    assert_eq!(lab.try_status(handle), None, "{}", lab.logs(handle));
    assert!(
        !lab.logs(handle).contains("panicked"),
        "{}",
        lab.logs(handle)
    );
}

/// `n` TCP connections to `addr` made from inside `h`.
fn connections(lab: &Lab, h: Host, addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    lab.in_ns(h, move || {
        (0..n)
            .map(|i| {
                TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                    .unwrap_or_else(|e| panic!("connection {i} to {addr}: {e}"))
            })
            .collect()
    })
}

/// Whether the other end has closed the connection, without waiting; data it sent is skipped.
fn closed(mut stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

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

fn pod_only(probes: &str) -> String {
    format!(
        "netns: {{ pod: {{}} }}\ndefaults: {{ interval: 1s, timeout: 800ms }}\nprobes:\n{probes}"
    )
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

/// A verdict's check: its result and detail.
fn result(verdict: &Value, probe: &str, netns: &str) -> (String, String) {
    let c = check(verdict, probe, netns);
    (
        c["result"].as_str().unwrap_or_default().to_owned(),
        c["detail"].as_str().unwrap_or_default().to_owned(),
    )
}

fn runs(metrics: &str, probe: &str, netns: &str, result: &str) -> f64 {
    let labels = [("probe", probe), ("netns", netns), ("result", result)];
    metric(metrics, "hybridprobe_probe_runs_total", &labels).unwrap_or(0.0)
}

/// Starts the agent in the pod under `setpriv` without `capability`, and waits until every
/// check has reported.
fn agent_without<'a>(lab: &'a Lab, capability: &str, config: &str) -> Agent<'a> {
    let path = write_config(lab, &format!("no-{capability}.yaml"), config);
    let listen = format!("{POD_IP}:{PORT}");
    let (inh, bounding) = (
        format!("--inh-caps=-{capability}"),
        format!("--bounding-set=-{capability}"),
    );
    let handle = lab.spawn(
        Host::Pod,
        "setpriv",
        &[
            &inh, &bounding, "--", BIN, "agent", "--config", &path, "--listen", &listen,
        ],
        &[],
    );
    let agent = Agent { lab, handle };
    lab.wait_until("the agent's /livez", Duration::from_secs(10), || {
        agent.get("/livez").0 == 200
    });
    agent.wait_ready();
    agent
}

/// Each capability the agent may lack takes away only the checks that need it, and says so in
/// /healthz and in the metrics. (deploy_e2e proves each capability the manifest adds is needed,
/// with `check`; this runs the agent itself.)
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn each_missing_privilege_degrades_only_its_own_checks() {
    if !dns::dnsmasq_available("each_missing_privilege") {
        return;
    }
    let Some(lab) = Lab::new("hostile-privileges") else {
        return;
    };
    lab.serve_tcp(Host::Onprem, SocketAddr::from((ONPREM_IP, LDAP_PORT)));
    lab.onprem_dns();
    let reflector = SocketAddr::from((ONPREM_IP, REFLECT_PORT)).to_string();
    lab.spawn(Host::Onprem, BIN, &["reflect", "--listen", &reflector], &[]);
    lab.masquerade(false);
    // Unprivileged ICMP is allowed in the pod, as the no-host-privileges overlay's sysctl does,
    // and not in the node.
    lab.must(
        Host::Pod,
        "sysctl",
        &["-qw", "net.ipv4.ping_group_range=0 2147483647"],
    );
    lab.must(
        Host::Node,
        "sysctl",
        &["-qw", "net.ipv4.ping_group_range=1 0"],
    );
    let config = format!(
        r#"netns: {{ pod: {{}}, host: {{ path: {host} }} }}
defaults: {{ interval: 2s, timeout: 1500ms }}
probes:
  - name: ldap
    tcp: {{ target: "{ONPREM_IP}:{LDAP_PORT}" }}
  - name: corp-db
    dns: {{ query: {db}, servers: ["{ONPREM_IP}"], transport: [udp, tcp] }}
  - name: ping
    icmp: {{ target: {ONPREM_IP}, count: 2 }}
  - name: mtu
    path_mtu: {{ target: {ONPREM_IP} }}
  - name: trace
    traceroute: {{ target: {ONPREM_IP} }}
  - name: source
    netns: [pod]
    source_ip: {{ stun: "{reflector}" }}
"#,
        host = lab.ns_path(Host::Node).display(),
        db = dns::DB_NAME,
    );
    let unaffected = |verdict: &Value, netns: &[&str]| {
        for probe in ["ldap", "corp-db"] {
            for ns in netns {
                assert_eq!(
                    result(verdict, probe, ns).0,
                    "success",
                    "{probe}/{ns}: {verdict}"
                );
            }
        }
    };

    // Without CAP_NET_RAW: ICMP falls back to the unprivileged socket where the namespace's
    // ping_group_range allows it; raw sockets are refused, naming the capability.
    let agent = agent_without(&lab, "net_raw", &config);
    let (_, verdict) = agent.healthz_json();
    let metrics = agent.metrics();
    unaffected(&verdict, &["pod", "host"]);
    assert_eq!(result(&verdict, "ping", "pod").0, "success", "{verdict}");
    let (ping, detail) = result(&verdict, "ping", "host");
    assert_eq!(ping, "permission_denied", "{detail}");
    assert!(detail.contains("ping_group_range"), "{detail}");
    for probe in ["mtu", "trace"] {
        for netns in ["pod", "host"] {
            let (got, detail) = result(&verdict, probe, netns);
            assert_eq!(got, "permission_denied", "{probe}/{netns}: {detail}");
            assert!(detail.contains("needs CAP_NET_RAW"), "{detail}");
            assert!(runs(&metrics, probe, netns, "permission_denied") >= 1.0);
        }
    }
    assert_eq!(result(&verdict, "source", "pod").0, "success", "{verdict}");
    assert_alive(&lab, agent.handle);
    lab.stop(agent.handle);

    // Without CAP_SYS_ADMIN the host namespace cannot be entered: every host check says so,
    // the pod side is whole.
    let agent = agent_without(&lab, "sys_admin", &config);
    let (code, verdict) = agent.healthz_json();
    assert_eq!(code, 503);
    unaffected(&verdict, &["pod"]);
    for probe in ["ldap", "corp-db", "ping", "mtu", "trace"] {
        assert_eq!(
            result(&verdict, probe, "pod").0,
            "success",
            "{probe}: {verdict}"
        );
        let (got, detail) = result(&verdict, probe, "host");
        assert_eq!(got, "netns_unavailable", "{probe}: {detail}");
        assert!(detail.contains("needs CAP_SYS_ADMIN"), "{detail}");
    }
    assert_eq!(
        verdict["diagnoses"][0]["code"], "host_netns_unavailable",
        "{verdict}"
    );
    let metrics = agent.metrics();
    let available = |netns| metric(&metrics, "hybridprobe_netns_available", &[("netns", netns)]);
    assert_eq!(
        (available("pod"), available("host")),
        (Some(1.0), Some(0.0))
    );
    assert!(runs(&metrics, "ldap", "host", "netns_unavailable") >= 1.0);
    assert_alive(&lab, agent.handle);
    lab.stop(agent.handle);

    // Without CAP_NET_ADMIN only the conntrack evidence of the source_ip check goes; the check
    // itself still runs and passes.
    let agent = agent_without(&lab, "net_admin", &config);
    let (code, verdict) = agent.healthz_json();
    assert_eq!(code, 200, "{verdict}");
    let (source, detail) = result(&verdict, "source", "pod");
    assert_eq!(source, "success");
    assert!(
        detail.ends_with(
            "conntrack: skipped: reading conntrack needs CAP_NET_ADMIN in the host namespace"
        ),
        "{detail}"
    );
    let metrics = agent.metrics();
    let labels = [("probe", "source"), ("netns", "pod")];
    assert_eq!(metric(&metrics, "hybridprobe_snat_observed", &labels), None);
    assert_eq!(
        metric(&metrics, "hybridprobe_source_ip_preserved", &labels),
        Some(1.0)
    );
    assert_alive(&lab, agent.handle);
}

/// The node namespace goes away under a running agent: its uplink is deleted and its name
/// removed (the netns file unmounted), while the namespace itself lives on, as a host's does
/// with its processes in it. The agent's host thread still holds the namespace, so host checks
/// keep running there and fail saying why; a reload that re-enters namespaces then finds the
/// file gone. The agent never stops answering.
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn host_namespace_disappearing_while_running() {
    let Some(lab) = Lab::new("hostile-hostns") else {
        return;
    };
    lab.serve_tcp(Host::Onprem, SocketAddr::from((ONPREM_IP, LDAP_PORT)));
    let node_ns = lab.ns_path(Host::Node).display().to_string();
    let config = |resolv: &str| {
        format!(
            r#"netns: {{ pod: {{}}, host: {{ path: {node_ns}, resolv_conf: {resolv} }} }}
defaults: {{ interval: 1s, timeout: 800ms }}
probes:
  - name: ldap
    tcp: {{ target: "{ONPREM_IP}:{LDAP_PORT}" }}
  - name: onprem-route
    netns: [host]
    route: {{ destination: 198.19.0.0/16 }}
"#
        )
    };
    let agent = Agent::start(&lab, &config("/etc/resolv.conf"));
    agent.wait_check("ldap", "host", "success", Duration::from_secs(10));
    agent.wait_check("onprem-route", "host", "success", Duration::from_secs(5));

    // The node's processes keep its namespace (and the pod's link through it) alive.
    lab.spawn(Host::Node, "sleep", &["infinity"], &[]);
    lab.must(Host::Node, "ip", &["link", "del", "eth0"]);
    let out = std::process::Command::new("ip")
        .args(["netns", "delete", &lab.ns_name(Host::Node)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!lab.ns_path(Host::Node).exists());

    agent.wait_check("ldap", "host", "unreachable", Duration::from_secs(10));
    agent.wait_check(
        "onprem-route",
        "host",
        "unreachable",
        Duration::from_secs(5),
    );
    lab.wait_until("the pod check to fail", Duration::from_secs(5), || {
        result(&agent.healthz_json().1, "ldap", "pod").0 != "success"
    });
    let (_, verdict) = agent.healthz_json();
    let (_, detail) = result(&verdict, "ldap", "host");
    assert!(detail.contains("Network is unreachable"), "{detail}");
    // The pod's path runs through the node: its unreachables are rate limited, so some rounds
    // time out instead.
    let (pod, detail) = result(&verdict, "ldap", "pod");
    assert!(pod == "unreachable" || pod == "timeout", "{pod}: {detail}");
    assert_eq!(agent.get("/livez").0, 200);

    // A changed namespace setting makes the agent enter the namespaces again.
    let path = lab.tmpdir().join("agent.yaml");
    std::fs::write(&path, config("/nonexistent/resolv.conf")).unwrap();
    agent.wait_check("ldap", "host", "netns_unavailable", Duration::from_secs(15));
    let (code, verdict) = agent.healthz_json();
    assert_eq!(code, 503);
    let (_, detail) = result(&verdict, "onprem-route", "host");
    assert!(
        detail.contains(&format!("cannot open {node_ns}: No such file or directory")),
        "{detail}"
    );
    assert_eq!(
        verdict["diagnoses"][0]["code"], "host_netns_unavailable",
        "{verdict}"
    );
    assert_eq!(
        metric(
            &agent.metrics(),
            "hybridprobe_netns_available",
            &[("netns", "host")]
        ),
        Some(0.0)
    );
    // The pod side still runs its rounds, through a node that is gone.
    let pod_rounds = || {
        let labels = [("probe", "ldap"), ("netns", "pod")];
        metric(
            &agent.metrics(),
            "hybridprobe_probe_duration_seconds_count",
            &labels,
        )
    };
    let before = pod_rounds();
    lab.wait_until("more pod rounds", Duration::from_secs(5), || {
        pod_rounds() > before
    });
    assert_eq!(agent.get("/livez").0, 200);
    assert_alive(&lab, agent.handle);
}

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
