//! End to end: `POST /checks/<name>/run` against an agent in the lab, probing the lab's real
//! on-prem server from the pod and the host: refused while off, limited when hammered, a real
//! result before and after a fault, never a target the config does not name, and never a mark
//! on the scheduled results.

mod lab;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use hybridprobe::agent::scheduler::start_offset;
use hybridprobe::netns::NetnsId;
use lab::{Host, Lab, ONPREM_IP, POD_IP};
use support::{check, metric, metric_sum, pod_and_host_config, rounds, Agent, Resolv, PORT};

const LDAP_PORT: u16 = 389;
/// A port of the on-prem host that no probe names: the requests below try to aim at it.
const UNCONFIGURED_PORT: u16 = 2222;
/// The probes' interval: long enough that no scheduled round runs while the test does (checked
/// below), so whatever the scheduled results show after runs on demand, those runs put there.
const INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);
const PROBES: [&str; 2] = ["ldap", "ldap-again"];

fn config(lab: &Lab, on_demand: &str, defaults: &str) -> String {
    let probes = PROBES
        .iter()
        .map(|name| {
            format!("  - name: {name}\n    tcp: {{ target: \"{ONPREM_IP}:{LDAP_PORT}\" }}\n")
        })
        .collect::<String>();
    let config = pod_and_host_config(lab, Resolv::Own, defaults, &probes);
    format!("{on_demand}{config}")
}

/// What the agent answered to a POST.
struct Posted {
    code: u16,
    retry_after: Option<u64>,
    body: String,
}

impl Posted {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("HTTP {}, not JSON ({e}): {}", self.code, self.body))
    }
}

