//! End to end: evidence captured when a check turns failing names what the fault changed, from
//! both namespaces: the answer a stale DNS record gives, the silent hop behind a dead tunnel,
//! the SNAT'd conntrack tuple of masqueraded pod traffic, the pod's path ending at the node when
//! the node drops its traffic, the path MTU the kernel learned from a narrowed tunnel and none
//! learnt from a black hole; a flapping check is captured no more often than the bound;
//! `check --explain` prints the same evidence after its table; an IPv6 check's traceroute goes
//! silent past the VNET gateway when only IPv6 across the tunnel is dropped, and the host's
//! conntrack holds its untranslated IPv6 flow.
//!
//! One lab serves every fault, one after the other, each removed before the next; one agent
//! serves the first ones, and a fresh one (an empty store) each of the last three.

mod lab;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use lab::dns::{dnsmasq_available, Forward, DB_NAME, LEAK_IP};
use lab::{
    Host, Lab, NODE_IP, NODE_POD_GW, NODE_POD_GW6, ONPREM_IP, ONPREM_IP6, POD_IP6, TUNNEL_MTU,
    VNET_GW, VNET_GW6,
};
use serde_json::Value;
use support::{
    check, metric, piece, pod_and_host_config, run_cli, status_kib, write_config, Agent, Resolv,
};

const LDAP_PORT: u16 = 389;
/// The narrowed tunnel's MTU, below the `tunnel-mtu` check's minimum of [`TUNNEL_MTU`].
const NARROW_MTU: u32 = 1300;
/// The base DaemonSet's memory limit.
const MEMORY_LIMIT_KIB: u64 = 64 * 1024;
/// The port of the check that is made to flap: refused, then served, over and over.
const FLAP_PORT: u16 = 2389;
/// A round every second; a capture takes at most `evidence.timeout` after the round that
/// turned the check failing, with slack for a busy machine.
const WITHIN: Duration = Duration::from_secs(20);

/// Each check is captured once per hour at most, so every fault after a check's first is
/// rate limited for it: the flapping check's bound is exact.
fn config(lab: &Lab) -> String {
    let probes = format!(
        r#"  - name: onprem-ldap
    tcp: {{ target: "{ONPREM_IP}:{LDAP_PORT}" }}
  - name: corp-db
    dns: {{ query: {DB_NAME}, servers: ["{ONPREM_IP}"], expect: {{ within: [198.19.0.0/16] }} }}
  - name: flappy
    netns: [pod]
    tcp: {{ target: "{ONPREM_IP}:{FLAP_PORT}" }}
  - name: tunnel-mtu
    path_mtu: {{ target: {ONPREM_IP}, min: {TUNNEL_MTU} }}
evidence: {{ min_interval: 1h, timeout: 5s, max_concurrent: 8 }}
"#
    );
    pod_and_host_config(
        lab,
        Resolv::ClusterAndOnprem,
        "{ interval: 1s, timeout: 1s }",
        &probes,
    )
}

/// The piece's text; a piece that says it is unavailable fails the test with its reason.
fn text<'c>(capture: &'c Value, what: &str, netns: &str) -> &'c str {
    let piece = piece(capture, what, netns);
    piece["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{what} from {netns} has no text: {piece:#}"))
}

