//! End to end: the lab's faults, one after the other on one lab and one agent, each yielding
//! exactly its one diagnosis in /healthz (JSON and text), in `hybridprobe_diagnosis` and in
//! `check`, within a couple of intervals; and a healthy lab yielding none at all.
//!
//! The faults are independent, and each is removed (and the lab seen healthy again) before the
//! next, so one lab serves them all.

mod lab;
mod support;

use std::cell::Cell;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use lab::dns::{dnsmasq_available, Forward, APP_NAME, APP_PORT, DB_NAME, LEAK_IP};
use lab::stun::turnserver_available;
use lab::web::{nginx_available, Web, APP_PATH, GOOD_NAME, HEALTHY_BODY, WEB_IP};
use lab::{Host, Lab, ProcHandle, NODE_IP, ONPREM_IP, POD_IP, TUNNEL_MTU, VNET_GW, VPN_REMOTE};
use support::{codes, metric, pod_and_host_config, run_cli, Agent, Resolv};

const LDAP_PORT: u16 = 389;
const STUN_PORT: u16 = 3478;
/// An on-prem management port that pods must not reach: served on-prem, dropped at the node.
const MGMT_PORT: u16 = 2222;
/// The path MTU the narrowed tunnel carries, below the checks' minimum of [`TUNNEL_MTU`].
const NARROW_MTU: u32 = 1300;
/// What `corp-db` expects of an answer, as the dns kind says it.
const DB_EXPECT: &str = "not within 198.19.0.0/16";
/// A second address on the node's subnet, for an SNAT to another address than the node's own.
const OTHER_NODE_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 5);
/// A gateway on the node's subnet that does not exist.
const NO_SUCH_GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 99);

/// Rounds run every second; a diagnosis must appear within two rounds after the first round
/// that sees the fault (interval, round, interval, round), with slack for a busy machine.
const WITHIN: Duration = Duration::from_secs(6);
/// A diagnosis must stay exactly the same this long: slower symptoms of the same fault (DNS
/// timeouts, the path MTU search) must not add a second one.
const HOLD: Duration = Duration::from_secs(3);

const CODES: [&str; 23] = [
    "config_reload_failed",
    "host_netns_unavailable",
    "blocked_target_reachable",
    "route_mismatch",
    "onprem_unreachable",
    "onprem_family_unreachable",
    "tunnel_lossy",
    "path_slower",
    "pod_ip_masqueraded",
    "masquerade_missing",
    "masquerade_unexpected",
    "pod_path_blocked",
    "onprem_dns_down",
    "dns_tcp_blocked",
    "cluster_dns_forwarding",
    "onprem_dns_wrong_answer",
    "cluster_dns_wrong_answer",
    "pmtu_blackhole",
    "path_mtu_low",
    "onprem_service_down",
    "resolved_address_down",
    "tls_failure",
    "service_error",
];

/// Every kind of on-prem check from both namespaces: the pod asks the cluster DNS, the host
/// asks on-prem, as on an AKS node joined to an on-prem domain; and a management port the pod
/// must not reach. The web checks come last, so the tunnel's summary names the other targets
/// first.
fn config(lab: &Lab, web: &Web) -> String {
    let ca = web.ca_file.display();
    every_second(
        lab,
        &format!(
            r#"  - name: onprem-ldap
    tcp: {{ target: "{ONPREM_IP}:{LDAP_PORT}" }}
  - name: onprem-ping
    icmp: {{ target: {ONPREM_IP}, count: 10 }}
  - name: corp-db
    dns: {{ query: {DB_NAME}, servers: [system, "{ONPREM_IP}"], transport: [udp, tcp],
           expect: {{ within: [198.19.0.0/16] }} }}
  - name: pod-ip
    source_ip: {{ stun: "{ONPREM_IP}:{STUN_PORT}" }}
  - name: tunnel-mtu
    path_mtu: {{ target: {ONPREM_IP}, min: {TUNNEL_MTU} }}
  - name: onprem-route
    netns: [host]
    route: {{ destination: 198.19.0.0/16, via: {VNET_GW} }}
  - name: tunnel-trace
    traceroute: {{ target: {ONPREM_IP}, expect_hop: {VPN_REMOTE} }}
  - name: corp-app
    tcp: {{ target: "{APP_NAME}:{APP_PORT}" }}
  - name: corp-api
    http: {{ url: "https://{GOOD_NAME}/healthz", resolve_to: {WEB_IP}, tls: {{ ca_file: {ca} }} }}
  - name: corp-web
    http: {{ url: "http://{GOOD_NAME}{APP_PATH}", resolve_to: {WEB_IP}, body_regex: ok }}
  - name: mgmt-ssh
    netns: [pod]
    expect: blocked
    tcp: {{ target: "{ONPREM_IP}:{MGMT_PORT}" }}
"#
        ),
    )
}