/// `POST path` to the agent from inside the pod namespace, with `body` if given.
fn post(lab: &Lab, path: &str, body: Option<&str>) -> Posted {
    let url = format!("http://{POD_IP}:{PORT}{path}");
    let mut args = vec![
        "-s",
        "-m",
        "10",
        "--noproxy",
        "*",
        "-X",
        "POST",
        "-w",
        "\n%{http_code}\n%header{retry-after}",
    ];
    if let Some(body) = body {
        args.extend([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ]);
    }
    args.push(&url);
    let out = lab.exec(Host::Pod, "curl", &args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut parts = stdout.rsplitn(3, '\n');
    let retry_after = parts.next().and_then(|v| v.trim().parse().ok());
    let code = parts
        .next()
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or(0);
    let body = parts.next().unwrap_or_default().to_owned();
    Posted {
        code,
        retry_after,
        body,
    }
}

fn on_demand_count(metrics: &str, probe: &str, outcome: &str) -> f64 {
    metric(
        metrics,
        "hybridprobe_on_demand_runs_total",
        &[("probe", probe), ("outcome", outcome)],
    )
    .unwrap_or(0.0)
}

/// Counts, in the namespaces the agent sends from, every packet that leaves for anywhere but
/// the configured target (ICMP errors aside: the node answers the evidence's traceroute from
/// the pod with time-exceeded, as a router does), and on the on-prem host every TCP packet to
/// another port than the configured one.
fn watch_unconfigured(lab: &Lab) {
    for h in [Host::Pod, Host::Node] {
        lab.nft(
            h,
            &format!(
                "table ip hplab_watch {{\n  chain output {{\n    type filter hook output priority 0; policy accept;\n    \
                 icmp type {{ time-exceeded, destination-unreachable }} accept\n    \
                 oifname != \"lo\" ip daddr != {ONPREM_IP} counter\n  }}\n}}\n"
            ),
        );
    }
    lab.nft(
        Host::Onprem,
        &format!(
            "table ip hplab_watch {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    \
             tcp dport != {LDAP_PORT} counter\n  }}\n}}\n"
        ),
    );
}

/// The packets each watch counted, per namespace.
fn unconfigured_packets(lab: &Lab) -> Vec<(Host, u64)> {
    [Host::Pod, Host::Node, Host::Onprem]
        .into_iter()
        .map(|h| {
            let listing = lab.must(h, "nft", &["list", "table", "ip", "hplab_watch"]);
            let packets = listing
                .split_whitespace()
                .skip_while(|word| *word != "packets")
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no counter in {listing}"));
            (h, packets)
        })
        .collect()
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn refused_while_off_for_every_name() {
    let Some(lab) = Lab::new("ondemand-off") else {
        return;
    };
    lab.serve_tcp(Host::Onprem, SocketAddr::from((ONPREM_IP, LDAP_PORT)));
    let agent = Agent::start(&lab, &config(&lab, "", "{ interval: 1s, timeout: 800ms }"));
    agent.wait_ready();

    for path in [
        "/checks/ldap/run",
        "/checks/nope/run",
        "/checks/ldap/run?netns=host",
    ] {
        let refused = post(&lab, path, None);
        assert_eq!(refused.code, 403, "{path}: {}", refused.body);
        assert!(
            refused.body.contains("on_demand.enabled: true"),
            "{path}: the body names the key that enables it: {}",
            refused.body
        );
    }
    assert_eq!(agent.get("/checks/ldap/run").0, 405, "only POST runs");
    let metrics = agent.metrics();
    assert_eq!(
        on_demand_count(&metrics, "ldap", "disabled"),
        2.0,
        "{metrics}"
    );
    assert!(
        !metrics.contains("probe=\"nope\""),
        "an unknown name became a label:\n{metrics}"
    );
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn runs_only_configured_checks_limited_and_unrecorded() {
    let Some(lab) = Lab::new("ondemand-run") else {
        return;
    };
    for name in PROBES {
        for netns in [NetnsId::Pod, NetnsId::Host] {
            assert!(
                start_offset(name, netns, INTERVAL) > Duration::from_secs(3600),
                "{name}/{netns} would start its scheduled rounds within the hour: rename it"
            );
        }
    }
    lab.serve_tcp(Host::Onprem, SocketAddr::from((ONPREM_IP, LDAP_PORT)));
    watch_unconfigured(&lab);
    let agent = Agent::start(
        &lab,
        &config(
            &lab,
            "on_demand: { enabled: true, min_interval: 1h }\n",
            "{ interval: 24h, timeout: 2s }",
        ),
    );
    let (before_code, before) = agent.healthz_json();

    // A run reaches the real server from both namespaces.
    let passed = post(&lab, "/checks/ldap/run", None);
    assert_eq!(passed.code, 200, "{}", passed.body);
    let report = passed.json();
    assert_eq!(report["probe"], "ldap");
    let runs = report["runs"].as_array().expect("runs");
    let netns: Vec<&str> = runs.iter().filter_map(|r| r["netns"].as_str()).collect();
    assert_eq!(netns, ["pod", "host"], "{report}");
    for run in runs {
        assert_eq!(run["ok"], true, "{report}");
        assert_eq!(run["result"], "success", "{report}");
        let detail = run["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(&format!("{ONPREM_IP}:{LDAP_PORT}")),
            "{report}"
        );
        let taken_at = run["taken_at"].as_str().unwrap_or_default();
        assert!(humantime::parse_rfc3339(taken_at).is_ok(), "{report}");
        assert!(run["duration_seconds"].as_f64().is_some(), "{report}");
        assert!(
            run.get("evidence").is_none(),
            "a passed run captures nothing: {report}"
        );
    }
    assert_eq!(
        report["scheduled"].as_array().map(Vec::len),
        Some(2),
        "{report}"
    );
    assert_eq!(report["scheduled"][0]["result"], "pending", "{report}");

    // Hammered: each further request within min_interval is refused and counted.
    for _ in 0..5 {
        let limited = post(&lab, "/checks/ldap/run", None);
        assert_eq!(limited.code, 429, "{}", limited.body);
        let retry = limited.retry_after.expect("Retry-After");
        assert!((1..=3600).contains(&retry), "Retry-After: {retry}");
    }
    let metrics = agent.metrics();
    assert_eq!(
        on_demand_count(&metrics, "ldap", "success"),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        on_demand_count(&metrics, "ldap", "rate_limited"),
        5.0,
        "{metrics}"
    );

    // Every way of naming another target is refused before anything is sent.
    let aimed = format!("{ONPREM_IP}:{UNCONFIGURED_PORT}");
    let attempts = [
        (format!("/checks/ldap-again/run?target={aimed}"), None, 400),
        (
            format!("/checks/ldap-again/run?port={UNCONFIGURED_PORT}"),
            None,
            400,
        ),
        (
            format!("/checks/ldap-again/run?netns=pod&port={UNCONFIGURED_PORT}"),
            None,
            400,
        ),
        ("/checks/ldap-again/run?netns=node".to_owned(), None, 400),
        (
            "/checks/ldap-again/run?netns=pod&netns=host".to_owned(),
            None,
            400,
        ),
        (
            "/checks/ldap-again/run".to_owned(),
            Some(format!(r#"{{"target":"{aimed}"}}"#)),
            400,
        ),
        (format!("/checks/{aimed}/run"), None, 404),
        ("/checks/..%2Fldap/run".to_owned(), None, 404),
        ("/checks/LDAP/run".to_owned(), None, 404),
    ];
    for (path, body, code) in &attempts {
        let refused = post(&lab, path, body.as_deref());
        assert_eq!(refused.code, *code, "{path}: {}", refused.body);
        assert!(
            !refused.body.contains("ldap"),
            "{path}: the answer lists no configured check: {}",
            refused.body
        );
    }
    let unknown = post(&lab, "/checks/nope/run", None);
    assert_eq!(unknown.body, "no configured check has that name\n");

    // After a fault, a run in one namespace reports it, from a real round.
    lab.onprem_port_reject(LDAP_PORT, true);
    let failed = post(&lab, "/checks/ldap-again/run?netns=host", None);
    assert_eq!(failed.code, 200, "{}", failed.body);
    let report = failed.json();
    let runs = report["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1, "{report}");
    assert_eq!(runs[0]["netns"], "host", "{report}");
    assert_eq!(runs[0]["ok"], false, "{report}");
    assert_eq!(runs[0]["result"], "refused", "{report}");
    // With the evidence the failed round made the agent capture, from both namespaces.
    let evidence = &runs[0]["evidence"];
    assert_eq!(evidence["netns"], "host", "{report}");
    assert_eq!(evidence["trigger"]["result"], "refused", "{report}");
    let pieces = evidence["pieces"].as_array().expect("evidence pieces");
    for netns in ["pod", "host"] {
        assert!(
            pieces
                .iter()
                .any(|p| p["what"] == "route" && p["netns"] == netns && p["text"].is_string()),
            "no route piece from {netns}: {report}"
        );
    }

    for (h, packets) in unconfigured_packets(&lab) {
        assert_eq!(packets, 0, "{h:?} saw traffic to a target no probe names");
    }
    let metrics = agent.metrics();
    assert_eq!(
        on_demand_count(&metrics, "ldap-again", "failure"),
        1.0,
        "{metrics}"
    );
    let labelled = metric_sum(&metrics, "hybridprobe_on_demand_runs_total", &[]);
    let configured: f64 = PROBES
        .iter()
        .map(|p| {
            metric_sum(
                &metrics,
                "hybridprobe_on_demand_runs_total",
                &[("probe", p)],
            )
        })
        .sum();
    assert_eq!(
        labelled, configured,
        "only configured names are labels:\n{metrics}"
    );

    // Nothing of it reached the scheduled results: the checks have still not run.
    let (after_code, after) = agent.healthz_json();
    assert_eq!(after_code, before_code);
    assert_eq!(after["status"], before["status"], "{after}");
    for name in PROBES {
        for netns in ["pod", "host"] {
            let scheduled = check(&after, name, netns);
            assert_eq!(scheduled["result"], "pending", "{after}");
            assert_eq!(scheduled["consecutive_failures"], 0, "{after}");
            assert_eq!(scheduled, check(&before, name, netns), "{after}");
            assert_eq!(rounds(&metrics, name, netns), 0.0, "{metrics}");
        }
    }
}
