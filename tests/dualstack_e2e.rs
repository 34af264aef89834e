//! End to end over both families: every kind's IPv6 check beside its IPv4 twin, from the pod and
//! the host (node) namespace, through a healthy dual-stack lab and faults that break one family;
//! and probes with `family: both`, one check per family.

mod lab;
mod support;

use std::net::{Ipv6Addr, SocketAddr};
use std::time::Duration;

use lab::dns::{dnsmasq_available, Forward, DB6_NAME, DB_NAME, DUAL_GW_NAME, DUAL_NAME};
use lab::stun::turnserver_available;
use lab::web::nginx_available;
use lab::{
    Host, Lab, NODE_IP, NODE_IP6, NODE_POD_GW, NODE_POD_GW6, ONPREM_GW, ONPREM_GW6, ONPREM_IP,
    ONPREM_IP6, ONPREM_NET, ONPREM_NET6, POD_IP, POD_IP6, TUNNEL_MTU, VNET_GW, VNET_GW6,
};
use support::{check, check_once, codes, metric, piece, pod_and_host_config, Agent, Resolv};

const LDAP_PORT: u16 = 389;
const STUN_PORT: u16 = 3478;
/// Served on every address of the node, its gateway addresses for the pod among them.
const NODE_PORT: u16 = 2222;
/// On the node's IPv6 subnet, where nothing answers.
const NOT_A_GATEWAY6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0x1801, 0, 0, 0, 0xfe);

/// Every kind twice, `-4` and `-6`, and a second on-prem address pinged (the on-prem gateway's
/// LAN side); the route checks expect each namespace's own next hop.
fn probes() -> String {
    format!(
        r#"  - name: ldap-4
    tcp: {{ target: "{ONPREM_IP}:{LDAP_PORT}" }}
  - name: ldap-6
    tcp: {{ target: "[{ONPREM_IP6}]:{LDAP_PORT}" }}
  - name: ping-4
    icmp: {{ target: "{ONPREM_IP}", count: 2 }}
  - name: ping-6
    icmp: {{ target: "{ONPREM_IP6}", count: 2 }}
  - name: gw-4
    icmp: {{ target: "{ONPREM_GW}", count: 2 }}
  - name: gw-6
    icmp: {{ target: "{ONPREM_GW6}", count: 2 }}
  - name: dns-4
    dns: {{ query: {DB_NAME}, type: A, servers: ["{ONPREM_IP}"], expect: {{ within: ["{ONPREM_NET}"] }} }}
  - name: dns-6
    dns: {{ query: {DB6_NAME}, type: AAAA, servers: ["{ONPREM_IP6}"], expect: {{ within: ["{ONPREM_NET6}"] }} }}
  - name: stun-4
    source_ip: {{ stun: "{ONPREM_IP}:{STUN_PORT}" }}
  - name: stun-6
    source_ip: {{ stun: "[{ONPREM_IP6}]:{STUN_PORT}" }}
  - name: web-4
    http: {{ url: "http://{ONPREM_IP}/healthz" }}
  - name: web-6
    http: {{ url: "http://[{ONPREM_IP6}]/healthz" }}
  - name: route-4
    netns: [pod]
    route: {{ destination: "{ONPREM_NET}", via: "{NODE_POD_GW}", dev: eth0, src: "{POD_IP}" }}
  - name: route-6
    netns: [pod]
    route: {{ destination: "{ONPREM_NET6}", via: "{NODE_POD_GW6}", dev: eth0, src: "{POD_IP6}" }}
  - name: route-host-4
    netns: [host]
    route: {{ destination: "{ONPREM_NET}", via: "{VNET_GW}", dev: eth0, src: "{NODE_IP}" }}
  - name: route-host-6
    netns: [host]
    route: {{ destination: "{ONPREM_NET6}", via: "{VNET_GW6}", dev: eth0, src: "{NODE_IP6}" }}
"#
    )
}

/// The kinds whose checks cross the tunnel, run in both namespaces.
const ACROSS: [&str; 6] = ["ldap", "ping", "gw", "dns", "stun", "web"];

/// One `check` round of [`probes`].
fn round(lab: &Lab) -> serde_json::Value {
    check_once(
        lab,
        Resolv::Own,
        "{ interval: 5s, timeout: 1500ms }",
        &probes(),
    )
}

fn assert_result(verdict: &serde_json::Value, probe: &str, netns: &str, result: &str) {
    let c = check(verdict, probe, netns);
    assert_eq!(c["result"], result, "{probe}/{netns}: {c}");
}

