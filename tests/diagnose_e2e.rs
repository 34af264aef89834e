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

use lab::dns::{dnsmasq_available, Forward, APP_NAME, APP_PORT, DB_NAME};
use lab::web::{nginx_available, Web, APP_PATH, GOOD_NAME, HEALTHY_BODY, WEB_IP};
use lab::{Host, Lab, ProcHandle, NODE_IP, ONPREM_IP, POD_IP, VNET_GW, VPN_REMOTE};
use support::{codes, metric, pod_and_host_config, run_cli, Agent, Resolv};

const LDAP_PORT: u16 = 389;
const STUN_PORT: u16 = 3478;
/// A gateway on the node's subnet that does not exist.
const NO_SUCH_GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 99);

/// Rounds run every second; a diagnosis must appear within two rounds after the first round
/// that sees the fault (interval, round, interval, round), with slack for a busy machine.
const WITHIN: Duration = Duration::from_secs(6);
/// A diagnosis must stay exactly the same this long: slower symptoms of the same fault (DNS
/// timeouts, the path MTU search) must not add a second one.
const HOLD: Duration = Duration::from_secs(3);

const CODES: [&str; 14] = [
    "config_reload_failed",
    "host_netns_unavailable",
    "route_mismatch",
    "onprem_unreachable",
    "pod_ip_masqueraded",
    "masquerade_missing",
    "pod_path_blocked",
    "onprem_dns_down",
    "dns_tcp_blocked",
    "cluster_dns_forwarding",
    "pmtu_blackhole",
    "resolved_address_down",
    "tls_failure",
    "service_error",
];

fn turnserver_available(test: &str) -> bool {
    let found = std::process::Command::new("turnserver")
        .arg("--version")
        .output()
        .is_ok();
    if !found && std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("{test}: turnserver (coturn) is required under CI (see .ci/packages.txt)");
    }
    if !found {
        eprintln!("skipping {test}: turnserver not found (apt-get install coturn)");
    }
    found
}

/// Every kind of on-prem check from both namespaces: the pod asks the cluster DNS, the host
/// asks on-prem, as on an AKS node joined to an on-prem domain. The web checks come last, so
/// the tunnel's summary names the other targets first.
fn config(lab: &Lab, web: &Web) -> String {
    let ca = web.ca_file.display();
    pod_and_host_config(
        lab,
        Resolv::ClusterAndOnprem,
        "{ interval: 1s, timeout: 1s }",
        &format!(
            r#"  - name: onprem-ldap
    tcp: {{ target: "{ONPREM_IP}:{LDAP_PORT}" }}
  - name: onprem-ping
    icmp: {{ target: {ONPREM_IP} }}
  - name: corp-db
    dns: {{ query: {DB_NAME}, servers: [system, "{ONPREM_IP}"], transport: [udp, tcp],
           expect: {{ within: [198.19.0.0/16] }} }}
  - name: pod-ip
    source_ip: {{ stun: "{ONPREM_IP}:{STUN_PORT}" }}
  - name: tunnel-mtu
    path_mtu: {{ target: {ONPREM_IP} }}
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
"#
        ),
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
    let held = Instant::now();
    while held.elapsed() < HOLD {
        let (_, verdict) = agent.healthz_json();
        assert_eq!(
            codes(&verdict),
            want,
            "the diagnoses changed after settling on {want:?}:\n{verdict:#}\nbefore:\n{last:#}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let metrics = agent.metrics();
    for code in CODES {
        let value = metric(&metrics, "hybridprobe_diagnosis", &[("code", code)]);
        let on = if want.contains(&code) { 1.0 } else { 0.0 };
        assert_eq!(value, Some(on), "hybridprobe_diagnosis{{code={code:?}}}");
    }
    (agent.healthz_json().1, took)
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
            inject: Box::new(|| {
                lab.stop(cluster_dns.get());
                cluster_dns.set(lab.cluster_dns(Forward::Lost));
            }),
            remove: Box::new(|| {
                lab.stop(cluster_dns.get());
                cluster_dns.set(lab.cluster_dns(Forward::Onprem));
            }),
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
