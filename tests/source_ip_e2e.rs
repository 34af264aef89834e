//! End to end: does on-prem see the pod's own address? The agent asks coturn (a third-party STUN
//! server) and `hybridprobe reflect` on the on-prem host, over UDP, TCP and HTTP, while the node
//! namespace masquerades pod traffic or not; and the reflector holds up against a hostile network.

mod lab;
mod support;

use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddr};
use std::time::Duration;

use hybridprobe::net::stun;
use lab::{
    Host, Lab, ProcHandle, CLOUD_NET6, NODE_IP, NODE_IP6, ONPREM_IP, ONPREM_IP6, POD_IP, POD_IP6,
    POD_NPT_IP6,
};
use support::{
    assert_success, check, codes, metric, piece, pod_and_host_config, Agent, Resolv, BIN,
};

const COTURN_PORT: u16 = 3478;
const REFLECT_PORT: u16 = 3479;
const WHOAMI_PORT: u16 = 8080;
const INTERVAL: Duration = Duration::from_secs(2);
const TIMEOUT: Duration = Duration::from_millis(1500);
/// The check flips on the first round that starts after a change: within one interval plus that
/// round's timeout, with slack for a busy machine.
const FLIP: Duration = Duration::from_millis(2000 + 1500 + 2000);

/// The servers these tests run, beyond the lab's own tools. Missing ones skip the test outside
/// CI, with one line saying why, and fail it under CI.
fn servers_installed(test: &str) -> bool {
    let missing: Vec<&str> = ["turnserver", "conntrack"]
        .into_iter()
        .filter(|tool| {
            !std::process::Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "{} not installed (see .ci/packages.txt)",
        missing.join(", ")
    );
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("{test}: {why}");
    }
    let _ = writeln!(std::io::stderr(), "skipping {test}: {why}");
    false
}

fn start_reflector(lab: &Lab, port: u16, extra: &[&str]) -> ProcHandle {
    start_reflector_on(lab, SocketAddr::from((ONPREM_IP, port)), extra)
}

/// The reflector on `listen`, which takes IPv4 clients on [`ONPREM_IP`] (its own address or
/// `[::]`); returns once it answers there.
fn start_reflector_on(lab: &Lab, listen: SocketAddr, extra: &[&str]) -> ProcHandle {
    let listen_text = listen.to_string();
    let mut args = vec!["reflect", "--listen", &listen_text];
    args.extend_from_slice(extra);
    let handle = lab.spawn(Host::Onprem, BIN, &args, &[]);
    let server = SocketAddr::from((ONPREM_IP, listen.port()));
    lab.wait_until("the reflector to answer", Duration::from_secs(10), || {
        lab.stun_binding(Host::Onprem, server, Duration::from_millis(200))
            .is_some()
    });
    handle
}

fn config(lab: &Lab) -> String {
    format!(
        r#"
netns:
  pod: {{}}
  host: {{ path: {host} }}
defaults: {{ interval: {interval}s, timeout: {timeout}ms }}
probes:
  - name: coturn-udp
    source_ip: {{ stun: "{ONPREM_IP}:{COTURN_PORT}" }}
  - name: coturn-tcp
    source_ip: {{ stun: "{ONPREM_IP}:{COTURN_PORT}", stun_transport: tcp }}
  - name: reflect-udp
    source_ip: {{ stun: "{ONPREM_IP}:{REFLECT_PORT}" }}
  - name: reflect-tcp
    source_ip: {{ stun: "{ONPREM_IP}:{REFLECT_PORT}", stun_transport: tcp }}
  - name: whoami
    source_ip: {{ http: "http://{ONPREM_IP}:{WHOAMI_PORT}/whoami", masquerade: forbidden }}
  - name: kubenet
    netns: [pod]
    source_ip: {{ stun: "{ONPREM_IP}:{REFLECT_PORT}", masquerade: expected, to: "{NODE_IP}" }}
"#,
        host = lab.ns_path(Host::Node).display(),
        interval = INTERVAL.as_secs(),
        timeout = TIMEOUT.as_millis(),
    )
}

/// The probes whose policy is `forbidden`: each runs in the pod and the host namespace.
const FORBIDDEN: [&str; 5] = [
    "coturn-udp",
    "coturn-tcp",
    "reflect-udp",
    "reflect-tcp",
    "whoami",
];