/// Each family's route checks, in the namespace each runs in.
fn assert_routes(verdict: &serde_json::Value, family: &str, result: &str) {
    assert_result(verdict, &format!("route-{family}"), "pod", result);
    assert_result(verdict, &format!("route-host-{family}"), "host", result);
}

/// Asserts `result` for every crossing check of `family` (`4` or `6`) in both namespaces.
fn assert_across(verdict: &serde_json::Value, family: &str, result: &str) {
    for kind in ACROSS {
        for netns in ["pod", "host"] {
            assert_result(verdict, &format!("{kind}-{family}"), netns, result);
        }
    }
}

/// The verdict names exactly one diagnosis, the family's, starting with `says`.
fn assert_family_down(verdict: &serde_json::Value, says: &str) {
    assert_eq!(codes(verdict), ["onprem_family_unreachable"], "{verdict:#}");
    let summary = verdict["diagnoses"][0]["summary"]
        .as_str()
        .unwrap_or_default();
    assert!(summary.starts_with(says), "{summary}");
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn every_kind_over_ipv6_beside_ipv4_and_one_family_down() {
    let test = "dualstack";
    if !dnsmasq_available(test) || !nginx_available(test) || !turnserver_available(test) {
        return;
    }
    let Some(lab) = Lab::new("dualstack") else {
        return;
    };
    for ip in [ONPREM_IP.into(), ONPREM_IP6.into()] {
        lab.serve_tcp(Host::Onprem, SocketAddr::new(ip, LDAP_PORT));
    }
    lab.onprem_dns();
    lab.onprem_web();
    lab.start_coturn(STUN_PORT);

    let verdict = round(&lab);
    assert_eq!(verdict["status"], "ok", "{verdict:#}");
    assert_across(&verdict, "4", "success");
    assert_across(&verdict, "6", "success");
    assert_routes(&verdict, "4", "success");
    assert_routes(&verdict, "6", "success");
    let detail = |probe: &str, netns: &str| {
        check(&verdict, probe, netns)["detail"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    for netns in ["pod", "host"] {
        let ldap = detail("ldap-6", netns);
        assert!(
            ldap.contains(&format!("[{ONPREM_IP6}]:{LDAP_PORT}")),
            "{ldap}"
        );
        let ping = detail("ping-6", netns);
        assert!(ping.starts_with(&format!("{ONPREM_IP6}: 2/2")), "{ping}");
        let dns = detail("dns-6", netns);
        assert!(dns.contains(&lab::dns::DB_IP6.to_string()), "{dns}");
    }
    // coturn saw each namespace's own IPv6 address: no NAT66 on the way.
    for (netns, own) in [("pod", POD_IP6), ("host", NODE_IP6)] {
        let stun = detail("stun-6", netns);
        assert!(stun.contains(&own.to_string()), "{netns}: {stun}");
    }
    assert_eq!(
        detail("route-6", "pod"),
        format!("{ONPREM_NET6} via {NODE_POD_GW6} dev eth0 src {POD_IP6}")
    );

    // IPv6 across the tunnel is gone; IPv4 and every route stay as they were, and the cause is
    // named once, not as DNS and services down.
    lab.tunnel_drop_ip6(true);
    let verdict = round(&lab);
    assert_eq!(verdict["status"], "fail", "{verdict:#}");
    assert_across(&verdict, "4", "success");
    assert_across(&verdict, "6", "timeout");
    assert_routes(&verdict, "4", "success");
    assert_routes(&verdict, "6", "success");
    assert_family_down(&verdict, "IPv6 across the tunnel is down while IPv4 works");
    lab.tunnel_drop_ip6(false);

    // The reverse.
    lab.tunnel_drop_ip4(true);
    let verdict = round(&lab);
    assert_across(&verdict, "4", "timeout");
    assert_across(&verdict, "6", "success");
    assert_family_down(&verdict, "IPv4 across the tunnel is down while IPv6 works");
    lab.tunnel_drop_ip4(false);

    // A wrong IPv6 route on the node: only the node's IPv6 route check sees it.
    lab.node_onprem_route6(Some(NOT_A_GATEWAY6));
    let verdict = round(&lab);
    assert_result(&verdict, "route-host-6", "host", "mismatch");
    assert_result(&verdict, "route-host-4", "host", "success");
    assert_result(&verdict, "route-6", "pod", "success");
    assert_eq!(
        codes(&verdict),
        ["route_mismatch"],
        "the route explains IPv6 not crossing"
    );
    lab.node_onprem_route6(None);
}

/// [`DUAL_NAME`] three times, by `family`, asked of the on-prem server, and the AAAA-only
/// [`DB6_NAME`] on IPv4; and the IPv6 gateway,
/// pinged and, from the pod, connected to.
fn family_probes() -> String {
    let target = format!("{DUAL_NAME}:{LDAP_PORT}");
    let resolver = format!("resolver: [\"{ONPREM_IP}\"]");
    format!(
        r#"  - name: dual-4
    tcp: {{ target: "{target}", family: ipv4, {resolver} }}
  - name: dual-6
    tcp: {{ target: "{target}", family: ipv6, {resolver} }}
  - name: dual-any
    tcp: {{ target: "{target}", {resolver} }}
  - name: db6-4
    tcp: {{ target: "{DB6_NAME}:{LDAP_PORT}", family: ipv4, {resolver} }}
  - name: gateway-6
    icmp: {{ target: gateway, family: ipv6, count: 2 }}
  - name: dual-trace-6
    traceroute: {{ target: "{DUAL_NAME}", family: ipv6, max_hops: 6, {resolver} }}
  - name: dual-mtu-6
    path_mtu: {{ target: "{DUAL_NAME}", family: ipv6, {resolver} }}
  - name: gateway-6-tcp
    netns: [pod]
    tcp: {{ target: "gateway:{NODE_PORT}", family: ipv6 }}
"#
    )
}

/// The address `probe` in `netns` last resolved its name to, as the agent exports it.
fn resolved_to(agent: &Agent, probe: &str, netns: &str, address: &str) -> Option<f64> {
    let labels = [("probe", probe), ("netns", netns), ("address", address)];
    metric(
        &agent.metrics(),
        "hybridprobe_resolved_address_info",
        &labels,
    )
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn a_dual_name_is_probed_on_the_family_asked_for() {
    if !dnsmasq_available("family") {
        return;
    }
    let Some(lab) = Lab::new("family") else {
        return;
    };
    for ip in [ONPREM_IP.into(), ONPREM_IP6.into()] {
        lab.serve_tcp(Host::Onprem, SocketAddr::new(ip, LDAP_PORT));
    }
    lab.onprem_dns();
    lab.serve_tcp(
        Host::Node,
        SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), NODE_PORT),
    );
    let defaults = "{ interval: 1s, timeout: 800ms }";
    let config = pod_and_host_config(&lab, Resolv::Own, defaults, &family_probes());
    let agent = Agent::start(&lab, &config);
    let wait = Duration::from_secs(15);
    let (v4, v6) = (ONPREM_IP.to_string(), ONPREM_IP6.to_string());
    for (netns, gateway) in [("pod", NODE_POD_GW6), ("host", VNET_GW6)] {
        for probe in ["dual-4", "dual-6", "dual-any", "gateway-6", "dual-trace-6"] {
            agent.wait_check(probe, netns, "success", wait);
        }
        agent.wait_check("dual-mtu-6", netns, "success", wait);
        assert_eq!(resolved_to(&agent, "dual-4", netns, &v4), Some(1.0));
        assert_eq!(resolved_to(&agent, "dual-6", netns, &v6), Some(1.0));
        // `any` takes the A record: the name's AAAA does not move it onto IPv6.
        assert_eq!(resolved_to(&agent, "dual-any", netns, &v4), Some(1.0));
        assert_eq!(resolved_to(&agent, "dual-any", netns, &v6), None);
        let (_, verdict) = agent.healthz_json();
        let db6 = check(&verdict, "db6-4", netns);
        assert_eq!(db6["result"], "resolve_failed", "{db6}");
        let nodata = format!("resolve {DB6_NAME}: nodata (A only, family: ipv4)");
        assert!(
            db6["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with(&nodata)),
            "{db6}"
        );
        // The path kinds measure the name's IPv6 address when asked to, not its A record.
        for (probe, measured) in [
            (
                "dual-trace-6",
                format!("{DUAL_NAME} ({v6}): {v6} reached in "),
            ),
            (
                "dual-mtu-6",
                format!("{DUAL_NAME} ({v6}): {v6}: path MTU {TUNNEL_MTU}"),
            ),
        ] {
            let detail = &check(&verdict, probe, netns)["detail"];
            assert!(
                detail.as_str().is_some_and(|d| d.starts_with(&measured)),
                "{probe} {netns}: {detail}"
            );
        }
        let ping = &check(&verdict, "gateway-6", netns)["detail"];
        assert!(
            ping.as_str()
                .is_some_and(|d| d.starts_with(&format!("{gateway}: 2/2"))),
            "{netns}: {ping}"
        );
    }

    // IPv6 across the tunnel is gone: only the IPv6 twin fails, the gateways still answer.
    lab.tunnel_drop_ip6(true);
    for netns in ["pod", "host"] {
        agent.wait_check("dual-6", netns, "timeout", wait);
        let (_, verdict) = agent.healthz_json();
        for probe in ["dual-4", "dual-any", "gateway-6"] {
            assert_result(&verdict, probe, netns, "success");
        }
    }
    lab.tunnel_drop_ip6(false);

    agent.wait_check("gateway-6-tcp", "pod", "success", wait);

    // A gateway known only by its link-local address, as router advertisements give it: the
    // echo and the connection go out of the default route's interface.
    let gateway6 = NODE_POD_GW6.to_string();
    lab.must(
        Host::Node,
        "ip",
        &["addr", "add", "fe80::1/64", "dev", "pod0", "nodad"],
    );
    lab.must(
        Host::Pod,
        "ip",
        &[
            "-6", "route", "replace", "default", "via", "fe80::1", "dev", "eth0",
        ],
    );
    lab.wait_until(
        "the pod's IPv6 gateway pinged by its link-local address",
        wait,
        || {
            let (_, verdict) = agent.healthz_json();
            let ping = check(&verdict, "gateway-6", "pod");
            ping["result"] == "success"
                && ping["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("fe80::1: 2/2"))
        },
    );
    let connected = |d: &str| d.starts_with("connected to [fe80::1%");
    lab.wait_until(
        "the pod's IPv6 gateway connected to by its link-local address",
        wait,
        || {
            let (_, verdict) = agent.healthz_json();
            let tcp = check(&verdict, "gateway-6-tcp", "pod");
            tcp["result"] == "success" && tcp["detail"].as_str().is_some_and(connected)
        },
    );
    lab.must(
        Host::Pod,
        "ip",
        &["-6", "route", "replace", "default", "via", &gateway6],
    );
}

/// Probes with `family: both` at the two dual-stack names, asked of each namespace's own
/// resolver (the cluster DNS from the pod, on-prem from the host, both over IPv4), and one
/// probe of the same name that is not split.
fn both_probes() -> String {
    format!(
        r#"  - name: dual-ldap
    tcp: {{ target: "{DUAL_NAME}:{LDAP_PORT}", family: both }}
  - name: dual-ping
    icmp: {{ target: "{DUAL_NAME}", family: both, count: 2 }}
  - name: dual-gw
    icmp: {{ target: "{DUAL_GW_NAME}", family: both, count: 2 }}
  - name: dual-web
    http: {{ url: "http://{DUAL_NAME}/healthz", family: both }}
  - name: dual-any
    tcp: {{ target: "{DUAL_NAME}:{LDAP_PORT}" }}
"#
    )
}

/// The probes of [`both_probes`] split by family.
const SPLIT: [&str; 4] = ["dual-ldap", "dual-ping", "dual-gw", "dual-web"];

/// The entry of the `family` check of `probe` in `netns` of a /healthz JSON verdict.
fn half<'j>(
    verdict: &'j serde_json::Value,
    probe: &str,
    netns: &str,
    family: &str,
) -> &'j serde_json::Value {
    verdict["checks"]
        .as_array()
        .and_then(|checks| {
            checks.iter().find(|c| {
                (&c["probe"], &c["netns"], &c["family"])
                    == (&probe.into(), &netns.into(), &family.into())
            })
        })
        .unwrap_or_else(|| panic!("no check {probe}/{netns}/{family} in {verdict}"))
}

/// `hybridprobe_probe_success` of the `family` check of `probe` in `netns`.
fn success(metrics: &str, probe: &str, netns: &str, family: &str) -> Option<f64> {
    let labels = [("probe", probe), ("netns", netns), ("family", family)];
    metric(metrics, "hybridprobe_probe_success", &labels)
}

/// Whether every split check of `family` reports `result` in both namespaces, in /healthz and
/// in /metrics alike.
fn family_reports(agent: &Agent, family: &str, result: &str) -> bool {
    let (_, verdict) = agent.healthz_json();
    let metrics = agent.metrics();
    let passed = f64::from(result == "success");
    SPLIT.iter().all(|probe| {
        ["pod", "host"].iter().all(|netns| {
            half(&verdict, probe, netns, family)["result"] == result
                && success(&metrics, probe, netns, family) == Some(passed)
        })
    })
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn a_both_probe_reports_each_family_and_names_one_family_down() {
    let test = "both";
    if !dnsmasq_available(test) || !nginx_available(test) {
        return;
    }
    let Some(lab) = Lab::new(test) else {
        return;
    };
    for ip in [ONPREM_IP.into(), ONPREM_IP6.into()] {
        lab.serve_tcp(Host::Onprem, SocketAddr::new(ip, LDAP_PORT));
    }
    lab.onprem_dns();
    lab.cluster_dns(Forward::Onprem);
    lab.onprem_web();
    let defaults = "{ interval: 1s, timeout: 800ms }";
    // Every check that turns failing at once is captured, not two of them.
    let config = pod_and_host_config(&lab, Resolv::ClusterAndOnprem, defaults, &both_probes())
        + "evidence: { max_concurrent: 16 }\n";
    let agent = Agent::start(&lab, &config);
    let wait = Duration::from_secs(20);

    // Healthy: every split check passes over its own family, each its own series.
    lab.wait_until("every split check passing", wait, || {
        family_reports(&agent, "ipv4", "success") && family_reports(&agent, "ipv6", "success")
    });
    let (_, verdict) = agent.healthz_json();
    assert_eq!(verdict["status"], "ok", "{verdict:#}");
    let (v4, v6) = (ONPREM_IP.to_string(), ONPREM_IP6.to_string());
    let metrics = agent.metrics();
    for netns in ["pod", "host"] {
        for (family, address) in [("ipv4", &v4), ("ipv6", &v6)] {
            let detail = half(&verdict, "dual-ldap", netns, family)["detail"]
                .as_str()
                .unwrap_or_default();
            assert!(
                detail.starts_with(&format!("{DUAL_NAME} ({address})")),
                "{detail}"
            );
            let labels = [
                ("probe", "dual-ldap"),
                ("netns", netns),
                ("family", family),
                ("address", address.as_str()),
            ];
            let resolved = metric(&metrics, "hybridprobe_resolved_address_info", &labels);
            assert_eq!(resolved, Some(1.0), "{netns} {family}");
        }
        // The probe that is not split has one entry and its series carry no family at all.
        assert!(check(&verdict, "dual-any", netns).get("family").is_none());
    }
    let unsplit: Vec<&str> = metrics
        .lines()
        .filter(|l| l.contains("probe=\"dual-any\""))
        .collect();
    assert!(
        !unsplit.is_empty() && unsplit.iter().all(|l| !l.contains("family=")),
        "{unsplit:?}"
    );

    // IPv6 across the tunnel is gone: the IPv6 checks fail, the IPv4 ones stay green, and the
    // cause is named once.
    lab.tunnel_drop_ip6(true);
    lab.wait_until(
        "the IPv6 checks failing, the IPv4 ones passing",
        wait,
        || family_reports(&agent, "ipv6", "timeout") && family_reports(&agent, "ipv4", "success"),
    );
    let (_, verdict) = agent.healthz_json();
    assert_eq!(verdict["status"], "fail", "{verdict:#}");
    assert_family_down(&verdict, "IPv6 across the tunnel is down while IPv4 works");
    assert_result(&verdict, "dual-any", "pod", "success");
    let metrics = agent.metrics();
    let active = [("code", "onprem_family_unreachable")];
    assert_eq!(
        metric(&metrics, "hybridprobe_diagnosis", &active),
        Some(1.0)
    );
    // The evidence of a failing IPv6 check resolves the name to its AAAA, and routes to it.
    lab.wait_until("the IPv6 check's evidence", wait, || {
        let (_, verdict) = agent.healthz_json();
        half(&verdict, "dual-ldap", "pod", "ipv6")["evidence"].is_array()
    });
    let (_, verdict) = agent.healthz_json();
    let capture = &half(&verdict, "dual-ldap", "pod", "ipv6")["evidence"][0];
    let resolved = piece(capture, "resolved", "pod");
    let text = resolved["text"].as_str().unwrap_or_default();
    assert_eq!(text, format!("{DUAL_NAME}: {v6}"), "{resolved}");
    let route = piece(capture, "route", "pod")["text"]
        .as_str()
        .unwrap_or_default();
    assert!(route.starts_with(&v6), "{route}");

    // Recovery clears the diagnosis.
    lab.tunnel_drop_ip6(false);
    lab.wait_until(
        "the IPv6 checks recovered and the node healthy",
        wait,
        || {
            let (_, verdict) = agent.healthz_json();
            family_reports(&agent, "ipv6", "success")
                && verdict["status"] == "ok"
                && codes(&verdict).is_empty()
        },
    );
    let metrics = agent.metrics();
    assert_eq!(
        metric(&metrics, "hybridprobe_diagnosis", &active),
        Some(0.0)
    );
}
