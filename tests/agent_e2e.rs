//! End to end: the agent in the lab's pod namespace probing on-prem through the VXLAN "VPN",
//! from the pod and the host (node) namespace, through health, outage and recovery.

mod lab;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use lab::{Host, Lab, NODE_POD_GW, NODE_POD_GW6, ONPREM_IP, VNET_GW, VNET_GW6};
use support::{
    assert_success, check, metric, metric_sum, pod_and_host_config, pod_only, rounds, run_cli,
    write_config, Agent, Resolv,
};

const LDAP_PORT: u16 = 389;
const CLOSED_PORT: u16 = 636;

fn serve_onprem(lab: &Lab) {
    lab.serve_tcp(Host::Onprem, SocketAddr::from((ONPREM_IP, LDAP_PORT)));
}

/// Fast rounds: an outage shows within a couple of seconds.
fn config(lab: &Lab) -> String {
    pod_and_host_config(
        lab,
        Resolv::Own,
        "{ interval: 1s, timeout: 800ms }",
        &format!(
            r#"  - name: dc1-ldap
    tcp: {{ target: "{ONPREM_IP}:{LDAP_PORT}" }}
  - name: dc1-ping
    icmp: {{ target: {ONPREM_IP}, count: 3 }}
  - name: gateway
    icmp: {{ target: gateway, count: 1 }}
"#
        ),
    )
}

