//! End to end: `http` probes from the pod and the host namespace, through the VXLAN tunnel,
//! against real nginx on-prem serving plain HTTP and HTTPS with certificates from a lab CA: a
//! good one, an expired one and one for another name.

mod lab;
mod support;

use lab::web::{
    nginx_available, Web, DOWN_PATH, EXPIRED_NAME, GOOD_NAME, HEALTHY_BODY, OTHER_NAME, WEB_IP,
    WRONG_NAME,
};
use lab::Lab;
use support::{check_once, metric, pod_and_host_config, result, Agent, Resolv};

fn web_lab(test_name: &str) -> Option<(Lab, Web)> {
    if !nginx_available(test_name) {
        return None;
    }
    let lab = Lab::new(test_name)?;
    let web = lab.onprem_web();
    Some((lab, web))
}

/// Every probe of the test, as YAML list items: the names pin to the web server's address.
fn probes(web: &Web) -> String {
    let ca = web.ca_file.display();
    let https = |name: &str, host: &str, tls: &str| {
        format!(
            "  - name: {name}\n    http: {{ url: 'https://{host}/healthz', resolve_to: {WEB_IP}{tls} }}\n"
        )
    };
    let trusted = format!(", tls: {{ ca_file: {ca} }}");
    [
        https(
            "good",
            GOOD_NAME,
            &format!(", body_regex: '\"status\":\\s*\"ok\"'{trusted}"),
        ),
        https("untrusted", GOOD_NAME, ""),
        https("expired", EXPIRED_NAME, &trusted),
        https("wrong-name", WRONG_NAME, &trusted),
        format!("  - name: plain\n    http: {{ url: 'http://{WEB_IP}/healthz' }}\n"),
        format!("  - name: down\n    http: {{ url: 'http://{WEB_IP}{DOWN_PATH}' }}\n"),
        format!(
            "  - name: body\n    http: {{ url: 'http://{WEB_IP}/healthz', body_regex: healthy }}\n"
        ),
        format!("  - name: closed\n    http: {{ url: 'http://{WEB_IP}:8081/' }}\n"),
    ]
    .concat()
}

/// One `check` round of `probes`, as JSON.
fn check_round(lab: &Lab, probes: &str) -> serde_json::Value {
    check_once(
        lab,
        Resolv::Own,
        "{ interval: 2s, timeout: 1500ms }",
        probes,
    )
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn each_answer_has_its_typed_result_from_both_namespaces() {
    let Some((lab, web)) = web_lab("http-results") else {
        return;
    };
    let verdict = check_round(&lab, &probes(&web));
    let expected = [
        (
            "good",
            "success",
            format!("GET https://{GOOD_NAME}/healthz: 200"),
        ),
        (
            "untrusted",
            "tls_untrusted",
            "hybridprobe lab CA".to_owned(),
        ),
        ("expired", "tls_expired", "2021-01-01T00:00:00Z".to_owned()),
        ("wrong-name", "tls_name_mismatch", OTHER_NAME.to_owned()),
        ("plain", "success", ": 200".to_owned()),
        (
            "down",
            "http_status",
            "503 Service Unavailable, expected 2xx".to_owned(),
        ),
        (
            "body",
            "body_mismatch",
            format!("{} bytes read", HEALTHY_BODY.len()),
        ),
        ("closed", "refused", format!("{WEB_IP}:8081")),
    ];
    for netns in ["pod", "host"] {
        for (probe, want, seen) in &expected {
            let (got, detail) = result(&verdict, probe, netns);
            assert_eq!(&got, want, "{probe}/{netns}: {detail}");
            assert!(
                detail.contains(seen.as_str()),
                "{probe}/{netns}: {detail:?} lacks {seen:?}"
            );
        }
    }
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn a_dead_tunnel_is_a_timeout_from_both_namespaces() {
    let Some((lab, web)) = web_lab("http-tunnel-down") else {
        return;
    };
    lab.tunnel_drop(true);
    let verdict = check_round(&lab, &probes(&web));
    for netns in ["pod", "host"] {
        for probe in ["good", "plain"] {
            let (got, detail) = result(&verdict, probe, netns);
            assert_eq!(got, "timeout", "{probe}/{netns}: {detail}");
            assert!(detail.contains("(connect)"), "{probe}/{netns}: {detail}");
        }
    }
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn phases_status_tls_version_and_expiry_are_exported() {
    let Some((lab, web)) = web_lab("http-metrics") else {
        return;
    };
    let text = pod_and_host_config(
        &lab,
        Resolv::Own,
        "{ interval: 1s, timeout: 800ms }",
        &probes(&web),
    );
    let agent = Agent::start(&lab, &text);
    agent.wait_ready();
    agent.wait_rounds("good", "host", 1, std::time::Duration::from_secs(10));
    agent.wait_rounds("expired", "pod", 1, std::time::Duration::from_secs(10));
    let metrics = agent.metrics();
    for netns in ["pod", "host"] {
        let labels = [("probe", "good"), ("netns", netns)];
        assert_eq!(
            metric(&metrics, "hybridprobe_http_status_code", &labels),
            Some(200.0)
        );
        let expiry = metric(
            &metrics,
            "hybridprobe_http_cert_expiry_timestamp_seconds",
            &labels,
        )
        .unwrap_or_else(|| panic!("no expiry for {netns}:\n{metrics}"));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        // The leaf is valid for 30 days, the CA for 10 years: the earliest is the leaf's.
        assert!(
            (now + 29.0 * 86400.0..now + 31.0 * 86400.0).contains(&expiry),
            "{expiry}"
        );
        for phase in ["resolve", "connect", "tls", "processing", "transfer"] {
            let labels = [("probe", "good"), ("netns", netns), ("phase", phase)];
            let took = metric(&metrics, "hybridprobe_http_phase_duration_seconds", &labels);
            assert!(took.is_some_and(|t| t >= 0.0), "{phase}/{netns}: {took:?}");
        }
        let version = [("probe", "good"), ("netns", netns), ("version", "TLS 1.3")];
        assert_eq!(
            metric(&metrics, "hybridprobe_http_tls_version_info", &version),
            Some(1.0)
        );
        // An expired certificate still exports when it expired.
        let expired = [("probe", "expired"), ("netns", netns)];
        assert_eq!(
            metric(
                &metrics,
                "hybridprobe_http_cert_expiry_timestamp_seconds",
                &expired
            ),
            Some(1_609_459_200.0)
        );
    }
}