/// Every piece says how and when it was taken, and both namespaces are in the capture.
fn assert_well_formed(capture: &Value, failed_in: &str) {
    assert_eq!(capture["netns"], failed_in, "{capture:#}");
    let pieces = capture["pieces"].as_array().expect("pieces");
    for piece in pieces {
        assert!(
            piece["source"].as_str().is_some_and(|s| !s.is_empty()),
            "{piece:#}"
        );
        assert!(
            piece["taken_at"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{piece:#}"
        );
        assert!(
            piece["text"].is_string() != piece["unavailable"].is_string(),
            "{piece:#}"
        );
    }
    for netns in ["pod", "host"] {
        assert!(
            pieces
                .iter()
                .any(|p| p["netns"] == netns && p["what"] == "route"),
            "no route from {netns}: {capture:#}"
        );
        assert!(
            pieces
                .iter()
                .any(|p| p["netns"] == netns && p["what"] == "resolv_conf"),
            "no resolv.conf from {netns}: {capture:#}"
        );
    }
    assert!(
        text(capture, "rounds", failed_in).contains("last: "),
        "{capture:#}"
    );
}

fn captures(agent: &Agent, probe: &str, netns: &str, outcome: &str) -> f64 {
    let labels = [("probe", probe), ("netns", netns), ("outcome", outcome)];
    metric(
        &agent.metrics(),
        "hybridprobe_evidence_captures_total",
        &labels,
    )
    .unwrap_or(0.0)
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn evidence_names_what_each_fault_changed_from_both_namespaces() {
    let test = "evidence_names_what_each_fault_changed";
    if !dnsmasq_available(test) {
        return;
    }
    let Some(lab) = Lab::new("evidence") else {
        return;
    };
    let mut onprem_dns = lab.onprem_dns();
    let _cluster_dns = lab.cluster_dns(Forward::Onprem);
    lab.serve_tcp(Host::Onprem, SocketAddr::from((ONPREM_IP, LDAP_PORT)));
    lab.serve_tcp(Host::Onprem, SocketAddr::from((ONPREM_IP, FLAP_PORT)));
    lab.masquerade(false);
    let config = config(&lab);
    let agent = Agent::start(&lab, &config);
    agent.wait_ready();
    let (_, healthy) = agent.healthz_json();
    assert_eq!(healthy["status"], "ok", "{healthy:#}");
    for c in healthy["checks"].as_array().unwrap() {
        assert!(
            c.get("evidence").is_none(),
            "a passing check shows none: {c:#}"
        );
    }

    // A stale record on-prem: the name resolves to an address outside the on-prem range, and
    // the capture shows that answer from both namespaces.
    lab.stop(onprem_dns);
    onprem_dns = lab.onprem_dns_answering(LEAK_IP);
    let db = agent.wait_evidence("corp-db", "pod", WITHIN);
    assert_well_formed(&db, "pod");
    assert_eq!(db["trigger"]["result"], "mismatch", "{db:#}");
    for netns in ["pod", "host"] {
        let answer = text(&db, "resolved", netns);
        assert_eq!(answer, format!("{DB_NAME}: {LEAK_IP}"), "{db:#}");
    }
    lab.stop(onprem_dns);
    let _onprem_dns = lab.onprem_dns();
    agent.wait_check("corp-db", "pod", "success", WITHIN);

    // A flapping service: three turns to failing yield one capture; the others are rate
    // limited, and the evidence list holds the one.
    for turn in 1..=3 {
        lab.onprem_port_reject(FLAP_PORT, true);
        agent.wait_check("flappy", "pod", "refused", WITHIN);
        let flap = agent.wait_evidence("flappy", "pod", WITHIN);
        assert_well_formed(&flap, "pod");
        let (_, verdict) = agent.healthz_json();
        let kept = check(&verdict, "flappy", "pod")["evidence"]
            .as_array()
            .map(Vec::len);
        assert_eq!(kept, Some(1), "turn {turn}: {verdict:#}");
        lab.onprem_port_reject(FLAP_PORT, false);
        agent.wait_check("flappy", "pod", "success", WITHIN);
    }
    assert_eq!(captures(&agent, "flappy", "pod", "captured"), 1.0);
    assert_eq!(captures(&agent, "flappy", "pod", "rate_limited"), 2.0);

    // The tunnel is down and the node masquerades pod traffic: each namespace's route still
    // points at its gateway, the traceroute goes silent past the VNET gateway, and the host's
    // conntrack entry of the pod's flow is translated to the node's address.
    lab.masquerade(true);
    lab.tunnel_drop(true);
    let pod = agent.wait_evidence("onprem-ldap", "pod", WITHIN);
    assert_well_formed(&pod, "pod");
    assert_eq!(pod["trigger"]["result"], "timeout", "{pod:#}");
    let route = text(&pod, "route", "pod");
    assert!(
        route.starts_with(&format!("{ONPREM_IP} via {NODE_POD_GW} ")),
        "{route}"
    );
    let route = text(&pod, "route", "host");
    assert!(
        route.starts_with(&format!("{ONPREM_IP} via {VNET_GW} ")),
        "{route}"
    );
    let trace = text(&pod, "traceroute", "pod");
    assert!(
        trace.contains(&format!("1 {NODE_POD_GW}, 2 {VNET_GW}, then no answer")),
        "{trace}"
    );
    let trace = text(&pod, "traceroute", "host");
    assert!(
        trace.contains(&format!("1 {VNET_GW}, then no answer")),
        "{trace}"
    );
    let snat = text(&pod, "conntrack", "host");
    assert!(
        snat.contains(&format!("replies go to {NODE_IP}:")),
        "{snat}"
    );
    assert!(snat.contains("SNAT or masquerade"), "{snat}");
    let host = agent.wait_evidence("onprem-ldap", "host", WITHIN);
    assert_well_formed(&host, "host");
    let own = text(&host, "conntrack", "host");
    assert!(own.contains("not translated"), "{own}");
    assert!(text(&host, "path_mtu", "host").contains(&ONPREM_IP.to_string()));
    // With evidence held for every failing check, the agent stays within the DaemonSet's
    // memory limit.
    let peak = status_kib(lab.pid(agent.handle), "VmHWM:");
    eprintln!("agent peak RSS with evidence held: {peak} KiB");
    assert!(peak < MEMORY_LIMIT_KIB, "peak RSS {peak} KiB");

    // `check --explain` takes its own capture for each failing check, right after its round.
    let path = write_config(&lab, "check.yaml", &config);
    let out = run_cli(&lab, Host::Pod, &["check", "--config", &path, "--explain"]);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{printed}");
    assert!(
        printed.contains("explain onprem-ldap in pod: timeout: "),
        "{printed}"
    );
    assert!(
        printed.contains("diagnosis onprem_unreachable: "),
        "{printed}"
    );
    assert!(
        printed.contains("  traceroute in pod (UDP traceroute, 5 hops"),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("2 {VNET_GW}, then no answer")),
        "{printed}"
    );
    let out = run_cli(
        &lab,
        Host::Pod,
        &["check", "--config", &path, "--explain", "--format", "json"],
    );
    let json: Value = serde_json::from_slice(&out.stdout).expect("check --explain JSON");
    let explained = &check(&json, "onprem-ldap", "pod")["evidence"][0];
    assert!(
        text(explained, "conntrack", "host").contains(&format!("replies go to {NODE_IP}:")),
        "{explained:#}"
    );
    lab.tunnel_drop(false);
    lab.masquerade(false);
    agent.wait_check("onprem-ldap", "pod", "success", WITHIN);
    let (_, verdict) = agent.healthz_json();
    assert!(
        check(&verdict, "onprem-ldap", "pod")
            .get("evidence")
            .is_none(),
        "a recovered check shows none: {verdict:#}"
    );

    // The node drops what the pod sends on-prem, and a fresh agent (an empty store) starts
    // into it: its checks fail from the first round. The pod's traceroute ends at the node,
    // the host's reaches the target, and the dropped flow never got a conntrack entry.
    lab.stop(agent.handle);
    lab.pod_forward_drop(true);
    let agent = Agent::start(&lab, &config);
    let blocked = agent.wait_evidence("onprem-ldap", "pod", WITHIN);
    assert_well_formed(&blocked, "pod");
    let trace = text(&blocked, "traceroute", "pod");
    assert!(
        trace.contains(&format!("1 {NODE_POD_GW}, then no answer")),
        "{trace}"
    );
    let trace = text(&blocked, "traceroute", "host");
    assert!(
        trace.contains(&format!("{ONPREM_IP} reached in ")),
        "{trace}"
    );
    let dropped = text(&blocked, "conntrack", "host");
    assert!(
        dropped.contains("no entry in the host's table"),
        "{dropped}"
    );
    lab.pod_forward_drop(false);

    // The tunnel narrows and says so with fragmentation-needed: the path MTU search of a fresh
    // agent's first round leaves the kernel an MTU for the target, which the capture reads.
    lab.stop(agent.handle);
    lab.vnet_tunnel_mtu(NARROW_MTU);
    let agent = Agent::start(&lab, &config);
    let narrow = agent.wait_evidence("tunnel-mtu", "pod", WITHIN);
    assert_eq!(narrow["trigger"]["result"], "mtu_low", "{narrow:#}");
    let cached = text(&narrow, "path_mtu", "pod");
    assert!(
        cached.starts_with(&format!("{ONPREM_IP} mtu {NARROW_MTU} ")),
        "{cached}"
    );

    // The same narrowed tunnel as a black hole, its fragmentation-needed filtered: the kernel
    // learns nothing, so beside the check's black hole the capture shows no cached path MTU,
    // and a traceroute (small packets) that still reaches the target.
    lab.stop(agent.handle);
    lab.frag_needed_drop(true);
    for h in [Host::Pod, Host::Node] {
        // Forget what the narrowed tunnel taught, so only the black hole is seen.
        lab.must(h, "ip", &["route", "flush", "cache"]);
    }
    let agent = Agent::start(&lab, &config);
    let hole = agent.wait_evidence("tunnel-mtu", "pod", WITHIN);
    assert_eq!(hole["trigger"]["result"], "blackhole", "{hole:#}");
    let uncached = text(&hole, "path_mtu", "pod");
    assert!(
        uncached.starts_with(&format!("{ONPREM_IP}: no path MTU cached")),
        "{uncached}"
    );
    let trace = text(&hole, "traceroute", "pod");
    assert!(trace.contains(&ONPREM_IP.to_string()), "{trace}");
    lab.frag_needed_drop(false);
    lab.vnet_tunnel_mtu(TUNNEL_MTU);
}

/// IPv6 across the tunnel dropped: the IPv6 check's evidence traces over IPv6, silent past the
/// VNET gateway, from both namespaces.
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn an_ipv6_check_traces_its_own_family() {
    let Some(lab) = Lab::new("evidence-v6") else {
        return;
    };
    lab.serve_tcp(Host::Onprem, SocketAddr::from((ONPREM_IP6, LDAP_PORT)));
    // Captured at every turn to failing: a first round racing neighbour discovery may be one.
    let probes = format!(
        r#"  - name: ldap-6
    tcp: {{ target: "[{ONPREM_IP6}]:{LDAP_PORT}" }}
evidence: {{ min_interval: 1s, timeout: 5s }}
"#
    );
    let text = pod_and_host_config(&lab, Resolv::Own, "{ interval: 1s, timeout: 1s }", &probes);
    // The node tracks IPv6 flows, as a real node does, and translates none.
    lab.masquerade6(false);
    let agent = Agent::start(&lab, &text);
    agent.wait_check("ldap-6", "pod", "success", WITHIN);
    lab.tunnel_drop_ip6(true);
    let silent = format!("1 {NODE_POD_GW6}, 2 {VNET_GW6}, then no answer");
    let mut capture = Value::Null;
    lab.wait_until("a capture of the dropped tunnel", WITHIN, || {
        let (_, verdict) = agent.healthz_json();
        capture = check(&verdict, "ldap-6", "pod")["evidence"][0].clone();
        !capture.is_null()
            && piece(&capture, "traceroute", "pod")["text"]
                .as_str()
                .is_some_and(|trace| trace.contains(&silent))
    });
    let trace = self::text(&capture, "traceroute", "host");
    assert!(
        trace.contains(&format!("1 {VNET_GW6}, then no answer")),
        "{trace}"
    );
    // The host's conntrack holds the pod's IPv6 flow, replies going back to the pod itself.
    let flow = self::text(&capture, "conntrack", "host");
    let sent = format!("udp [{POD_IP6}]:");
    let to = format!(" -> [{ONPREM_IP6}]:{LDAP_PORT}: replies go back to [{POD_IP6}]:");
    assert!(flow.starts_with(&sent) && flow.contains(&to), "{flow}");
    assert!(flow.ends_with("not translated"), "{flow}");
}
