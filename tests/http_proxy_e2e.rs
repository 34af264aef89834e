//! End to end: `http` probes through a real squid forward proxy on the Azure side, from the pod
//! and the host namespace, to real nginx on-prem across the VXLAN tunnel: the tunnel opened, the
//! proxy refusing, the proxy unable to reach the target, the proxy's port closed, `no_proxy`
//! going direct, and the tunnel dying before and in the middle of a request.

mod lab;
mod support;

use std::time::Duration;

use lab::proxy::{squid_available, Squid, DENY_PORT, PROXY_IP};
use lab::web::{nginx_available, Web, EXPIRED_NAME, GOOD_NAME, WEB_IP};
use lab::{Host, Lab};
use support::{check_once, metric, pod_and_host_config, result, Agent, Resolv};

/// Nothing listens there: the proxy's port "closed".
const CLOSED_PROXY: &str = "198.18.1.1:3130";

fn proxy_lab(test_name: &str) -> Option<(Lab, Web, Squid)> {
    if !nginx_available(test_name) || !squid_available(test_name) {
        return None;
    }
    let lab = Lab::new(test_name)?;
    let web = lab.onprem_web();
    let squid = lab.forward_proxy();
    Some((lab, web, squid))
}

/// A probe as a YAML list item: `http` settings after the URL.
fn probe(name: &str, url: &str, settings: &str) -> String {
    format!("  - name: {name}\n    http: {{ url: '{url}'{settings} }}\n")
}

/// The probes of the test, each with the result and a piece of the detail it must show.
fn cases(web: &Web, squid: &Squid) -> Vec<(String, &'static str, String)> {
    let ca = format!(", tls: {{ ca_file: {} }}", web.ca_file.display());
    let via = |addr: &dyn std::fmt::Display| format!(", proxy: 'http://{addr}'");
    let allow = via(&squid.allow);
    let deny = via(&squid.deny);
    let closed = via(&CLOSED_PROXY);
    let good = format!("https://{GOOD_NAME}/healthz");
    vec![
        (
            probe("tunnel", &good, &format!("{allow}{ca}")),
            "success",
            format!("GET {good}: 200"),
        ),
        (
            probe(
                "tunnel-pinned",
                &good,
                &format!("{allow}{ca}, resolve_to: {WEB_IP}"),
            ),
            "success",
            format!("GET {good}: 200"),
        ),
        (
            probe("absolute", &format!("http://{WEB_IP}/healthz"), &allow),
            "success",
            ": 200".to_owned(),
        ),
        (
            probe(
                "tunnel-expired",
                &format!("https://{EXPIRED_NAME}/healthz"),
                &format!("{allow}{ca}"),
            ),
            "tls_expired",
            format!("{EXPIRED_NAME}:443 via proxy {}", squid.allow),
        ),
        (
            probe("denied", &good, &format!("{deny}{ca}")),
            "proxy_refused",
            format!(
                "proxy {PROXY_IP}:{DENY_PORT} refused CONNECT {GOOD_NAME}:443: 403 Forbidden \
                 (X-Squid-Error: ERR_ACCESS_DENIED 0)"
            ),
        ),
        (
            probe(
                "denied-absolute",
                &format!("http://{WEB_IP}/healthz"),
                &deny,
            ),
            "proxy_refused",
            format!("refused GET http://{WEB_IP}/healthz: 403 Forbidden"),
        ),
        (
            probe(
                "no-target",
                &format!("https://{WEB_IP}:8443/"),
                &format!("{allow}{ca}"),
            ),
            "proxy_error",
            format!(
                "answered CONNECT {WEB_IP}:8443 with 503 Service Unavailable \
                 (X-Squid-Error: ERR_CONNECT_FAIL 111)"
            ),
        ),
        (
            probe("proxy-closed", &good, &format!("{closed}{ca}")),
            "refused",
            format!("connect proxy {CLOSED_PROXY}: "),
        ),
        (
            probe(
                "bypass-net",
                &format!("http://{WEB_IP}/healthz"),
                &format!("{closed}, no_proxy: ['198.19.0.0/16']"),
            ),
            "success",
            ": 200".to_owned(),
        ),
        (
            probe(
                "bypass-domain",
                &good,
                &format!("{closed}{ca}, resolve_to: {WEB_IP}, no_proxy: [.corp.example]"),
            ),
            "success",
            format!("GET {good}: 200"),
        ),
    ]
}

/// The probes named `names` of [`cases`], as YAML list items.
fn only(web: &Web, squid: &Squid, names: &[&str]) -> String {
    cases(web, squid)
        .into_iter()
        .map(|(probe, _, _)| probe)
        .filter(|p| names.iter().any(|n| p.contains(&format!("name: {n}\n"))))
        .collect()
}

