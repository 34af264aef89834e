//! End to end, broken conditions: the agent without each privilege it may lack, and the host
//! namespace going away under a running agent. Each takes away only the checks that need it,
//! every failure says why, and the agent never stops answering.

mod lab;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use lab::{dns, Host, Lab, ONPREM_IP, POD_IP};
use serde_json::Value;
use support::{assert_alive, metric, piece, result, rounds, runs, write_config, Agent, BIN, PORT};

const LDAP_PORT: u16 = 389;
const REFLECT_PORT: u16 = 3479;

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

/// Why the piece is missing; a piece that has text fails the test.
fn unavailable<'c>(capture: &'c Value, what: &str, netns: &str) -> &'c str {
    let piece = piece(capture, what, netns);
    piece["unavailable"]
        .as_str()
        .unwrap_or_else(|| panic!("{what} from {netns} is not unavailable: {piece:#}"))
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
    // The failing trace's evidence says which of its pieces needed the capability; the rest
    // were taken.
    let capture = agent.wait_evidence("trace", "pod", Duration::from_secs(20));
    for netns in ["pod", "host"] {
        let why = unavailable(&capture, "traceroute", netns);
        assert!(why.contains("needs CAP_NET_RAW"), "{why}");
        assert!(
            piece(&capture, "route", netns)["text"].is_string(),
            "{capture:#}"
        );
    }
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
    // A host check's evidence: the host's pieces say why they are missing, the pod's are there.
    let capture = agent.wait_evidence("ldap", "host", Duration::from_secs(20));
    for what in ["resolv_conf", "route", "traceroute", "conntrack"] {
        let why = unavailable(&capture, what, "host");
        assert!(why.contains("needs CAP_SYS_ADMIN"), "{what}: {why}");
    }
    assert!(
        piece(&capture, "route", "pod")["text"].is_string(),
        "{capture:#}"
    );
    assert_alive(&lab, agent.handle);
    lab.stop(agent.handle);

    // Without CAP_NET_ADMIN only the conntrack evidence of the source_ip check goes (and the
    // conntrack piece of a capture); the check itself still runs and passes.
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
    // A check that fails meanwhile gets its evidence; only the conntrack piece is missing, and
    // it says why.
    lab.onprem_port_reject(LDAP_PORT, true);
    let capture = agent.wait_evidence("ldap", "pod", Duration::from_secs(20));
    let why = unavailable(&capture, "conntrack", "host");
    assert_eq!(why, "needs CAP_NET_ADMIN in the host namespace");
    assert!(
        piece(&capture, "traceroute", "pod")["text"].is_string(),
        "{capture:#}"
    );
    lab.onprem_port_reject(LDAP_PORT, false);
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
    let pod_rounds = || rounds(&agent.metrics(), "ldap", "pod");
    let before = pod_rounds();
    lab.wait_until("more pod rounds", Duration::from_secs(5), || {
        pod_rounds() > before
    });
    assert_eq!(agent.get("/livez").0, 200);
    assert_alive(&lab, agent.handle);
}
