//! End to end: what a check is held to beyond one round, from the pod and the host namespace:
//! `expect: blocked` (segmentation), the state over recent rounds (`unknown` while warming up,
//! then `pass`, `warning`, `fail`) and the failures-in-a-row count, through a tunnel outage.

mod lab;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use lab::{Host, Lab, ONPREM_IP};
use support::{check, metric, pod_and_host_config, rounds, Agent, Resolv};

const LDAP_PORT: u16 = 389;
/// Nothing listens there: on-prem answers with a reset.
const CLOSED_PORT: u16 = 22;
/// An on-prem address no host has: nothing answers at all.
const NOBODY: &str = "198.19.10.77";
/// Warm-up of 3 rounds over a window of 4: one failed round is a warning (25 % ≥ 10 %), two
/// are a failure (50 %).
const DEFAULTS: &str = "{ interval: 1s, timeout: 800ms, thresholds: { window: 4, min_rounds: 3 } }";
const MIN_ROUNDS: f64 = 3.0;

fn config(lab: &Lab) -> String {
    pod_and_host_config(
        lab,
        Resolv::Own,
        DEFAULTS,
        &format!(
            r#"  - name: ldap
    tcp: {{ target: "{ONPREM_IP}:{LDAP_PORT}" }}
  - name: mgmt-closed
    expect: blocked
    tcp: {{ target: "{ONPREM_IP}:{CLOSED_PORT}" }}
  - name: mgmt-silent
    expect: blocked
    tcp: {{ target: "{NOBODY}:{CLOSED_PORT}" }}
  - name: ldap-should-be-blocked
    expect: blocked
    tcp: {{ target: "{ONPREM_IP}:{LDAP_PORT}" }}
"#
        ),
    )
}

/// The one `state` whose `hybridprobe_probe_state` series is 1.
fn state(metrics: &str, probe: &str, netns: &str) -> String {
    let on: Vec<&str> = ["unknown", "pass", "warning", "fail"]
        .into_iter()
        .filter(|state| {
            let labels = [("probe", probe), ("netns", netns), ("state", state)];
            metric(metrics, "hybridprobe_probe_state", &labels) == Some(1.0)
        })
        .collect();
    assert_eq!(on.len(), 1, "{probe}/{netns}: states set {on:?}");
    on[0].to_owned()
}

fn in_a_row(metrics: &str, probe: &str, netns: &str) -> f64 {
    let labels = [("probe", probe), ("netns", netns)];
    metric(metrics, "hybridprobe_probe_consecutive_failures", &labels)
        .unwrap_or_else(|| panic!("no consecutive failures for {probe}/{netns}"))
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn blocked_targets_and_states_through_an_outage() {
    let Some(lab) = Lab::new("state") else {
        return;
    };
    lab.serve_tcp(Host::Onprem, SocketAddr::from((ONPREM_IP, LDAP_PORT)));
    let agent = Agent::start(&lab, &config(&lab));
    agent.wait_ready();

    // Warming up: a check is `unknown` exactly until it has run its third round.
    let metrics = agent.metrics();
    for netns in ["pod", "host"] {
        let ran = rounds(&metrics, "ldap", netns);
        let want = if ran < MIN_ROUNDS { "unknown" } else { "pass" };
        assert_eq!(state(&metrics, "ldap", netns), want, "after {ran} rounds");
    }

    for netns in ["pod", "host"] {
        agent.wait_rounds("ldap-should-be-blocked", netns, 4, Duration::from_secs(15));
        agent.wait_rounds("mgmt-silent", netns, 4, Duration::from_secs(15));
    }
    let metrics = agent.metrics();
    let (code, verdict) = agent.healthz_json();
    assert_eq!(
        code, 503,
        "a blocked target that answers fails the node: {verdict}"
    );
    for netns in ["pod", "host"] {
        assert_eq!(state(&metrics, "ldap", netns), "pass");
        assert_eq!(in_a_row(&metrics, "ldap", netns), 0.0);

        // A reset and silence both pass a blocked check, and say which it was. Silence is a
        // timeout or, where a router knows the host is not there, unreachable.
        for (probe, how) in [
            ("mgmt-closed", &["refused"][..]),
            ("mgmt-silent", &["timeout", "unreachable"][..]),
        ] {
            let c = check(&verdict, probe, netns);
            assert_eq!(c["ok"], true, "{c}");
            assert_eq!(c["state"], "pass", "{c}");
            let detail = c["detail"].as_str().unwrap();
            let said = |how: &&str| detail.starts_with(&format!("blocked as expected ({how})"));
            assert!(how.iter().any(said), "{c}");
        }

        let c = check(&verdict, "ldap-should-be-blocked", netns);
        assert_eq!(c["ok"], false, "{c}");
        assert_eq!(c["result"], "not_blocked", "{c}");
        assert_eq!(c["state"], "fail", "{c}");
        assert!(c["consecutive_failures"].as_u64().unwrap() >= 4, "{c}");
        let detail = c["detail"].as_str().unwrap();
        assert!(
            detail.contains(&format!("connected to {ONPREM_IP}:{LDAP_PORT}")),
            "{c}"
        );
        assert!(in_a_row(&metrics, "ldap-should-be-blocked", netns) >= 4.0);
    }
    let (_, table) = agent.healthz();
    let header = table.lines().nth(1).unwrap_or_default();
    assert!(header.contains(" STATE "), "{table}");

    // The tunnel drops everything: one failed round in the window is a warning, two a failure;
    // the blocked check to the open port now passes, since nothing answers it.
    lab.tunnel_drop(true);
    for netns in ["pod", "host"] {
        let mut seen = Vec::new();
        lab.wait_until(
            "ldap failing twice in a row",
            Duration::from_secs(10),
            || {
                let metrics = agent.metrics();
                let failed = in_a_row(&metrics, "ldap", netns);
                let now = state(&metrics, "ldap", netns);
                let want = match failed as u32 {
                    0 => "pass",
                    1 => "warning",
                    _ => "fail",
                };
                assert_eq!(now, want, "{netns}: {failed} failed rounds in a row");
                if seen.last() != Some(&now) {
                    seen.push(now);
                }
                failed >= 2.0
            },
        );
        assert!(seen.contains(&"fail".to_owned()), "{seen:?}");
    }
    for netns in ["pod", "host"] {
        agent.wait_check(
            "ldap-should-be-blocked",
            netns,
            "success",
            Duration::from_secs(5),
        );
    }
    lab.tunnel_drop(false);
}