fn detail(verdict: &serde_json::Value, probe: &str, netns: &str) -> String {
    check(verdict, probe, netns)["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn labels<'a>(probe: &'a str, netns: &'a str) -> [(&'a str, &'a str); 2] {
    [("probe", probe), ("netns", netns)]
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn masquerade_flips_the_pod_check_against_coturn_and_our_reflector() {
    if !servers_installed("masquerade_flips_the_pod_check") {
        return;
    }
    let Some(lab) = Lab::new("srcip-masq") else {
        return;
    };
    lab.start_coturn(COTURN_PORT);
    let whoami = SocketAddr::from((ONPREM_IP, WHOAMI_PORT)).to_string();
    let _ = start_reflector(
        &lab,
        REFLECT_PORT,
        &["--http", &whoami, "--allow", "198.18.0.0/15"],
    );
    lab.masquerade(false);
    let agent = Agent::start(&lab, &config(&lab));
    agent.wait_ready();

    // Healthy: on-prem sees the pod IP from the pod and the node IP from the host.
    lab.wait_until(
        "every forbidden check green",
        Duration::from_secs(15),
        || {
            let (_, verdict) = agent.healthz_json();
            FORBIDDEN.iter().all(|probe| {
                ["pod", "host"]
                    .iter()
                    .all(|netns| check(&verdict, probe, netns)["ok"] == true)
            })
        },
    );
    let (_, verdict) = agent.healthz_json();
    for probe in FORBIDDEN {
        let pod = detail(&verdict, probe, "pod");
        assert!(
            pod.starts_with(&format!("expected {POD_IP}, on-prem saw {POD_IP} via ")),
            "{pod}"
        );
        assert!(
            pod.contains("conntrack: this node did not SNAT the flow"),
            "{pod}"
        );
        let host = detail(&verdict, probe, "host");
        assert!(
            host.starts_with(&format!("expected {NODE_IP}, on-prem saw {NODE_IP} via ")),
            "{host}"
        );
    }
    let kubenet = check(&verdict, "kubenet", "pod");
    assert_eq!(kubenet["result"], "not_masqueraded", "{kubenet}");
    let metrics = agent.metrics();
    for probe in FORBIDDEN {
        let pod = labels(probe, "pod");
        assert_eq!(
            metric(&metrics, "hybridprobe_source_ip_preserved", &pod),
            Some(1.0),
            "{probe}"
        );
        assert_eq!(
            metric(&metrics, "hybridprobe_snat_observed", &pod),
            Some(0.0),
            "{probe}"
        );
        let info = [
            ("probe", probe),
            ("netns", "pod"),
            ("expected", "198.18.2.10"),
            ("observed", "198.18.2.10"),
        ];
        assert_eq!(
            metric(&metrics, "hybridprobe_source_ip_info", &info),
            Some(1.0),
            "{probe}"
        );
    }

    // Masquerade on: every pod check red with the node IP observed and conntrack agreeing; the
    // host's checks stay green, and the kubenet policy passes.
    lab.masquerade(true);
    for probe in FORBIDDEN {
        agent.wait_check(probe, "pod", "masqueraded", FLIP);
    }
    agent.wait_check("kubenet", "pod", "success", FLIP);
    let (code, verdict) = agent.healthz_json();
    assert_eq!(code, 503);
    for probe in FORBIDDEN {
        let pod = detail(&verdict, probe, "pod");
        assert!(
            pod.starts_with(&format!("expected {POD_IP}, on-prem saw {NODE_IP} via ")),
            "{pod}"
        );
        assert!(
            pod.contains(&format!("conntrack: this node SNAT'd {POD_IP}:")),
            "{pod}"
        );
        assert!(pod.contains(&format!(" to {NODE_IP}:")), "{pod}");
        assert_eq!(check(&verdict, probe, "host")["ok"], true, "{probe}");
    }
    let (_, text) = agent.healthz();
    let line = text
        .lines()
        .find(|l| l.contains("coturn-udp") && l.contains(" pod "))
        .unwrap_or_else(|| panic!("no coturn-udp pod line in {text}"));
    assert!(line.starts_with("FAIL"), "{line}");
    assert!(line.contains("masqueraded"), "{line}");
    let metrics = agent.metrics();
    for probe in FORBIDDEN {
        let pod = labels(probe, "pod");
        assert_eq!(
            metric(&metrics, "hybridprobe_source_ip_preserved", &pod),
            Some(0.0),
            "{probe}"
        );
        assert_eq!(
            metric(&metrics, "hybridprobe_snat_observed", &pod),
            Some(1.0),
            "{probe}"
        );
        let info = [
            ("probe", probe),
            ("netns", "pod"),
            ("observed", "198.18.1.4"),
        ];
        assert_eq!(
            metric(&metrics, "hybridprobe_source_ip_info", &info),
            Some(1.0)
        );
        let series = metrics
            .lines()
            .filter(|l| {
                l.starts_with("hybridprobe_source_ip_info{")
                    && l.contains(&format!("probe=\"{probe}\""))
                    && l.contains("netns=\"pod\"")
            })
            .count();
        assert_eq!(series, 1, "one info series per check for {probe}");
        assert_eq!(
            metric(
                &metrics,
                "hybridprobe_source_ip_preserved",
                &labels(probe, "host")
            ),
            Some(1.0)
        );
    }
    // The conntrack tool reads the same table the agent did.
    let table = lab.must(
        Host::Node,
        "conntrack",
        &[
            "-L",
            "-p",
            "udp",
            "--orig-src",
            "198.18.2.10",
            "--orig-port-dst",
            "3478",
        ],
    );
    assert!(
        table.lines().any(|l| l.contains(&format!("dst={NODE_IP}"))),
        "{table}"
    );

    // Masquerade off: back to green within one round.
    lab.masquerade(false);
    for probe in FORBIDDEN {
        agent.wait_check(probe, "pod", "success", FLIP);
    }
    agent.wait_check("kubenet", "pod", "not_masqueraded", FLIP);
    let metrics = agent.metrics();
    assert_eq!(
        metric(
            &metrics,
            "hybridprobe_source_ip_preserved",
            &labels("coturn-udp", "pod")
        ),
        Some(1.0)
    );
    assert!(
        metric(
            &metrics,
            "hybridprobe_probe_runs_total",
            &[
                ("probe", "reflect-tcp"),
                ("netns", "pod"),
                ("result", "masqueraded")
            ]
        )
        .unwrap()
            >= 1.0
    );
}

/// Each family's `source_ip` checks against one reflector, over UDP, TCP and HTTP.
fn dual_stack_probes() -> String {
    let (v4, v6) = (ONPREM_IP.to_string(), format!("[{ONPREM_IP6}]"));
    let mut probes = String::new();
    for (family, at) in [("4", &v4), ("6", &v6)] {
        probes.push_str(&format!(
            r#"  - name: udp-{family}
    source_ip: {{ stun: "{at}:{REFLECT_PORT}" }}
  - name: tcp-{family}
    source_ip: {{ stun: "{at}:{REFLECT_PORT}", stun_transport: tcp }}
  - name: whoami-{family}
    source_ip: {{ http: "http://{at}:{WHOAMI_PORT}/whoami" }}
"#
        ));
    }
    probes.push_str(&format!(
        r#"  - name: nat66
    netns: [pod]
    source_ip: {{ stun: "{v6}:{REFLECT_PORT}", masquerade: expected, to: "{NODE_IP6}" }}
evidence: {{ min_interval: 1s, timeout: 5s }}
"#
    ));
    probes
}

/// The checks of `family` (`4` or `6`) that forbid masquerade.
fn forbidden(family: &str) -> [String; 3] {
    ["udp", "tcp", "whoami"].map(|kind| format!("{kind}-{family}"))
}

/// Waits until the pod's IPv6 checks fail `masqueraded`, on-prem seeing `seen` and the node's
/// conntrack showing it did that translation, while the host's pass; returns that verdict.
fn pod_ipv6_seen_as(agent: &Agent, seen: Ipv6Addr) -> serde_json::Value {
    for probe in forbidden("6") {
        agent.wait_check(&probe, "pod", "masqueraded", FLIP);
    }
    let (_, verdict) = agent.healthz_json();
    for probe in forbidden("6") {
        let pod = detail(&verdict, &probe, "pod");
        let want = format!("expected {POD_IP6}, on-prem saw {seen} via ");
        assert!(pod.starts_with(&want), "{pod}");
        let snat = format!("conntrack: this node SNAT'd [{POD_IP6}]:");
        assert!(pod.contains(&snat), "{pod}");
        assert!(pod.contains(&format!(" to [{seen}]:")), "{pod}");
        assert_eq!(check(&verdict, &probe, "host")["ok"], true, "{probe}");
    }
    verdict
}

/// One reflector on `[::]` serves both families: each namespace is seen at its own address of
/// the family it asks over (an IPv4 client as IPv4, not `::ffff:a.b.c.d`), and the host's
/// conntrack finds the IPv6 flows. NAT66 at the node then turns the pod's IPv6 checks red with
/// the node's IPv6 address, in the detail, the diagnosis and the evidence, while IPv4 and the
/// host stay green and a policy that expects NAT66 passes; NPTv6 is seen as well.
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn one_dual_stack_reflector_sees_each_family_and_nat66_is_named() {
    if !servers_installed("one_dual_stack_reflector") {
        return;
    }
    let Some(lab) = Lab::new("srcip-dual") else {
        return;
    };
    let any6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, REFLECT_PORT));
    let whoami = SocketAddr::from((Ipv6Addr::UNSPECIFIED, WHOAMI_PORT)).to_string();
    let extra = [
        "--http",
        &whoami,
        "--allow",
        "198.18.0.0/15",
        "--allow",
        CLOUD_NET6,
    ];
    let _ = start_reflector_on(&lab, any6, &extra);
    lab.masquerade(false);
    lab.masquerade6(false);
    let defaults = format!(
        "{{ interval: {}s, timeout: {}ms }}",
        INTERVAL.as_secs(),
        TIMEOUT.as_millis()
    );
    let config = pod_and_host_config(&lab, Resolv::Own, &defaults, &dual_stack_probes());
    let agent = Agent::start(&lab, &config);
    let own = [
        ("pod", POD_IP.to_string(), POD_IP6.to_string()),
        ("host", NODE_IP.to_string(), NODE_IP6.to_string()),
    ];
    for (netns, own4, own6) in &own {
        for (family, own) in [("4", own4), ("6", own6)] {
            for probe in forbidden(family) {
                agent.wait_check(&probe, netns, "success", FLIP);
                let (_, verdict) = agent.healthz_json();
                let seen = detail(&verdict, &probe, netns);
                let want = format!("expected {own}, on-prem saw {own} via ");
                assert!(seen.starts_with(&want), "{probe}/{netns}: {seen}");
            }
        }
    }
    let (_, verdict) = agent.healthz_json();
    for probe in forbidden("6") {
        let pod = detail(&verdict, &probe, "pod");
        assert!(
            pod.contains("conntrack: this node did not SNAT the flow"),
            "{pod}"
        );
    }
    agent.wait_check("nat66", "pod", "not_masqueraded", FLIP);

    lab.masquerade6(true);
    let verdict = pod_ipv6_seen_as(&agent, NODE_IP6);
    assert_eq!(check(&verdict, "nat66", "pod")["ok"], true, "{verdict:#}");
    for probe in forbidden("4") {
        for netns in ["pod", "host"] {
            assert_eq!(
                check(&verdict, &probe, netns)["ok"],
                true,
                "{probe}/{netns}"
            );
        }
    }
    assert_eq!(codes(&verdict), ["pod_ip_masqueraded"], "{verdict:#}");
    let summary = verdict["diagnoses"][0]["summary"]
        .as_str()
        .unwrap_or_default();
    let named = format!(
        "on-prem sees {NODE_IP6} instead of the pod's own {POD_IP6}; this node SNAT'd the flow"
    );
    assert!(summary.contains(&named), "{summary}");
    let capture = agent.wait_evidence("udp-6", "pod", FLIP);
    let conntrack = piece(&capture, "conntrack", "host")["text"]
        .as_str()
        .unwrap_or_default();
    let translated = format!("udp [{POD_IP6}]:");
    assert!(conntrack.starts_with(&translated), "{conntrack}");
    assert!(
        conntrack.contains(&format!("replies go to [{NODE_IP6}]:")),
        "{conntrack}"
    );

    lab.masquerade6(false);
    for probe in forbidden("6") {
        agent.wait_check(&probe, "pod", "success", FLIP);
    }

    // NPTv6: the pod's prefix is swapped, its interface identifier kept; a policy expecting the
    // node's address sees another.
    lab.npt6(true);
    pod_ipv6_seen_as(&agent, POD_NPT_IP6);
    agent.wait_check("nat66", "pod", "unexpected_source", FLIP);
    lab.npt6(false);
    for probe in forbidden("6") {
        agent.wait_check(&probe, "pod", "success", FLIP);
    }
}