/// `probes` from both namespaces, a round every second, the pod asking the cluster DNS.
fn every_second(lab: &Lab, probes: &str) -> String {
    pod_and_host_config(
        lab,
        Resolv::ClusterAndOnprem,
        "{ interval: 1s, timeout: 1s }",
        probes,
    )
}

/// Waits until the diagnoses are exactly `want`, then checks that they stay so for [`HOLD`],
/// and that the metrics agree; returns the settled verdict and how long the diagnosis took.
fn expect_exactly(agent: &Agent, want: &[&str]) -> (serde_json::Value, Duration) {
    let started = Instant::now();
    let last = loop {
        let (_, verdict) = agent.healthz_json();
        if codes(&verdict) == want {
            break verdict;
        }
        if started.elapsed() > WITHIN {
            eprintln!("{}", agent.lab.all_logs());
            panic!("no diagnoses {want:?} within {WITHIN:?}; the last verdict:\n{verdict:#}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let took = started.elapsed();
    hold(agent, want, HOLD, &last);
    let metrics = agent.metrics();
    for code in CODES {
        let value = metric(&metrics, "hybridprobe_diagnosis", &[("code", code)]);
        let on = if want.contains(&code) { 1.0 } else { 0.0 };
        assert_eq!(value, Some(on), "hybridprobe_diagnosis{{code={code:?}}}");
    }
    (agent.healthz_json().1, took)
}

/// Reads the verdict every 250 ms for `how_long`: the diagnoses must be `want` throughout.
fn hold(agent: &Agent, want: &[&str], how_long: Duration, before: &serde_json::Value) {
    let held = Instant::now();
    while held.elapsed() < how_long {
        let (_, verdict) = agent.healthz_json();
        assert_eq!(
            codes(&verdict),
            want,
            "the diagnoses changed after settling on {want:?}:\n{verdict:#}\nbefore:\n{before:#}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The agent back to healthy: every check passing and no diagnosis, so the next fault starts
/// from a clean lab.
fn expect_healthy(agent: &Agent, after: &str) {
    agent
        .lab
        .wait_until(&format!("a healthy lab after {after}"), WITHIN, || {
            let (code, verdict) = agent.healthz_json();
            code == 200 && codes(&verdict).is_empty()
        });
}

/// One fault: how to make it and undo it, the one diagnosis it must yield, and what that
/// diagnosis's summary must say.
struct Fault<'a> {
    code: &'static str,
    summary: Vec<String>,
    inject: Box<dyn Fn() + 'a>,
    remove: Box<dyn Fn() + 'a>,
}

/// The lab's faults, each independent of the others.
fn faults<'a>(
    lab: &'a Lab,
    onprem_dns: &'a Cell<ProcHandle>,
    cluster_dns: &'a Cell<ProcHandle>,
) -> Vec<Fault<'a>> {
    let onprem_targets = |from: &str| {
        format!(
            "{from}: {ONPREM_IP}:{LDAP_PORT} (onprem-ldap), {ONPREM_IP} (onprem-ping, corp-db, \
             tunnel-mtu, tunnel-trace), {ONPREM_IP}:{STUN_PORT} (pod-ip)"
        )
    };
    // Stops a DNS server before starting its replacement: both bind the same address.
    let restart = |server: &Cell<ProcHandle>, start: &dyn Fn() -> ProcHandle| {
        lab.stop(server.get());
        server.set(start());
    };
    vec![
        // The tunnel is down: every on-prem check fails from both sides (DNS, TCP, ICMP, STUN,
        // path MTU, traceroute); only the cause is named.
        Fault {
            code: "onprem_unreachable",
            summary: vec![onprem_targets(
                "no on-prem target answers from pod and host",
            )],
            inject: Box::new(|| lab.tunnel_drop(true)),
            remove: Box::new(|| lab.tunnel_drop(false)),
        },
        // The node masquerades pod traffic to on-prem: on-prem sees the node address.
        Fault {
            code: "pod_ip_masqueraded",
            summary: vec![format!(
                "on-prem sees {NODE_IP} instead of the pod's own {POD_IP}; this node SNAT'd the \
                 flow (pod-ip)"
            )],
            inject: Box::new(|| lab.masquerade(true)),
            remove: Box::new(|| lab.masquerade(false)),
        },
        // Only the pod's own traffic is dropped at the node: the host still gets through.
        Fault {
            code: "pod_path_blocked",
            summary: vec![onprem_targets(
                "from the pod no answer, from the host an answer",
            )],
            inject: Box::new(|| lab.pod_forward_drop(true)),
            remove: Box::new(|| lab.pod_forward_drop(false)),
        },
        // The cluster DNS loses its stub zone for the corporate zone; on-prem still answers.
        Fault {
            code: "cluster_dns_forwarding",
            summary: vec![format!(
                "the pod's resolver fails {DB_NAME} (udp: nxdomain, tcp: nxdomain) while \
                 {ONPREM_IP} answers it directly (corp-db)"
            )],
            inject: Box::new(move || restart(cluster_dns, &|| lab.cluster_dns(Forward::Lost))),
            remove: Box::new(move || restart(cluster_dns, &|| lab.cluster_dns(Forward::Onprem))),
        },
        // The on-prem DNS server is down; everything else on-prem answers.
        Fault {
            code: "onprem_dns_down",
            summary: vec![format!(
                "on-prem DNS does not serve: {ONPREM_IP} from pod and host (udp: timeout, tcp: \
                 refused)"
            )],
            inject: Box::new(|| {
                lab.stop(onprem_dns.get());
            }),
            remove: Box::new(|| onprem_dns.set(lab.onprem_dns())),
        },
        // TCP/53 is dropped across the tunnel; UDP still answers.
        Fault {
            code: "dns_tcp_blocked",
            summary: vec![format!(
                "DNS over TCP fails while UDP answers: {ONPREM_IP} from pod and host (corp-db)"
            )],
            inject: Box::new(|| lab.dns_tcp_drop(true)),
            remove: Box::new(|| lab.dns_tcp_drop(false)),
        },
        // The VNET gateway's fragmentation-needed never leaves it: large packets vanish.
        Fault {
            code: "pmtu_blackhole",
            summary: vec![
                format!("don't-fragment packets to {ONPREM_IP} over "),
                " bytes vanish without fragmentation-needed, from pod and host (tunnel-mtu)"
                    .to_owned(),
            ],
            inject: Box::new(|| lab.frag_needed_drop(true)),
            remove: Box::new(|| lab.frag_needed_drop(false)),
        },
        // The on-prem host's firewall rejects one service's port: its name still resolves (from
        // the pod through the cluster DNS), its address refuses.
        Fault {
            code: "resolved_address_down",
            summary: vec![format!(
                "the name resolves, the address does not answer: {APP_NAME}:{APP_PORT} resolves \
                 to {ONPREM_IP}, which gives refused from pod and host (corp-app)"
            )],
            inject: Box::new(|| lab.onprem_port_reject(APP_PORT, true)),
            remove: Box::new(|| lab.onprem_port_reject(APP_PORT, false)),
        },
        // The same port silently dropped: the round runs into the scheduler's timeout, which
        // still knows what the name resolved to.
        Fault {
            code: "resolved_address_down",
            summary: vec![format!(
                "the name resolves, the address does not answer: {APP_NAME}:{APP_PORT} resolves \
                 to {ONPREM_IP}, which gives timeout from pod and host (corp-app)"
            )],
            inject: Box::new(|| lab.onprem_port_drop(APP_PORT, true)),
            remove: Box::new(|| lab.onprem_port_drop(APP_PORT, false)),
        },
        // A botched renewal: the web server presents a certificate that expired in 2021.
        Fault {
            code: "tls_failure",
            summary: vec![format!(
                "the server answers TCP, TLS fails: https://{GOOD_NAME}/healthz from pod and host \
                 (corp-api): certificate \"CN=expired.corp.example\" expired \
                 2021-01-01T00:00:00Z"
            )],
            inject: Box::new(|| lab.web_present("expired")),
            remove: Box::new(|| lab.web_present("good")),
        },
        // The service behind the web server is down and it answers 503; the path is fine.
        Fault {
            code: "service_error",
            summary: vec![format!(
                "the service fails while its path answers: http://{GOOD_NAME}{APP_PATH} from pod \
                 and host (corp-web): answers 503"
            )],
            inject: Box::new(|| lab.web_app(None)),
            remove: Box::new(|| lab.web_app(Some(HEALTHY_BODY))),
        },
        // The on-prem host's firewall rejects the LDAP port; everything else on-prem answers.
        Fault {
            code: "onprem_service_down",
            summary: vec![format!(
                "one on-prem service does not answer while the rest of on-prem does: \
                 {ONPREM_IP}:{LDAP_PORT} gives refused from pod and host (onprem-ldap)"
            )],
            inject: Box::new(|| lab.onprem_port_reject(LDAP_PORT, true)),
            remove: Box::new(|| lab.onprem_port_reject(LDAP_PORT, false)),
        },
        // The same port silently dropped: a timeout from both sides, still one service.
        Fault {
            code: "onprem_service_down",
            summary: vec![format!(
                "one on-prem service does not answer while the rest of on-prem does: \
                 {ONPREM_IP}:{LDAP_PORT} gives timeout from pod and host (onprem-ldap)"
            )],
            inject: Box::new(|| lab.onprem_port_drop(LDAP_PORT, true)),
            remove: Box::new(|| lab.onprem_port_drop(LDAP_PORT, false)),
        },
        // A stale record on-prem: the server itself, and so every resolver forwarding to it,
        // answers the database's name with an address outside the on-prem range.
        Fault {
            code: "onprem_dns_wrong_answer",
            summary: vec![format!(
                "the on-prem DNS server answers wrong: {ONPREM_IP} answers {DB_NAME} with A \
                 {LEAK_IP} ({LEAK_IP} {DB_EXPECT}) from pod and host (corp-db)"
            )],
            inject: Box::new(move || restart(onprem_dns, &|| lab.onprem_dns_answering(LEAK_IP))),
            remove: Box::new(move || restart(onprem_dns, &|| lab.onprem_dns())),
        },
        // An entry in the cluster DNS overrides the database's name; on-prem answers right.
        Fault {
            code: "cluster_dns_wrong_answer",
            summary: vec![format!(
                "the pod's resolver answers {DB_NAME} with A {LEAK_IP} ({LEAK_IP} {DB_EXPECT}) \
                 while {ONPREM_IP} answers it as expected (corp-db)"
            )],
            inject: Box::new(move || restart(cluster_dns, &|| lab.cluster_dns(Forward::Override))),
            remove: Box::new(move || restart(cluster_dns, &|| lab.cluster_dns(Forward::Onprem))),
        },
        // The node's segmentation rule is removed: the pod reaches the management port.
        Fault {
            code: "blocked_target_reachable",
            summary: vec![format!(
                "a target that must stay blocked answers: {ONPREM_IP}:{MGMT_PORT} from pod \
                 (mgmt-ssh)"
            )],
            inject: Box::new(|| lab.pod_port_drop(MGMT_PORT, false)),
            remove: Box::new(|| lab.pod_port_drop(MGMT_PORT, true)),
        },
        // The node routes on-prem to a gateway that is not there: everything on-prem fails from
        // both sides, and the wrong route, not the tunnel, is named.
        Fault {
            code: "route_mismatch",
            summary: vec![format!(
                "onprem-route (host): 198.19.0.0/16 via {NO_SUCH_GATEWAY} dev eth0 src {NODE_IP} \
                 (expected via {VNET_GW})"
            )],
            inject: Box::new(|| lab.node_onprem_route(Some(NO_SUCH_GATEWAY))),
            remove: Box::new(|| lab.node_onprem_route(None)),
        },
        // The tunnel narrows and says so: the path MTU falls below the minimum, no black hole.
        // Last, since the narrower path MTU stays cached in the pod and the node for minutes.
        Fault {
            code: "path_mtu_low",
            summary: vec![format!(
                "the path MTU is below the configured minimum: {ONPREM_IP} carries {NARROW_MTU} \
                 bytes, below the minimum {TUNNEL_MTU}, from pod and host (tunnel-mtu)"
            )],
            inject: Box::new(|| lab.vnet_tunnel_mtu(NARROW_MTU)),
            remove: Box::new(|| lab.vnet_tunnel_mtu(TUNNEL_MTU)),
        },
    ]
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn each_fault_yields_exactly_its_diagnosis_and_a_healthy_lab_none() {
    let test = "each_fault_yields_exactly_its_diagnosis";
    if !dnsmasq_available(test) || !turnserver_available(test) || !nginx_available(test) {
        return;
    }
    let Some(lab) = Lab::new("diagnose") else {
        return;
    };
    let onprem_dns = Cell::new(lab.onprem_dns());
    let cluster_dns = Cell::new(lab.cluster_dns(Forward::Onprem));
    lab.serve_tcp(Host::Onprem, SocketAddr::from((ONPREM_IP, LDAP_PORT)));
    lab.serve_tcp(Host::Onprem, SocketAddr::from((ONPREM_IP, APP_PORT)));
    lab.serve_tcp(Host::Onprem, SocketAddr::from((ONPREM_IP, MGMT_PORT)));
    lab.pod_port_drop(MGMT_PORT, true);
    lab.start_coturn(STUN_PORT);
    let web = lab.onprem_web();
    // The node tracks connections, as a real node does; masquerade is off.
    lab.masquerade(false);
    let agent = Agent::start(&lab, &config(&lab, &web));
    agent.wait_ready();

    // Healthy: no diagnosis from the first round on, every code exported at 0, and `check`
    // agrees.
    let (_, first) = agent.healthz_json();
    assert!(codes(&first).is_empty(), "after the first round: {first:#}");
    let (verdict, _) = expect_exactly(&agent, &[]);
    assert_eq!(verdict["status"], "ok", "{verdict:#}");
    let out = run_cli(
        &lab,
        Host::Pod,
        &["check", "--config", &config_path(&lab), "--format", "json"],
    );
    let checked: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(out.status.code(), Some(0), "{checked:#}");
    assert_eq!(checked["diagnoses"], serde_json::json!([]), "{checked:#}");

    let mut timings: Vec<(&str, Duration)> = Vec::new();
    for fault in faults(&lab, &onprem_dns, &cluster_dns) {
        let code = fault.code;
        (fault.inject)();
        let (verdict, took) = expect_exactly(&agent, &[code]);
        timings.push((code, took));
        let diagnosis = &verdict["diagnoses"][0];
        let summary = diagnosis["summary"].as_str().unwrap_or_default();
        let hint = diagnosis["hint"].as_str().unwrap_or_default();
        for piece in &fault.summary {
            assert!(summary.contains(piece.as_str()), "{code}: {summary}");
        }
        assert!(!hint.is_empty(), "{diagnosis}");
        let (status, text) = agent.healthz();
        assert_eq!(status, 503, "{text}");
        assert!(
            text.contains(&format!("\ndiagnosis {code}: {summary}\n  hint: {hint}\n")),
            "{text}"
        );
        assert_eq!(
            check_diagnoses(&lab),
            [code],
            "hybridprobe check under {code}"
        );
        (fault.remove)();
        expect_healthy(&agent, &format!("{code} was undone"));
    }
    eprintln!("time from fault to its diagnosis (1 s intervals):");
    for (code, took) in timings {
        eprintln!("  {code:<24} {:.1}s", took.as_secs_f64());
    }
}

/// A kubenet-style node: pod traffic to on-prem is masqueraded to the node's address, and a
/// check says so (`to`). Translated to another address instead, it yields exactly
/// `masquerade_unexpected`, naming both addresses; restored, nothing.
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn an_unexpected_masquerade_address_yields_its_diagnosis() {
    let test = "an_unexpected_masquerade_address";
    if !turnserver_available(test) {
        return;
    }
    let Some(lab) = Lab::new("diag-snat") else {
        return;
    };
    lab.serve_tcp(Host::Onprem, SocketAddr::from((ONPREM_IP, LDAP_PORT)));
    lab.start_coturn(STUN_PORT);
    lab.masquerade(true);
    let config = every_second(
        &lab,
        &format!(
            r#"  - name: onprem-ldap
    tcp: {{ target: "{ONPREM_IP}:{LDAP_PORT}" }}
  - name: kubenet-ip
    netns: [pod]
    source_ip: {{ stun: "{ONPREM_IP}:{STUN_PORT}", masquerade: expected, to: {NODE_IP} }}
"#
        ),
    );
    let agent = Agent::start(&lab, &config);
    agent.wait_ready();
    expect_exactly(&agent, &[]);

    lab.snat_to(OTHER_NODE_IP);
    let (verdict, _) = expect_exactly(&agent, &["masquerade_unexpected"]);
    let summary = verdict["diagnoses"][0]["summary"]
        .as_str()
        .unwrap_or_default();
    assert!(
        summary.starts_with(&format!(
            "on-prem sees the pod's {POD_IP} masqueraded to {OTHER_NODE_IP} instead of {NODE_IP}"
        )),
        "{summary}"
    );
    assert!(summary.ends_with("(kubenet-ip)"), "{summary}");

    lab.masquerade(true);
    expect_healthy(&agent, "the node's own masquerade address was restored");
}

/// How long the lab stays healthy first: more rounds than a round-trip baseline needs.
const HEALTHY_FOR: Duration = Duration::from_secs(15);
/// How long the loss is kept up, every verdict read: the diagnosis must hold throughout.
const LOSSY_FOR: Duration = Duration::from_secs(12);
/// Loss is read from the last few rounds, so it clears a few rounds after the loss ends.
const LOSS_CLEARS: Duration = Duration::from_secs(12);
/// What loss makes of DNS and TCP checks when it is not recognised: symptoms read as causes.
const LOSS_SYMPTOMS: [&str; 4] = [
    "cluster_dns_forwarding",
    "dns_tcp_blocked",
    "onprem_dns_down",
    "onprem_service_down",
];

/// A third of the tunnel's packets dropped at random, in each direction: the agent names the
/// loss, from pod and host, and none of the DNS diagnoses its timeouts look like; with the loss
/// gone, the diagnosis clears. Loss is random, so only what must hold is asserted: pings of 10
/// echoes all lost or none lost through a 1-in-3 drop each way are a chance in hundreds.
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn a_lossy_tunnel_is_named_and_explains_its_dns_timeouts() {
    let test = "a_lossy_tunnel_is_named";
    if !dnsmasq_available(test) || !turnserver_available(test) || !nginx_available(test) {
        return;
    }
    let Some(lab) = Lab::new("lossy") else {
        return;
    };
    let _onprem_dns = lab.onprem_dns();
    let _cluster_dns = lab.cluster_dns(Forward::Onprem);
    lab.serve_tcp(Host::Onprem, SocketAddr::from((ONPREM_IP, LDAP_PORT)));
    lab.serve_tcp(Host::Onprem, SocketAddr::from((ONPREM_IP, APP_PORT)));
    lab.start_coturn(STUN_PORT);
    let web = lab.onprem_web();
    lab.masquerade(false);
    let agent = Agent::start(&lab, &config(&lab, &web));
    agent.wait_ready();
    // Healthy long enough for a baseline of round trips and a full window of rounds: neither
    // loss nor a slower path is seen where there is none.
    let (healthy, _) = expect_exactly(&agent, &[]);
    hold(&agent, &[], HEALTHY_FOR, &healthy);

    lab.tunnel_loss(true);
    let (lossy, _) = expect_exactly(&agent, &["tunnel_lossy"]);
    hold(&agent, &["tunnel_lossy"], LOSSY_FOR, &lossy);
    let (_, verdict) = agent.healthz_json();
    let summary = verdict["diagnoses"][0]["summary"]
        .as_str()
        .unwrap_or_default();
    for netns in ["pod", "host"] {
        let seen_from = format!("onprem-ping ({netns}): echo loss");
        assert!(summary.contains(&seen_from), "{summary}");
    }
    let metrics = agent.metrics();
    assert_eq!(
        metric(
            &metrics,
            "hybridprobe_diagnosis",
            &[("code", "tunnel_lossy")]
        ),
        Some(1.0)
    );
    // Any one round may lose every echo but one (then there is no jitter) or none: within a few
    // rounds, a scrape shows both namespaces' pings losing some, with jitter, and the replies'
    // hop limits. The agent runs as root, so echoes go over raw sockets, which see the replies'
    // TTL: the pod's replies cross the node as one more hop.
    lab.wait_until(
        "loss, jitter and hop limits in one scrape",
        LOSSY_FOR,
        || {
            let metrics = agent.metrics();
            let of = |name: &str, netns: &str| {
                metric(
                    &metrics,
                    name,
                    &[("probe", "onprem-ping"), ("netns", netns)],
                )
            };
            let lossy = |netns| {
                let loss = of("hybridprobe_icmp_loss_ratio", netns).unwrap_or(-1.0);
                loss > 0.0 && loss < 1.0 && of("hybridprobe_icmp_jitter_seconds", netns).is_some()
            };
            let (pod, host) = (
                of("hybridprobe_icmp_reply_hop_limit", "pod"),
                of("hybridprobe_icmp_reply_hop_limit", "host"),
            );
            let hops = pod.zip(host).is_some_and(|(pod, host)| pod + 1.0 == host);
            lossy("pod") && lossy("host") && hops
        },
    );
    let once = check_diagnoses(&lab);
    assert!(once.contains(&"tunnel_lossy".to_owned()), "check: {once:?}");
    for symptom in LOSS_SYMPTOMS {
        assert!(!once.contains(&symptom.to_owned()), "check: {once:?}");
    }

    lab.tunnel_loss(false);
    lab.wait_until("a healthy lab after the loss", LOSS_CLEARS, || {
        let (code, verdict) = agent.healthz_json();
        code == 200 && codes(&verdict).is_empty()
    });
}

fn config_path(lab: &Lab) -> String {
    lab.tmpdir().join("agent.yaml").display().to_string()
}

/// The diagnoses at the end of one `hybridprobe check` table, with the agent's config; the
/// command must exit 1.
fn check_diagnoses(lab: &Lab) -> Vec<String> {
    let out = run_cli(lab, Host::Pod, &["check", "--config", &config_path(lab)]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{table}");
    let lines: Vec<&str> = table.lines().collect();
    let mut codes = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some(rest) = line.strip_prefix("diagnosis ") {
            let hint = lines.get(i + 1).copied().unwrap_or_default();
            assert!(hint.starts_with("  hint: "), "{table}");
            codes.push(rest.split(':').next().unwrap_or_default().to_owned());
        }
    }
    codes
}
