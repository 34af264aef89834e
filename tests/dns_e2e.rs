//! End to end: `dns` probes from the pod and the host namespace against real DNS servers in the
//! lab: dnsmasq on-prem, authoritative for corp.example, and dnsmasq as the cluster DNS in the
//! node namespace, forwarding that zone on-prem. The pod's resolv.conf points at the cluster
//! DNS, the host's at the on-prem server, as on an AKS node joined to an on-prem domain. The
//! truncation tests use real BIND9 on-prem instead (authoritative, UDP answers capped at 512
//! bytes) and unbound as the cluster-side forwarder, which also serves DNS over TLS.

mod lab;
mod support;

use std::time::Duration;

use lab::bind::{
    big_txt, bind_and_unbound_available, BIG_NAME, BIG_RECORDS, BIND_IP, DOT_NAME, UNBOUND_IP,
};
use lab::dns::{
    dnsmasq_available, Forward, CLUSTER_DNS_IP, DB_IP, DB_NAME, LEAK_IP, LEAK_NAME, MISSING_NAME,
};
use lab::{Host, Lab, ProcHandle, NFT_TABLE, ONPREM_IP};
use support::{check, codes, metric, pod_and_host_config, Agent, Resolv};

/// A lab with both DNS servers running.
struct DnsLab {
    lab: Lab,
    onprem: ProcHandle,
    cluster: ProcHandle,
}

fn dns_lab(test_name: &str) -> Option<DnsLab> {
    dns_lab_forwarding(test_name, Forward::Onprem)
}

/// A lab with both DNS servers, the cluster DNS forwarding as `forward` says.
fn dns_lab_forwarding(test_name: &str, forward: Forward) -> Option<DnsLab> {
    if !dnsmasq_available(test_name) {
        return None;
    }
    let lab = Lab::new(test_name)?;
    let onprem = lab.onprem_dns();
    let cluster = lab.cluster_dns(forward);
    Some(DnsLab {
        lab,
        onprem,
        cluster,
    })
}

/// Each (server, transport) pair of the corporate name, both namespaces, plus a negative check.
fn agent_config(lab: &Lab) -> String {
    pod_and_host_config(
        lab,
        Resolv::ClusterAndOnprem,
        "{ interval: 1s, timeout: 800ms }",
        &format!(
            r#"  - name: corp-db
    dns: {{ query: {DB_NAME}, servers: [system, "{ONPREM_IP}"], transport: [udp, tcp],
           expect: {{ within: [198.19.0.0/16] }} }}
  - name: corp-gone
    dns: {{ query: {MISSING_NAME}, expect: {{ rcode: NXDOMAIN }} }}
"#
        ),
    )
}

/// One `check` round with `probes` (YAML list items), as JSON.
fn check_once(lab: &Lab, probes: &str) -> serde_json::Value {
    support::check_once(
        lab,
        Resolv::ClusterAndOnprem,
        "{ interval: 2s, timeout: 1s }",
        probes,
    )
}