/// A small deterministic generator, so a failing flood can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Datagrams a hostile or broken client might send: none is a valid Binding request.
fn malformed(n: usize, rng: &mut XorShift) -> Vec<u8> {
    let (id, request) = stun::new_request().unwrap();
    let mut out = match n % 8 {
        0 => {
            let len = (rng.next() % 1300) as usize;
            rng.bytes(len)
        }
        1 => request[..(rng.next() % 20) as usize].to_vec(),
        2 => {
            let mut bad = request.to_vec();
            bad[4] ^= 0xFF; // magic cookie
            bad
        }
        3 => {
            let mut long = request.to_vec();
            long[2..4].copy_from_slice(&0xFFFCu16.to_be_bytes()); // declares far more than sent
            long
        }
        4 => {
            // An attribute whose length runs past the end of the message.
            let mut bad = request.to_vec();
            bad[2..4].copy_from_slice(&8u16.to_be_bytes());
            bad.extend_from_slice(&[0x80, 0x22, 0x01, 0x00, b'x', b'y', b'z', b'w']);
            bad
        }
        5 => stun::encode_response(&id, "198.18.2.10:1".parse().unwrap())
            .as_bytes()
            .to_vec(),
        6 => vec![0u8; 1300], // under the tunnel MTU, so it arrives whole
        _ => {
            let mut unaligned = request.to_vec();
            unaligned[3] = 3;
            unaligned.extend_from_slice(&[1, 2, 3]);
            unaligned
        }
    };
    if out.is_empty() {
        out.push(0);
    }
    out
}