const DEFAULTS: &str = "{ interval: 3s, timeout: 2500ms }";

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn through_squid_each_answer_has_its_typed_result_from_both_namespaces() {
    let Some((lab, web, squid)) = proxy_lab("proxy-results") else {
        return;
    };
    let cases = cases(&web, &squid);
    let probes: String = cases.iter().map(|(p, _, _)| p.as_str()).collect();
    let verdict = check_once(&lab, Resolv::Own, DEFAULTS, &probes);
    for netns in ["pod", "host"] {
        for (probe, want, seen) in &cases {
            let name = probe.split_whitespace().nth(2).unwrap_or_default();
            let (got, detail) = result(&verdict, name, netns);
            assert_eq!(&got, want, "{name}/{netns}: {detail}");
            assert!(
                detail.contains(seen.as_str()),
                "{name}/{netns}: {detail:?} lacks {seen:?}"
            );
        }
    }
    // CONNECT names the host for squid to resolve, or the pinned address.
    let log = std::fs::read_to_string(lab.tmpdir().join("squid/access.log")).unwrap_or_default();
    for asked in [
        format!("CONNECT {GOOD_NAME}:443"),
        format!("CONNECT {WEB_IP}:443"),
    ] {
        assert!(log.contains(&asked), "{asked} not in squid's log:\n{log}");
    }
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn the_proxy_connect_phase_is_exported() {
    let Some((lab, web, squid)) = proxy_lab("proxy-metrics") else {
        return;
    };
    let probes = only(&web, &squid, &["tunnel", "bypass-domain"]);
    let text = pod_and_host_config(
        &lab,
        Resolv::Own,
        "{ interval: 1s, timeout: 800ms }",
        &probes,
    );
    let agent = Agent::start(&lab, &text);
    agent.wait_ready();
    for netns in ["pod", "host"] {
        for probe in ["tunnel", "bypass-domain"] {
            agent.wait_rounds(probe, netns, 1, Duration::from_secs(10));
        }
    }
    let metrics = agent.metrics();
    let phase = |probe: &str, netns: &str, phase: &str| {
        let labels = [("probe", probe), ("netns", netns), ("phase", phase)];
        metric(&metrics, "hybridprobe_http_phase_duration_seconds", &labels)
            .unwrap_or_else(|| panic!("no {phase} of {probe}/{netns}:\n{metrics}"))
    };
    for netns in ["pod", "host"] {
        for name in ["connect", "proxy_connect", "tls", "processing"] {
            assert!(phase("tunnel", netns, name) > 0.0, "{name}/{netns}");
        }
        assert_eq!(phase("bypass-domain", netns, "proxy_connect"), 0.0);
        assert!(phase("bypass-domain", netns, "tls") > 0.0);
        let labels = [("probe", "tunnel"), ("netns", netns)];
        assert_eq!(
            metric(&metrics, "hybridprobe_http_status_code", &labels),
            Some(200.0)
        );
    }
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn a_dead_tunnel_behind_the_proxy_is_the_proxys_error() {
    let Some((lab, web, squid)) = proxy_lab("proxy-tunnel-down") else {
        return;
    };
    let probes = only(&web, &squid, &["tunnel", "absolute"]);
    lab.tunnel_drop(true);
    // Squid checks its timeouts once a second: it gives up within two or three.
    let verdict = check_once(&lab, Resolv::Own, "{ interval: 6s, timeout: 5s }", &probes);
    for netns in ["pod", "host"] {
        // Squid gives up connecting and says so with a 503.
        let (got, detail) = result(&verdict, "tunnel", netns);
        assert_eq!(got, "proxy_error", "tunnel/{netns}: {detail}");
        assert!(detail.contains("ERR_CONNECT_FAIL"), "{detail}");
        let (got, detail) = result(&verdict, "absolute", netns);
        assert_eq!(got, "proxy_error", "absolute/{netns}: {detail}");
        assert!(detail.contains("ERR_CONNECT_FAIL"), "{detail}");
    }
}

/// Connections nginx has not read from yet, with bytes waiting: a client spoke, nginx is
/// stopped.
fn waiting_on_nginx(lab: &Lab) -> usize {
    let out = lab.must(
        Host::Onprem,
        "ss",
        &["-Htn", "state", "established", "( sport = :443 )"],
    );
    out.lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .and_then(|q| q.parse::<u32>().ok())
                .is_some_and(|q| q > 0)
        })
        .count()
}

/// One check round of the `tunnel` probe with nginx stopped until both namespaces' ClientHellos
/// wait at it; then `between` runs and nginx continues.
fn round_with_nginx_held(
    lab: &Lab,
    web: &Web,
    probes: &str,
    between: impl FnOnce(),
) -> serde_json::Value {
    lab.pause_web(web, true);
    std::thread::scope(|scope| {
        let round =
            scope.spawn(|| check_once(lab, Resolv::Own, "{ interval: 2s, timeout: 2s }", probes));
        lab.wait_until(
            "both ClientHellos waiting at nginx",
            Duration::from_secs(5),
            || waiting_on_nginx(lab) >= 2,
        );
        between();
        lab.pause_web(web, false);
        round
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn the_tunnel_dying_mid_request_ends_the_round_in_time() {
    let Some((lab, web, squid)) = proxy_lab("proxy-mid-request") else {
        return;
    };
    let probes = only(&web, &squid, &["tunnel"]);
    // Control: held and released with the tunnel up, the round passes.
    let verdict = round_with_nginx_held(&lab, &web, &probes, || {});
    for netns in ["pod", "host"] {
        let (got, detail) = result(&verdict, "tunnel", netns);
        assert_eq!(got, "success", "control {netns}: {detail}");
    }
    // The tunnel opened and the ClientHello crossed it; then the tunnel dies before nginx answers.
    let verdict = round_with_nginx_held(&lab, &web, &probes, || lab.tunnel_drop(true));
    for netns in ["pod", "host"] {
        let (got, detail) = result(&verdict, "tunnel", netns);
        assert_eq!(got, "timeout", "{netns}: {detail}");
        assert!(
            detail.contains(&format!("via proxy {}", squid.allow)) && detail.contains("(tls)"),
            "{netns}: {detail}"
        );
    }
}