const CHECKS: [(&str, &str); 6] = [
    ("dc1-ldap", "pod"),
    ("dc1-ldap", "host"),
    ("dc1-ping", "pod"),
    ("dc1-ping", "host"),
    ("gateway", "pod"),
    ("gateway", "host"),
];

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn healthy_lab_then_tunnel_outage_then_recovery() {
    let Some(lab) = Lab::new("agent-outage") else {
        return;
    };
    serve_onprem(&lab);
    let agent = Agent::start(&lab, &config(&lab));
    assert_eq!(agent.get("/livez").0, 200);
    agent.wait_ready();

    lab.wait_until("every check green", Duration::from_secs(10), || {
        agent.healthz().0 == 200
    });
    let (code, verdict) = agent.healthz_json();
    assert_eq!(code, 200);
    assert_eq!(verdict["status"], "ok");
    for (probe, netns) in CHECKS {
        let c = check(&verdict, probe, netns);
        assert_eq!(c["ok"], true, "{c}");
        assert_eq!(c["result"], "success", "{c}");
    }
    // The gateway keyword resolves per namespace: the pod's is the node, the node's is the VNET.
    let detail = |netns| {
        check(&verdict, "gateway", netns)["detail"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(
        detail("pod").starts_with(&NODE_POD_GW.to_string()),
        "{}",
        detail("pod")
    );
    assert!(
        detail("host").starts_with(&VNET_GW.to_string()),
        "{}",
        detail("host")
    );

    let metrics = agent.metrics();
    for (probe, netns) in CHECKS {
        let labels = [("probe", probe), ("netns", netns)];
        assert_eq!(
            metric(&metrics, "hybridprobe_probe_success", &labels),
            Some(1.0),
            "{probe}/{netns}"
        );
    }
    assert_eq!(
        metric(
            &metrics,
            "hybridprobe_netns_available",
            &[("netns", "host")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &metrics,
            "hybridprobe_icmp_loss_ratio",
            &[("probe", "dc1-ping"), ("netns", "pod")]
        ),
        Some(0.0)
    );
    assert_eq!(metric(&metrics, "hybridprobe_node_healthy", &[]), Some(1.0));

    // The VPN silently drops everything: red within one interval plus timeout (plus slack for
    // a busy machine), with the failing checks named and liveness untouched.
    lab.tunnel_drop(true);
    agent.wait_check("dc1-ldap", "pod", "timeout", Duration::from_secs(8));
    agent.wait_check("dc1-ping", "host", "timeout", Duration::from_secs(8));
    let (code, text) = agent.healthz();
    assert_eq!(code, 503, "{text}");
    assert!(text.starts_with("FAIL on "), "{text}");
    let ldap_line = text
        .lines()
        .find(|l| l.contains("dc1-ldap") && l.contains(" pod "))
        .unwrap_or_else(|| panic!("no dc1-ldap pod line in {text}"));
    assert!(ldap_line.starts_with("FAIL"), "{ldap_line}");
    assert!(
        ldap_line.contains(&format!(
            "tcp connect {ONPREM_IP}:{LDAP_PORT}: no answer within 800ms"
        )),
        "{ldap_line}"
    );
    let (_, verdict) = agent.healthz_json();
    assert_eq!(verdict["status"], "fail");
    assert_eq!(
        check(&verdict, "gateway", "pod")["ok"],
        true,
        "the local path still works"
    );
    assert_eq!(
        agent.get("/livez").0,
        200,
        "liveness must not follow the network"
    );
    let metrics = agent.metrics();
    let ping = [("probe", "dc1-ping"), ("netns", "pod")];
    assert_eq!(
        metric(&metrics, "hybridprobe_icmp_loss_ratio", &ping),
        Some(1.0)
    );
    assert!(
        metric(
            &metrics,
            "hybridprobe_probe_runs_total",
            &[
                ("probe", "dc1-ldap"),
                ("netns", "pod"),
                ("result", "timeout")
            ]
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(metric(&metrics, "hybridprobe_node_healthy", &[]), Some(0.0));

    lab.tunnel_drop(false);
    lab.wait_until("recovery to green", Duration::from_secs(8), || {
        agent.healthz().0 == 200
    });
    let metrics = agent.metrics();
    let changes = metric(
        &metrics,
        "hybridprobe_probe_state_changes_total",
        &[("probe", "dc1-ldap"), ("netns", "pod")],
    );
    assert_eq!(changes, Some(2.0), "down once and up once");
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn refused_connection_is_classified_as_refused() {
    let Some(lab) = Lab::new("agent-refused") else {
        return;
    };
    let text = pod_only(&format!(
        "  - name: closed\n    tcp: {{target: \"{ONPREM_IP}:{CLOSED_PORT}\"}}\n"
    ));
    let agent = Agent::start(&lab, &text);
    agent.wait_check("closed", "pod", "refused", Duration::from_secs(10));
    let (code, verdict) = agent.healthz_json();
    assert_eq!(code, 503);
    let detail = check(&verdict, "closed", "pod")["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(detail.contains("refused"), "{detail}");
    let metrics = agent.metrics();
    let refused = [("probe", "closed"), ("result", "refused")];
    assert!(metric(&metrics, "hybridprobe_probe_runs_total", &refused).unwrap() >= 1.0);
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn missing_host_namespace_leaves_the_pod_side_running() {
    let Some(lab) = Lab::new("agent-no-host") else {
        return;
    };
    serve_onprem(&lab);
    let text = config(&lab).replace(
        &lab.ns_path(Host::Node).display().to_string(),
        "/nonexistent/ns/net",
    );
    let agent = Agent::start(&lab, &text);
    agent.wait_ready();
    agent.wait_check("dc1-ldap", "pod", "success", Duration::from_secs(10));
    let (code, verdict) = agent.healthz_json();
    assert_eq!(code, 503, "configured host checks cannot run: {verdict}");
    for probe in ["dc1-ldap", "dc1-ping", "gateway"] {
        assert_eq!(
            check(&verdict, probe, "pod")["ok"],
            true,
            "{probe}: {verdict}"
        );
        let host = check(&verdict, probe, "host");
        assert_eq!(host["result"], "netns_unavailable", "{host}");
        assert!(
            host["detail"]
                .as_str()
                .unwrap()
                .contains("cannot open /nonexistent/ns/net"),
            "{host}"
        );
    }
    assert_eq!(
        verdict["diagnoses"][0]["code"], "host_netns_unavailable",
        "{verdict}"
    );
    let (_, text) = agent.healthz();
    assert!(
        text.contains("netns host: unavailable: cannot open /nonexistent/ns/net"),
        "{text}"
    );
    let metrics = agent.metrics();
    assert_eq!(
        metric(
            &metrics,
            "hybridprobe_netns_available",
            &[("netns", "host")]
        ),
        Some(0.0)
    );
    assert_eq!(
        metric(&metrics, "hybridprobe_netns_available", &[("netns", "pod")]),
        Some(1.0)
    );
    assert_eq!(agent.get("/livez").0, 200);
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn check_command_reads_what_is_wrong_when_the_tunnel_is_down() {
    let Some(lab) = Lab::new("cli-check") else {
        return;
    };
    serve_onprem(&lab);
    let path = write_config(&lab, "check.yaml", &config(&lab));

    let table = assert_success(&run_cli(&lab, Host::Pod, &["check", "--config", &path]));
    assert!(table.starts_with("OK on "), "{table}");
    assert_eq!(
        table.lines().filter(|l| l.starts_with("ok ")).count(),
        CHECKS.len(),
        "{table}"
    );

    lab.tunnel_drop(true);
    let down = run_cli(&lab, Host::Pod, &["check", "--config", &path]);
    let table = String::from_utf8_lossy(&down.stdout);
    assert_eq!(down.status.code(), Some(1), "{table}");
    assert!(table.starts_with("FAIL on "), "{table}");
    let failing: Vec<&str> = table
        .lines()
        .skip(1)
        .filter(|l| l.starts_with("FAIL "))
        .collect();
    assert_eq!(
        failing.len(),
        4,
        "ldap and ping from both namespaces:\n{table}"
    );
    assert!(failing.iter().all(|l| l.contains("timeout")), "{table}");

    let json = run_cli(
        &lab,
        Host::Pod,
        &["check", "--config", &path, "--format", "json"],
    );
    assert_eq!(json.status.code(), Some(1));
    let verdict: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(verdict["status"], "fail");
    assert_eq!(check(&verdict, "dc1-ping", "host")["result"], "timeout");
    assert_eq!(check(&verdict, "gateway", "host")["result"], "success");
}

/// Without a config the agent derives its checks from the machine: each namespace's gateway,
/// its resolv.conf nameservers (asked a real DNS query), and the Kubernetes API.
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn built_in_profile_checks_what_the_machine_has() {
    if !lab::dns::dnsmasq_available("cli-profile") {
        return;
    }
    let Some(lab) = Lab::new("cli-profile") else {
        return;
    };
    lab.onprem_dns();
    lab.cluster_dns(lab::dns::Forward::Onprem);
    // `ip netns exec` bind-mounts /etc/netns/NAME/resolv.conf over the pod's /etc/resolv.conf.
    let etc = std::path::Path::new("/etc/netns").join(lab.ns_name(Host::Pod));
    let _cleanup = RemoveOnDrop(etc.clone());
    std::fs::create_dir_all(&etc).unwrap();
    let pod_resolv = lab.resolv_conf("pod-resolv.conf", &[lab::dns::CLUSTER_DNS_IP]);
    std::fs::copy(&pod_resolv, etc.join("resolv.conf")).unwrap();
    // 198.19.10.2 does not exist on the on-prem LAN.
    let host_resolv = lab.resolv_conf(
        "host-resolv.conf",
        &[ONPREM_IP, std::net::Ipv4Addr::new(198, 19, 10, 2)],
    );
    lab.serve_tcp(Host::Onprem, SocketAddr::from((ONPREM_IP, 443)));

    let host_netns = lab.ns_path(Host::Node).display().to_string();
    let out = lab.exec(
        Host::Pod,
        "env",
        &[
            &format!("KUBERNETES_SERVICE_HOST={ONPREM_IP}"),
            "KUBERNETES_SERVICE_PORT=443",
            support::BIN,
            "check",
            "--host-netns",
            &host_netns,
            "--host-resolv-conf",
            &host_resolv,
        ],
    );
    let table = String::from_utf8_lossy(&out.stdout);
    let row = |probe: &str, netns: &str| {
        table
            .lines()
            .find(|l| {
                l.split_whitespace().nth(1) == Some(probe)
                    && l.split_whitespace().nth(3) == Some(netns)
            })
            .unwrap_or_else(|| panic!("no {probe}/{netns} row in\n{table}"))
            .to_owned()
    };
    assert!(row("gateway", "pod").starts_with("ok "), "{table}");
    assert!(row("gateway", "host").starts_with("ok "), "{table}");
    // Both namespaces have an IPv6 default route: its gateway is pinged as well.
    for (netns, gateway) in [("pod", NODE_POD_GW6), ("host", VNET_GW6)] {
        let ping = row("gateway-ipv6", netns);
        assert!(ping.starts_with("ok "), "{table}");
        assert!(ping.contains(&format!("{gateway}: 3/3")), "{table}");
    }
    // Each nameserver is asked for the first search domain's SOA, over UDP and TCP.
    let pod_ns = row("nameserver-pod-1", "pod");
    assert!(pod_ns.starts_with("ok "), "{table}");
    assert!(
        pod_ns.contains(&format!(
            "SOA corp.example: {} udp: SOA ns1.corp.example.",
            lab::dns::CLUSTER_DNS_IP
        )),
        "{table}"
    );
    assert!(pod_ns.contains("; tcp: SOA ns1.corp.example."), "{table}");
    assert!(
        row("nameserver-host-1", "host").starts_with("ok "),
        "{table}"
    );
    let dead = row("nameserver-host-2", "host");
    assert!(dead.starts_with("FAIL "), "{table}");
    assert!(
        dead.contains("198.19.10.2 udp: timeout; tcp: timeout"),
        "{table}"
    );
    assert!(row("kubernetes-api", "pod").starts_with("ok "), "{table}");
    assert!(row("kubernetes-api", "host").starts_with("ok "), "{table}");
    assert_eq!(out.status.code(), Some(1), "{table}");
}

struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// On-prem echo targets, IPv4 and IPv6: some answer, some drop every request. Two or three
/// checks ping the same target: a request that gets no answer waits for it all round, so rounds
/// of one target overlap with requests in flight.
const ECHO_TARGETS: [(&str, &str, bool); 12] = [
    ("echo-a", "198.19.10.41", true),
    ("echo-a2", "198.19.10.41", true),
    ("echo-b", "198.19.10.42", true),
    ("echo-c", "198.19.10.43", true),
    ("dropped-d", "198.19.10.44", false),
    ("dropped-d2", "198.19.10.44", false),
    ("dropped-d3", "198.19.10.44", false),
    ("dropped-e", "198.19.10.45", false),
    ("echo6-a", "2001:2:0:1910::41", true),
    ("echo6-a2", "2001:2:0:1910::41", true),
    ("dropped6-d", "2001:2:0:1910::44", false),
    ("dropped6-d2", "2001:2:0:1910::44", false),
];

/// Twelve icmp checks whose rounds overlap, from one namespace: each keeps its own replies (the
/// answering ones lose none, the dropped ones get none), and the namespace holds one ICMP
/// socket per family throughout, whether raw sockets (root, the default) or unprivileged DGRAM
/// ones (ping_group_range set in the pod's namespace), where two checks of one target differ
/// only by sequence.
fn icmp_checks_share_one_socket(lab: &Lab, dgram: bool) {
    for ip in [
        "198.19.10.41/32",
        "198.19.10.42/32",
        "198.19.10.43/32",
        "198.19.10.44/32",
        "198.19.10.45/32",
    ] {
        lab.must(Host::Onprem, "ip", &["addr", "add", ip, "dev", "eth0"]);
    }
    for ip in ["2001:2:0:1910::41/128", "2001:2:0:1910::44/128"] {
        lab.must(
            Host::Onprem,
            "ip",
            &["-6", "addr", "add", ip, "dev", "eth0", "nodad"],
        );
    }
    // The on-prem gateway's first request for a new IPv6 neighbour can lose the first echoes:
    // learn it before the checks start, so every round counts.
    lab.must(
        Host::Pod,
        "ping",
        &["-6", "-c", "1", "-W", "2", "2001:2:0:1910::41"],
    );
    lab.nft(
        Host::Onprem,
        "table inet hplab {\n chain echo_drop {\n  type filter hook input priority 0; policy accept;\n  \
         ip daddr { 198.19.10.44, 198.19.10.45 } icmp type echo-request drop\n  \
         ip6 daddr 2001:2:0:1910::44 icmpv6 type echo-request drop\n }\n}\n",
    );
    if dgram {
        lab.must(
            Host::Pod,
            "sysctl",
            &["-w", "net.ipv4.ping_group_range=0 2147483647"],
        );
    }
    let mut text = String::from(
        "netns: { pod: {} }\nevidence: { enabled: false }\n\
         defaults: { interval: 1s, timeout: 800ms }\nprobes:\n",
    );
    for (name, ip, _) in ECHO_TARGETS {
        text.push_str(&format!(
            "  - {{ name: {name}, icmp: {{ target: \"{ip}\", count: 5 }} }}\n"
        ));
    }
    let agent = Agent::start(lab, &text);
    for (name, _, _) in ECHO_TARGETS {
        agent.wait_rounds(name, "pod", 3, Duration::from_secs(15));
    }
    // Rounds of five requests 100 ms apart overlap: one socket per family at every look, none
    // per round.
    let tables: [&str; 2] = if dgram {
        ["/proc/net/icmp", "/proc/net/icmp6"]
    } else {
        ["/proc/net/raw", "/proc/net/raw6"]
    };
    for _ in 0..5 {
        for table in tables {
            let sockets = lab.must(Host::Pod, "cat", &[table]).lines().count() - 1;
            assert_eq!(sockets, 1, "ICMP sockets in the pod namespace ({table})");
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    let metrics = agent.metrics();
    for (name, _, answers) in ECHO_TARGETS {
        let labels = [("probe", name), ("netns", "pod")];
        let runs = rounds(&metrics, name, "pod");
        let (result, loss) = if answers {
            ("success", 0.0)
        } else {
            ("timeout", 1.0)
        };
        let with_result = [("probe", name), ("netns", "pod"), ("result", result)];
        assert_eq!(
            metric_sum(&metrics, "hybridprobe_probe_runs_total", &with_result),
            runs,
            "{name}: every round {result}"
        );
        assert_eq!(
            metric(&metrics, "hybridprobe_icmp_loss_ratio", &labels),
            Some(loss),
            "{name}"
        );
        let replies = metric_sum(&metrics, "hybridprobe_icmp_rtt_seconds_count", &labels);
        assert_eq!(replies > 0.0, answers, "{name}: {replies} replies");
    }
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn icmp_checks_share_a_raw_socket_and_keep_their_own_replies() {
    let Some(lab) = Lab::new("agent-icmp-raw") else {
        return;
    };
    icmp_checks_share_one_socket(&lab, false);
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn icmp_checks_share_a_dgram_socket_and_keep_their_own_replies() {
    let Some(lab) = Lab::new("agent-icmp-dgram") else {
        return;
    };
    icmp_checks_share_one_socket(&lab, true);
}