fn detail(verdict: &serde_json::Value, probe: &str, netns: &str) -> String {
    check(verdict, probe, netns)["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn dns_success(metrics: &str, netns: &str, server: &str, transport: &str) -> Option<f64> {
    let labels = [
        ("probe", "corp-db"),
        ("netns", netns),
        ("server", server),
        ("transport", transport),
    ];
    metric(metrics, "hybridprobe_dns_success", &labels)
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn healthy_answers_over_udp_and_tcp_from_both_namespaces() {
    let Some(DnsLab { lab, .. }) = dns_lab("dns-healthy") else {
        return;
    };
    let agent = Agent::start(&lab, &agent_config(&lab));
    agent.wait_ready();
    lab.wait_until("every check green", Duration::from_secs(10), || {
        agent.healthz().0 == 200
    });
    let (_, verdict) = agent.healthz_json();
    let onprem = format!("{ONPREM_IP} udp: A {DB_IP}; tcp: A {DB_IP}");
    assert_eq!(
        detail(&verdict, "corp-db", "pod"),
        format!("A {DB_NAME}: system {CLUSTER_DNS_IP} udp: A {DB_IP}; tcp: A {DB_IP} | {onprem}")
    );
    assert_eq!(
        detail(&verdict, "corp-db", "host"),
        format!("A {DB_NAME}: system {ONPREM_IP} udp: A {DB_IP}; tcp: A {DB_IP} | {onprem}")
    );
    // The negative check passes because the name really is missing.
    for (netns, server) in [("pod", CLUSTER_DNS_IP), ("host", ONPREM_IP)] {
        let gone = check(&verdict, "corp-gone", netns);
        assert_eq!(gone["result"], "success", "{gone}");
        assert_eq!(
            gone["detail"],
            format!("A {MISSING_NAME}: system {server} udp: NXDOMAIN")
        );
    }
    let (_, text) = agent.healthz();
    assert!(
        text.contains(&format!("system {CLUSTER_DNS_IP} udp: A {DB_IP}")),
        "{text}"
    );

    let metrics = agent.metrics();
    for netns in ["pod", "host"] {
        for server in ["system", "198.19.10.1"] {
            for transport in ["udp", "tcp"] {
                let labels = [
                    ("probe", "corp-db"),
                    ("netns", netns),
                    ("server", server),
                    ("transport", transport),
                ];
                assert_eq!(
                    metric(&metrics, "hybridprobe_dns_success", &labels),
                    Some(1.0),
                    "{netns} {server} {transport}"
                );
                let queries = metric(
                    &metrics,
                    "hybridprobe_dns_query_duration_seconds_count",
                    &labels,
                );
                assert!(
                    queries.unwrap_or(0.0) >= 1.0,
                    "{netns} {server} {transport}"
                );
            }
        }
    }
    let runs = [("probe", "corp-gone"), ("result", "success")];
    assert!(metric(&metrics, "hybridprobe_probe_runs_total", &runs).unwrap() >= 1.0);
}

/// CoreDNS loses the stub zone: the pod's own resolver answers NXDOMAIN for the corporate name,
/// while on-prem itself, asked directly from the same pod, still answers, and the host (which
/// asks on-prem) stays green. Each pair shows on its own in /healthz and the metrics.
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn cluster_dns_losing_the_forward_fails_only_the_pods_system_resolver() {
    let Some(DnsLab { lab, cluster, .. }) = dns_lab("dns-lost-forward") else {
        return;
    };
    let agent = Agent::start(&lab, &agent_config(&lab));
    agent.wait_check("corp-db", "pod", "success", Duration::from_secs(10));

    lab.stop(cluster);
    lab.cluster_dns(Forward::Lost);
    agent.wait_check("corp-db", "pod", "nxdomain", Duration::from_secs(8));
    let (code, verdict) = agent.healthz_json();
    assert_eq!(code, 503);
    assert_eq!(
        detail(&verdict, "corp-db", "pod"),
        format!(
            "A {DB_NAME}: system {CLUSTER_DNS_IP} udp: NXDOMAIN; tcp: NXDOMAIN | \
             {ONPREM_IP} udp: A {DB_IP}; tcp: A {DB_IP}"
        )
    );
    let host = check(&verdict, "corp-db", "host");
    assert_eq!(host["result"], "success", "{host}");

    let metrics = agent.metrics();
    for transport in ["udp", "tcp"] {
        assert_eq!(dns_success(&metrics, "pod", "system", transport), Some(0.0));
        assert_eq!(
            dns_success(&metrics, "pod", "198.19.10.1", transport),
            Some(1.0)
        );
        assert_eq!(
            dns_success(&metrics, "host", "system", transport),
            Some(1.0)
        );
    }
    let nx = [
        ("probe", "corp-db"),
        ("netns", "pod"),
        ("result", "nxdomain"),
    ];
    assert!(metric(&metrics, "hybridprobe_probe_runs_total", &nx).unwrap() >= 1.0);
}

/// The on-prem server is down: UDP queries go unanswered until the budget runs out, and TCP is
/// refused by the host, from both namespaces.
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn onprem_dns_down_times_out() {
    let Some(DnsLab { lab, onprem, .. }) = dns_lab("dns-onprem-down") else {
        return;
    };
    lab.stop(onprem);
    let verdict = check_once(
        &lab,
        &format!(
            "  - name: corp-db\n    dns: {{ query: {DB_NAME}, servers: [system, \"{ONPREM_IP}\"], transport: [udp, tcp] }}\n"
        ),
    );
    assert_eq!(verdict["status"], "fail", "{verdict}");
    let host = check(&verdict, "corp-db", "host");
    assert_eq!(host["result"], "timeout", "{host}");
    let host_detail = detail(&verdict, "corp-db", "host");
    assert!(
        host_detail.starts_with(&format!(
            "A {DB_NAME}: system {ONPREM_IP} udp: timeout; tcp: refused ("
        )),
        "{host_detail}"
    );
    let pod_detail = detail(&verdict, "corp-db", "pod");
    assert!(
        pod_detail.contains(&format!("| {ONPREM_IP} udp: timeout; tcp: refused (")),
        "{pod_detail}"
    );
    // The cluster DNS cannot reach its upstream either; the pod's resolver fails too.
    assert!(
        !pod_detail.contains(&format!("system {CLUSTER_DNS_IP} udp: A")),
        "{pod_detail}"
    );
    assert_ne!(check(&verdict, "corp-db", "pod")["result"], "success");
}

/// TCP/53 is dropped across the tunnel (large answers would fail): TCP times out, UDP passes.
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn tcp_53_dropped_across_the_tunnel_fails_tcp_only() {
    let Some(DnsLab { lab, .. }) = dns_lab("dns-tcp-drop") else {
        return;
    };
    lab.nft(
        Host::VnetGw,
        &format!(
            "table inet {NFT_TABLE} {{\n  chain dns_tcp {{\n    type filter hook forward priority 0; policy accept;\n    tcp dport 53 drop\n  }}\n}}\n"
        ),
    );
    let verdict = check_once(
        &lab,
        &format!(
            "  - name: onprem-dns\n    dns: {{ query: {DB_NAME}, servers: [\"{ONPREM_IP}\"], transport: [udp, tcp] }}\n"
        ),
    );
    for netns in ["pod", "host"] {
        let c = check(&verdict, "onprem-dns", netns);
        assert_eq!(c["result"], "timeout", "{c}");
        assert_eq!(
            c["detail"],
            format!("A {DB_NAME}: {ONPREM_IP} udp: A {DB_IP}; tcp: timeout")
        );
    }
}

/// A split-horizon answer outside the on-prem range is a mismatch, and the detail says what was
/// answered.
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn an_answer_outside_the_expected_range_is_a_mismatch() {
    let Some(DnsLab { lab, .. }) = dns_lab("dns-mismatch") else {
        return;
    };
    let verdict = check_once(
        &lab,
        &format!(
            "  - name: corp-web\n    dns: {{ query: {LEAK_NAME}, expect: {{ within: [198.19.0.0/16] }} }}\n"
        ),
    );
    for (netns, server) in [("pod", CLUSTER_DNS_IP), ("host", ONPREM_IP)] {
        let c = check(&verdict, "corp-web", netns);
        assert_eq!(c["result"], "mismatch", "{c}");
        assert_eq!(
            c["detail"],
            format!(
                "A {LEAK_NAME}: system {server} udp: A {LEAK_IP} ({LEAK_IP} not within 198.19.0.0/16)"
            )
        );
    }
}

/// One query is one packet: when the answer is lost, the probe does not quietly ask again.
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn a_lost_answer_is_not_asked_again() {
    let Some(DnsLab { lab, onprem, .. }) = dns_lab("dns-one-packet") else {
        return;
    };
    // Answers leaving on-prem are dropped at its gateway; the queries still arrive.
    lab.nft(
        Host::OnpremGw,
        &format!(
            "table inet {NFT_TABLE} {{\n  chain dns_answers {{\n    type filter hook forward priority 0; policy accept;\n    udp sport 53 drop\n  }}\n}}\n"
        ),
    );
    let verdict = check_once(
        &lab,
        &format!(
            "  - name: onprem-udp\n    netns: [pod]\n    dns: {{ query: {DB_NAME}, servers: [\"{ONPREM_IP}\"] }}\n"
        ),
    );
    assert_eq!(check(&verdict, "onprem-udp", "pod")["result"], "timeout");
    let log = lab.logs(onprem);
    let asked = log
        .lines()
        .filter(|l| l.contains(&format!("auth[A] {DB_NAME} from 198.18.2.10")))
        .count();
    assert_eq!(asked, 1, "one query for a round of one pair:\n{log}");
}

/// A lab with BIND9 on-prem (authoritative, UDP answers capped at 512 bytes) and, if asked,
/// unbound on the cluster side forwarding the corporate zone to it; no dnsmasq.
fn bind_lab(test_name: &str, with_unbound: bool) -> Option<Lab> {
    if !bind_and_unbound_available(test_name) {
        return None;
    }
    let lab = Lab::new(test_name)?;
    lab.bind();
    if with_unbound {
        lab.unbound();
    }
    Some(lab)
}

/// The big TXT set, asked over UDP only from `server`, with `extra` spec keys.
fn big_probe(name: &str, server: impl std::fmt::Display, extra: &str) -> String {
    format!(
        "  - name: {name}\n    dns: {{ query: {BIG_NAME}, type: TXT, servers: [\"{server}\"], \
         transport: udp, expect: {{ min_answers: {BIG_RECORDS} }}{extra} }}\n"
    )
}

/// BIND truncates the big TXT set over UDP; the probe follows it over TCP within the round and
/// passes, from the pod and the host, while `truncation: fail` keeps UDP strict.
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn a_truncated_answer_from_bind_is_followed_over_tcp() {
    let Some(lab) = bind_lab("dns-bind-truncated", false) else {
        return;
    };
    let probes = format!(
        "{}{}",
        big_probe("big", BIND_IP, ""),
        big_probe("big-strict", BIND_IP, ", truncation: fail")
    );
    let verdict = check_once(&lab, &probes);
    let followed = format!("TXT {BIG_NAME}: {BIND_IP} udp: truncated, followed over tcp: TXT ");
    let rest = format!("(+{} more)", BIG_RECORDS - 4);
    for netns in ["pod", "host"] {
        let c = check(&verdict, "big", netns);
        assert_eq!(c["result"], "success", "{c}");
        let text = c["detail"].as_str().unwrap_or_default();
        assert!(text.starts_with(&followed), "{text}");
        // BIND rotates the set, so any of its records may come first.
        assert!(text.contains(&big_txt(0)[..7]), "{text}");
        assert!(text.ends_with(&rest), "{text}");

        let strict = check(&verdict, "big-strict", netns);
        assert_eq!(strict["result"], "error", "{strict}");
        assert_eq!(
            strict["detail"],
            format!("TXT {BIG_NAME}: {BIND_IP} udp: truncated (the answer does not fit)")
        );
    }
}

/// TCP/53 dropped in front of BIND: UDP still answers (truncated), the TCP leg times out within
/// the round, the check fails with that, and the diagnosis names TCP/53.
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn a_truncated_answer_with_tcp_blocked_fails_as_dns_tcp_blocked() {
    let Some(lab) = bind_lab("dns-bind-tcp-drop", false) else {
        return;
    };
    lab.bind_tcp_drop(true);
    let verdict = check_once(&lab, &big_probe("big", BIND_IP, ""));
    for netns in ["pod", "host"] {
        let c = check(&verdict, "big", netns);
        assert_eq!(c["result"], "timeout", "{c}");
        assert_eq!(
            c["detail"],
            format!("TXT {BIG_NAME}: {BIND_IP} udp: truncated, followed over tcp: timeout")
        );
    }
    assert_eq!(codes(&verdict), ["dns_tcp_blocked"], "{verdict:#}");
}

/// unbound on the cluster side forwards the corporate zone to BIND and answers the pod (and the
/// host), the big set too: truncated over UDP by unbound, followed over TCP.
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn unbound_forwarding_to_bind_answers_from_the_pod_side() {
    let Some(lab) = bind_lab("dns-unbound-forward", true) else {
        return;
    };
    let probes = format!(
        "  - name: fwd\n    dns: {{ query: {DB_NAME}, servers: [\"{UNBOUND_IP}\"], transport: [udp, tcp], \
         expect: {{ equals: [{DB_IP}] }} }}\n{}",
        big_probe("fwd-big", UNBOUND_IP, "")
    );
    let verdict = check_once(&lab, &probes);
    for netns in ["pod", "host"] {
        let c = check(&verdict, "fwd", netns);
        assert_eq!(c["result"], "success", "{c}");
        assert_eq!(
            c["detail"],
            format!("A {DB_NAME}: {UNBOUND_IP} udp: A {DB_IP}; tcp: A {DB_IP}")
        );
        let big = check(&verdict, "fwd-big", netns);
        assert_eq!(big["result"], "success", "{big}");
        let text = big["detail"].as_str().unwrap_or_default();
        assert!(
            text.starts_with(&format!(
                "TXT {BIG_NAME}: {UNBOUND_IP} udp: truncated, followed over tcp: TXT "
            )),
            "{text}"
        );
    }
}

/// A `tcp` probe against a name resolves it with each namespace's own resolv.conf: the host asks
/// on-prem and connects to the address it got; the pod asks the cluster DNS, which lost the
/// corporate zone, so its round is `resolve_failed` (NXDOMAIN), not a path failure.
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn pod_and_host_resolve_a_target_name_with_their_own_resolv_conf() {
    let Some(DnsLab { lab, .. }) = dns_lab_forwarding("resolve-per-netns", Forward::Lost) else {
        return;
    };
    let verdict = check_once(
        &lab,
        "  - name: ns1\n    tcp: { target: 'ns1.corp.example:53' }\n",
    );
    let host = check(&verdict, "ns1", "host");
    assert_eq!(host["result"], "success", "{host}");
    assert_eq!(
        detail(&verdict, "ns1", "host"),
        format!("ns1.corp.example ({ONPREM_IP}): connected to {ONPREM_IP}:53")
    );
    let pod = check(&verdict, "ns1", "pod");
    assert_eq!(pod["result"], "resolve_failed", "{pod}");
    assert_eq!(
        detail(&verdict, "ns1", "pod"),
        format!("resolve ns1.corp.example: nxdomain (via {CLUSTER_DNS_IP})")
    );
}

/// `authoritative: true` with `recursion_desired: false`: BIND, authoritative for the zone,
/// passes; unbound, which only forwards it, answers without the AA flag and fails as mismatch.
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn only_bind_answers_authoritatively() {
    let Some(lab) = bind_lab("dns-authoritative", true) else {
        return;
    };
    let probe = |name: &str, server| {
        format!(
            "  - name: {name}\n    dns: {{ query: {DB_NAME}, servers: [\"{server}\"], \
             authoritative: true, recursion_desired: false }}\n"
        )
    };
    let probes = format!(
        "{}  - name: fwd-aa\n    dns: {{ query: {DB_NAME}, servers: [\"{UNBOUND_IP}\"], \
         authoritative: true }}\n",
        probe("bind-aa", BIND_IP)
    );
    let verdict = check_once(&lab, &probes);
    for netns in ["pod", "host"] {
        let c = check(&verdict, "bind-aa", netns);
        assert_eq!(c["result"], "success", "{c}");
        assert_eq!(
            c["detail"],
            format!("A {DB_NAME}: {BIND_IP} udp: A {DB_IP}")
        );
        let fwd = check(&verdict, "fwd-aa", netns);
        assert_eq!(fwd["result"], "mismatch", "{fwd}");
        assert_eq!(
            fwd["detail"],
            format!("A {DB_NAME}: {UNBOUND_IP} udp: A {DB_IP} (not authoritative)")
        );
    }
}

/// `resolver:` naming a server asks that server, not the namespace's resolv.conf: the pod's
/// cluster DNS lost the corporate zone, yet both namespaces resolve through on-prem. With the
/// tunnel down the lookup fails as `resolve_failed` (`timeout`) within the round's budget, before
/// the scheduler's own timeout would cut it off without naming the lookup.
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn a_named_resolver_is_asked_and_its_silence_ends_within_the_budget() {
    let Some(DnsLab { lab, .. }) = dns_lab_forwarding("resolve-named", Forward::Lost) else {
        return;
    };
    let probe = format!(
        "  - name: ns1\n    tcp: {{ target: 'ns1.corp.example:53', resolver: [\"{ONPREM_IP}\"] }}\n"
    );
    let verdict = check_once(&lab, &probe);
    for netns in ["pod", "host"] {
        let c = check(&verdict, "ns1", netns);
        assert_eq!(c["result"], "success", "{c}");
        assert_eq!(
            c["detail"],
            format!("ns1.corp.example ({ONPREM_IP}): connected to {ONPREM_IP}:53")
        );
    }

    lab.tunnel_drop(true);
    let verdict = check_once(&lab, &probe);
    for netns in ["pod", "host"] {
        let c = check(&verdict, "ns1", netns);
        assert_eq!(c["result"], "resolve_failed", "{c}");
        assert_eq!(
            c["detail"],
            format!("resolve ns1.corp.example: timeout (via {ONPREM_IP})")
        );
        let took = c["duration_seconds"].as_f64().unwrap_or(f64::MAX);
        assert!(took < 1.0, "the lookup outlived the 1s timeout: {c}");
    }
}

/// DNS over TLS to unbound (port 853, a certificate from the lab CA naming its address and
/// `DOT_NAME`), from the pod and the host: verified against the address's IP SAN by default or
/// against `server_name`; each TLS failure typed; a closed port 853 refused.
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn dns_over_tls_to_unbound() {
    let Some(lab) = bind_lab("dns-dot", false) else {
        return;
    };
    let (_unbound, ca) = lab.unbound_dot();
    let ca = ca.display();
    let probe = |name: &str, server, tls: &str| {
        format!(
            "  - name: {name}\n    dns: {{ query: {DB_NAME}, servers: [\"{server}\"], \
             transport: tls{tls} }}\n"
        )
    };
    let probes = [
        probe("dot", UNBOUND_IP, &format!(", tls: {{ ca_file: {ca} }}")),
        probe(
            "dot-named",
            UNBOUND_IP,
            &format!(", tls: {{ ca_file: {ca}, server_name: {DOT_NAME} }}"),
        ),
        probe("dot-untrusted", UNBOUND_IP, ""),
        probe(
            "dot-wrong-name",
            UNBOUND_IP,
            &format!(", tls: {{ ca_file: {ca}, server_name: other.cluster.example }}"),
        ),
        probe(
            "dot-closed",
            BIND_IP,
            &format!(", tls: {{ ca_file: {ca} }}"),
        ),
    ]
    .concat();
    let verdict = check_once(&lab, &probes);
    let answered = format!("A {DB_NAME}: {UNBOUND_IP} tls: A {DB_IP}");
    for netns in ["pod", "host"] {
        for name in ["dot", "dot-named"] {
            let c = check(&verdict, name, netns);
            assert_eq!(c["result"], "success", "{c}");
            assert_eq!(c["detail"], answered, "{c}");
        }
        for (name, result) in [
            ("dot-untrusted", "tls_untrusted"),
            ("dot-wrong-name", "tls_name_mismatch"),
        ] {
            let c = check(&verdict, name, netns);
            assert_eq!(c["result"], result, "{c}");
            let text = c["detail"].as_str().unwrap_or_default();
            let prefix = format!("A {DB_NAME}: {UNBOUND_IP} tls: {result} (");
            assert!(text.starts_with(&prefix), "{text}");
            let seen = format!(
                "certificate \"CN={DOT_NAME}\" issued by \"CN=hybridprobe lab CA\", \
                 names [{DOT_NAME}, {UNBOUND_IP}]"
            );
            assert!(text.contains(&seen), "{text}");
        }
        let closed = check(&verdict, "dot-closed", netns);
        assert_eq!(closed["result"], "refused", "{closed}");
        let text = closed["detail"].as_str().unwrap_or_default();
        assert!(
            text.starts_with(&format!("A {DB_NAME}: {BIND_IP} tls: refused (")),
            "{text}"
        );
    }

    let agent = Agent::start(
        &lab,
        &pod_and_host_config(
            &lab,
            Resolv::ClusterAndOnprem,
            "{ interval: 1s, timeout: 1s }",
            &probe("dot", UNBOUND_IP, &format!(", tls: {{ ca_file: {ca} }}")),
        ),
    );
    agent.wait_check("dot", "host", "success", Duration::from_secs(10));
    let metrics = agent.metrics();
    let server = UNBOUND_IP.to_string();
    let labels = [
        ("probe", "dot"),
        ("netns", "host"),
        ("server", server.as_str()),
        ("transport", "tls"),
    ];
    assert_eq!(
        metric(&metrics, "hybridprobe_dns_success", &labels),
        Some(1.0)
    );
}

/// `recursion_desired: false` against the unbound forwarder, which holds nothing in its cache:
/// unbound refuses a non-recursive query from a client it only `allow`s (snooping its cache
/// needs `allow_snoop`), so the check fails as `dns_refused`; the same query with RD set passes.
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn a_non_recursive_query_to_unbound_is_refused() {
    let Some(lab) = bind_lab("dns-unbound-rd0", true) else {
        return;
    };
    let probe = |name: &str, rd: bool| {
        format!(
            "  - name: {name}\n    dns: {{ query: {DB_NAME}, servers: [\"{UNBOUND_IP}\"], \
             recursion_desired: {rd} }}\n"
        )
    };
    let verdict = check_once(&lab, &(probe("rd0", false) + &probe("rd1", true)));
    for netns in ["pod", "host"] {
        let c = check(&verdict, "rd0", netns);
        assert_eq!(c["result"], "dns_refused", "{c}");
        assert_eq!(
            c["detail"],
            format!("A {DB_NAME}: {UNBOUND_IP} udp: REFUSED")
        );
        let c = check(&verdict, "rd1", netns);
        assert_eq!(c["result"], "success", "{c}");
    }
}