fn reflector_metrics(lab: &Lab) -> String {
    let (code, body) = lab.http_get(
        Host::Onprem,
        &format!("http://{ONPREM_IP}:{WHOAMI_PORT}/metrics"),
        false,
    );
    assert_eq!(code, 200, "{body}");
    body
}

fn requests(metrics: &str, transport: &str, outcome: &str) -> f64 {
    metric(
        metrics,
        "hybridprobe_reflect_requests_total",
        &[("transport", transport), ("outcome", outcome)],
    )
    .unwrap_or_else(|| panic!("no {transport}/{outcome} series in {metrics}"))
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn reflector_survives_a_malformed_flood_and_answers_only_allowed_sources() {
    if !servers_installed("reflector_survives_a_malformed_flood") {
        return;
    }
    let Some(lab) = Lab::new("srcip-reflect") else {
        return;
    };
    let whoami = SocketAddr::from((ONPREM_IP, WHOAMI_PORT)).to_string();
    // A generous rate so every datagram of the flood reaches the decoder.
    let reflector = start_reflector(
        &lab,
        REFLECT_PORT,
        &[
            "--http",
            &whoami,
            "--allow",
            "198.18.2.0/24",
            "--allow",
            "198.19.10.0/24",
            "--rate",
            "100000",
            "--burst",
            "100000",
        ],
    );
    let server = SocketAddr::from((ONPREM_IP, REFLECT_PORT));

    // /whoami, as text and as JSON.
    let url = format!("http://{whoami}/whoami");
    assert_eq!(
        lab.http_get(Host::Pod, &url, false),
        (200, format!("{POD_IP}\n"))
    );
    let (code, json) = lab.http_get(Host::Pod, &url, true);
    assert_eq!(code, 200);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["address"], POD_IP.to_string(), "{json}");
    let (_, query_json) = lab.http_get(Host::Pod, &format!("{url}?format=json"), false);
    assert!(
        query_json.contains("\"address\":\"198.18.2.10\""),
        "{query_json}"
    );

    // A bounded flood of malformed datagrams, paced so the socket buffer keeps up; none gets
    // an answer.
    const FLOOD: usize = 2000;
    let socket = lab.udp_socket(Host::Pod);
    socket.connect(server).unwrap();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for n in 0..FLOOD {
        socket.send(&malformed(n, &mut rng)).unwrap();
        if n % 50 == 49 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 1500];
    assert!(
        socket.recv(&mut buf).is_err(),
        "the reflector answered a malformed datagram"
    );
    // Garbage on TCP: the connection is closed with nothing sent back.
    let mut tcp = lab
        .tcp_connect(Host::Pod, server, Duration::from_secs(2))
        .unwrap();
    tcp.write_all(&[0xFFu8; 64]).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut rest = Vec::new();
    let _ = tcp.read_to_end(&mut rest);
    assert!(rest.is_empty(), "answered garbage with {rest:02x?}");

    // Still alive, still answering, over UDP and TCP.
    assert_eq!(lab.try_status(reflector), None, "the reflector exited");
    let seen = lab.stun_binding(Host::Pod, server, Duration::from_secs(2));
    assert_eq!(seen.map(|a| a.ip()), Some(POD_IP.into()));
    let mut tcp = lab
        .tcp_connect(Host::Pod, server, Duration::from_secs(2))
        .unwrap();
    let (id, request) = stun::new_request().unwrap();
    tcp.write_all(&request).unwrap();
    let mut answer = [0u8; 32];
    tcp.read_exact(&mut answer).unwrap();
    assert_eq!(
        stun::decode_response(&answer, &id).map(|a| a.ip()),
        Ok(POD_IP.into())
    );
    let metrics = reflector_metrics(&lab);
    let counted = requests(&metrics, "udp", "malformed");
    assert!(
        counted >= (FLOOD * 9 / 10) as f64 && counted <= FLOOD as f64,
        "{counted} of {FLOOD} malformed datagrams counted"
    );
    assert_eq!(requests(&metrics, "tcp", "malformed"), 1.0);

    // The node is outside the allow-list: no answer, over STUN or HTTP.
    assert_eq!(
        lab.stun_binding(Host::Node, server, Duration::from_secs(1)),
        None
    );
    assert_eq!(lab.http_get(Host::Node, &url, false).0, 403);
    let metrics = reflector_metrics(&lab);
    assert!(requests(&metrics, "udp", "rejected") >= 1.0);
    assert_eq!(requests(&metrics, "http", "rejected"), 1.0);
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn reflector_rate_limits_each_source() {
    if !servers_installed("reflector_rate_limits_each_source") {
        return;
    }
    let Some(lab) = Lab::new("srcip-rate") else {
        return;
    };
    let whoami = SocketAddr::from((ONPREM_IP, WHOAMI_PORT)).to_string();
    let _ = start_reflector(
        &lab,
        REFLECT_PORT,
        &["--http", &whoami, "--rate", "1", "--burst", "5"],
    );
    let server = SocketAddr::from((ONPREM_IP, REFLECT_PORT));
    // The onprem host spent some of its own bucket on the readiness check; the pod's is full.
    let socket = lab.udp_socket(Host::Pod);
    socket.connect(server).unwrap();
    let mut ids = Vec::new();
    for _ in 0..20 {
        let (id, request) = stun::new_request().unwrap();
        socket.send(&request).unwrap();
        ids.push(id);
    }
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 1500];
    let mut answered = 0;
    while let Ok(len) = socket.recv(&mut buf) {
        assert!(ids
            .iter()
            .any(|id| stun::decode_response(&buf[..len], id).is_ok()));
        answered += 1;
    }
    assert_eq!(answered, 5, "a burst of 5, then 1 per second");
    let metrics = reflector_metrics(&lab);
    assert_eq!(requests(&metrics, "udp", "rate_limited"), 15.0);
}

