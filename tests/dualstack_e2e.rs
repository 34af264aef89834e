//! End to end over both families: every kind's IPv6 check beside its IPv4 twin, from the pod and
//! the host (node) namespace, through a healthy dual-stack lab and faults that break one family.

mod lab;
mod support;

use std::net::{Ipv6Addr, SocketAddr};

use lab::dns::{dnsmasq_available, DB6_NAME, DB_NAME};
use lab::stun::turnserver_available;
use lab::web::nginx_available;
use lab::{
    Host, Lab, NODE_IP, NODE_IP6, NODE_POD_GW, NODE_POD_GW6, ONPREM_GW, ONPREM_GW6, ONPREM_IP,
    ONPREM_IP6, ONPREM_NET, ONPREM_NET6, POD_IP, POD_IP6, VNET_GW, VNET_GW6,
};
use support::{check, check_once, codes, Resolv};

const LDAP_PORT: u16 = 389;
const STUN_PORT: u16 = 3478;
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