#[test]
fn reflect_flags_are_checked_before_anything_listens() {
    let out = std::process::Command::new(BIN)
        .args(["reflect", "--allow", "198.19.0.0/33"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a bad flag is a usage error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#""198.19.0.0/33" is not a CIDR"#),
        "{stderr}"
    );
    let out = std::process::Command::new(BIN)
        .args(["reflect", "--rate", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// The `source_ip` examples in docs/probe-kinds.md are valid config, as the doc shows them, and so
/// is one with `stun_transport` and `expect`.
#[test]
fn documented_source_ip_examples_validate() {
    let doc = include_str!("../docs/probe-kinds.md");
    let section = doc
        .split("\n## source_ip\n")
        .nth(1)
        .expect("docs/probe-kinds.md has a `## source_ip` section");
    let section = section.split("\n## ").next().unwrap();
    let example = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the `source_ip` section has a yaml example");
    let mut config = String::from("probes:\n");
    for line in example.lines() {
        config.push_str("  ");
        config.push_str(line);
        config.push('\n');
    }
    config.push_str(
        r#"  - name: stun-tcp
    source_ip: { stun: "198.19.10.1:3478", stun_transport: tcp, expect: 198.18.2.10 }
"#,
    );
    let dir = std::env::temp_dir().join(format!("hp-srcip-doc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("source-ip.yaml");
    std::fs::write(&path, &config).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["validate", "--config"])
        .arg(&path)
        .env("HOST_IP", "198.18.1.4")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = assert_success(&out);
    assert!(
        stdout.contains("ok (4 probes, 7 checks)"),
        "{config}{stdout}"
    );
}
