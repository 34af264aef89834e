//! The manifests themselves, tested: each kustomization in deploy/ is rendered, checked for the
//! settings the agent depends on, and its DaemonSet's container is run in the namespace lab
//! with its own command, args, env, user, capabilities, sysctls and ConfigMap, against lab
//! servers at the config's own example addresses: every configured check must pass. The Helm
//! chart's DaemonSet is held equal to kustomize's and run the same way.

mod deploy;
mod lab;
mod support;

use std::time::Duration;

use deploy::{
    configured_checks, memory_bytes, str_of, strings, ConfigTargets, Manifests, PodRun,
    LAB_NODE_NAME,
};
use hybridprobe::probe::ProbeKind;
use lab::{Host, Lab, NODE_IP, POD_IP};
use serde_json::Value;
use std::path::Path;
use support::{check, metric};

const CONFIG_MAP: &str = "hybridprobe-config";
/// The shipped configs' source_ip check.
const SOURCE_IP_PROBE: &str = "onprem-source-ip";
const MEMORY_LIMIT_MAX: u64 = 64 << 20;

/// The settings every variant must keep, whatever else an overlay changes.
fn check_invariants(m: &Manifests) {
    let pod = m.pod_spec("DaemonSet");
    let container = &pod["containers"][0];
    let src = &m.source;
    assert_eq!(
        pod["hostNetwork"], false,
        "{src}: the agent must run in the pod network"
    );
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
        "{src}"
    );
    assert!(
        pod["tolerations"].as_array().is_some_and(|t| t
            .iter()
            .any(|t| t["operator"] == "Exists" && t.get("key").is_none())),
        "{src}: every node must get an agent, tainted or not"
    );
    let priority = str_of(&pod["priorityClassName"]);
    assert_eq!(
        m.one("PriorityClass")["metadata"]["name"],
        priority,
        "{src}"
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"], "/livez",
        "{src}"
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"], "/readyz",
        "{src}"
    );
    let sc = &container["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{src}");
    assert_eq!(sc["privileged"], false, "{src}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{src}: no_new_privs");
    assert_eq!(
        pod["nodeSelector"]["kubernetes.io/arch"], "amd64",
        "{src}: the image is x86_64 only"
    );
    // CAP_SYS_PTRACE only opens /proc/1's files, which only hostPID makes the node's.
    let ptrace = strings(&sc["capabilities"]["add"]).contains(&"SYS_PTRACE".to_owned());
    assert_eq!(
        ptrace,
        pod["hostPID"] == true,
        "{src}: SYS_PTRACE goes with hostPID"
    );
    let limit = memory_bytes(str_of(&container["resources"]["limits"]["memory"]));
    assert!(
        limit <= MEMORY_LIMIT_MAX,
        "{src}: memory limit {limit} above 64Mi"
    );
    for (name, field) in [
        ("NODE_NAME", "spec.nodeName"),
        ("POD_IP", "status.podIP"),
        ("HOST_IP", "status.hostIP"),
    ] {
        let var = container["env"]
            .as_array()
            .and_then(|env| env.iter().find(|e| e["name"] == name))
            .unwrap_or_else(|| panic!("{src}: no env {name}"));
        assert_eq!(var["valueFrom"]["fieldRef"]["fieldPath"], field, "{src}");
    }

    let service = m.one("Service");
    assert_eq!(
        service["spec"]["clusterIP"], "None",
        "{src}: the smoke check needs a headless Service"
    );
    let labels = &m.one("DaemonSet")["spec"]["template"]["metadata"]["labels"];
    for (k, v) in service["spec"]["selector"].as_object().expect("selector") {
        assert_eq!(&labels[k], v, "{src}: the Service must select the agents");
    }
    // The PodMonitor comes with a monitoring component (deploy/components), not with the base.
    for monitor in m.objects.iter().filter(|o| o["kind"] == "PodMonitor") {
        check_pod_monitor(src, monitor, labels);
    }
}

/// A PodMonitor, of either API group, scrapes the agents and adds the labels the alerts and the
/// dashboard select on.
fn check_pod_monitor(src: &str, monitor: &Value, pod_labels: &Value) {
    let spec = &monitor["spec"];
    for (k, v) in spec["selector"]["matchLabels"]
        .as_object()
        .expect("selector")
    {
        assert_eq!(
            &pod_labels[k], v,
            "{src}: the PodMonitor must select the agents"
        );
    }
    let relabelings = &spec["podMetricsEndpoints"][0]["relabelings"];
    assert!(
        relabelings
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["targetLabel"] == "node"
                && r["sourceLabels"][0] == "__meta_kubernetes_pod_node_name")),
        "{src}: the PodMonitor must add the node label"
    );
    assert!(
        relabelings.as_array().is_some_and(|r| r
            .iter()
            .any(|r| r["targetLabel"] == "job" && r["replacement"] == "hybridprobe")),
        "{src}: the PodMonitor must set job=\"hybridprobe\""
    );
}

/// Every kustomization a user may apply: the base and each overlay.
fn variants() -> Vec<String> {
    let mut dirs = vec!["deploy/base".to_owned()];
    let overlays = deploy::repo_path("deploy/overlays");
    for entry in std::fs::read_dir(&overlays).expect("deploy/overlays") {
        let name = entry.expect("an overlay").file_name();
        dirs.push(format!("deploy/overlays/{}", name.to_string_lossy()));
    }
    dirs.sort();
    dirs
}

/// No variant schedules a pod where its x86_64 binary cannot run, the smoke Job included; and
/// none leaves no_new_privs off. Rendering only, no lab.
#[test]
fn every_variant_pins_amd64_and_no_new_privs() {
    for dir in variants() {
        let Some(m) = Manifests::render(&dir) else {
            return;
        };
        let pod = m.pod_spec("DaemonSet");
        assert_eq!(pod["nodeSelector"]["kubernetes.io/arch"], "amd64", "{dir}");
        let sc = &pod["containers"][0]["securityContext"];
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{dir}");
    }
    let job = Manifests::file("deploy/smoke/job.yaml");
    let pod = job.pod_spec("Job");
    assert_eq!(pod["nodeSelector"]["kubernetes.io/arch"], "amd64");
    assert_eq!(pod["nodeSelector"]["kubernetes.io/os"], "linux");
}

/// How the lab's node treats pod traffic to on-prem, as the overlay's network plugin would.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Node {
    /// Pods keep their address toward on-prem (Azure CNI with nonMasqueradeCIDRs).
    KeepsPodIp,
    /// Pods are SNAT'd to the node's address (kubenet).
    Masquerades,
}

/// Renders `dir`, runs its DaemonSet's container in the lab's pod namespace with everything its
/// config talks to up, and checks what the kubelet and an operator would see.
fn run_rendered_daemonset(test: &str, dir: &str, node: Node) -> Option<()> {
    run_daemonset(test, || Manifests::render(dir), node)
}

/// [`run_rendered_daemonset`] for manifests from `render` (kustomize's or the chart's).
fn run_daemonset(test: &str, render: impl FnOnce() -> Option<Manifests>, node: Node) -> Option<()> {
    let lab = Lab::new(test)?;
    let manifests = render()?;
    let dir = manifests.source.as_str();
    check_invariants(&manifests);
    let _targets = ConfigTargets::start(&lab, test, node == Node::Masquerades)?;
    let pod = manifests.pod_spec("DaemonSet");
    let container = &pod["containers"][0];
    let run = PodRun::prepare(&lab, &manifests, pod);
    assert_eq!(run.env_value("HYBRIDPROBE_NODE"), Some(LAB_NODE_NAME));
    let agent = run.spawn(&lab, Host::Pod);

    let probe = |which: &str| {
        let get = &container[which]["httpGet"];
        let url = format!(
            "http://{POD_IP}:{}{}",
            run.port(&get["port"]),
            str_of(&get["path"])
        );
        lab.http_get(Host::Pod, &url, false).0
    };
    lab.wait_until("the liveness probe", Duration::from_secs(10), || {
        probe("livenessProbe") == 200
    });
    // The base interval is 10 s and first rounds are spread across it.
    lab.wait_until("the readiness probe", Duration::from_secs(30), || {
        probe("readinessProbe") == 200
    });

    let port = run.port(&Value::from("http"));
    let (code, body) = lab.http_get(Host::Pod, &format!("http://{POD_IP}:{port}/healthz"), true);
    let verdict: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(
        code, 200,
        "every configured check passes in the lab: {verdict}"
    );
    assert_eq!(
        verdict["node"], LAB_NODE_NAME,
        "HYBRIDPROBE_NODE from the downward API"
    );
    let config = manifests.config_map_file(CONFIG_MAP, "config.yaml");
    // The node's namespace comes from hostPID's /proc/1 or from the volume the node pinned.
    let expect_host = pod["hostPID"] == true || !run.host_mounts.is_empty();
    assert_eq!(
        config.contains("host:"),
        expect_host,
        "{dir}: host checks need a way into the node's namespace"
    );
    let checks = verdict["checks"].as_array().unwrap();
    let mut ran: Vec<(String, String)> = checks
        .iter()
        .map(|c| {
            (
                str_of(&c["probe"]).to_owned(),
                str_of(&c["netns"]).to_owned(),
            )
        })
        .collect();
    ran.sort();
    assert_eq!(ran, configured_checks(&config), "{dir}: {verdict}");
    for c in checks {
        assert_eq!(c["result"], "success", "{c}");
    }
    // With host privileges the shipped config exercises every probe kind.
    let mut kinds: Vec<&str> = checks.iter().map(|c| str_of(&c["kind"])).collect();
    kinds.sort();
    kinds.dedup();
    if expect_host {
        let mut all = ProbeKind::NAMES.to_vec();
        all.sort();
        assert_eq!(kinds, all, "{dir}: a probe kind missing from the config");
    }

    let (_, metrics) = lab.http_get(Host::Pod, &format!("http://{POD_IP}:{port}/metrics"), false);
    let runs = metric(
        &metrics,
        "hybridprobe_probe_runs_total",
        &[
            ("probe", "dc1-ping"),
            ("netns", "pod"),
            ("result", "success"),
        ],
    );
    assert!(runs.unwrap_or(0.0) >= 1.0, "{metrics}");

    // What on-prem saw from the pod, and the node's own account of it: conntrack, read with
    // NET_ADMIN in the host namespace. Without a host namespace there is no such evidence.
    let source_ip = check(&verdict, SOURCE_IP_PROBE, "pod");
    let detail = str_of(&source_ip["detail"]);
    let snat = metric(
        &metrics,
        "hybridprobe_snat_observed",
        &[("probe", SOURCE_IP_PROBE), ("netns", "pod")],
    );
    let seen = if node == Node::Masquerades {
        NODE_IP
    } else {
        POD_IP
    };
    assert!(detail.contains(&format!("on-prem saw {seen}")), "{detail}");
    if expect_host {
        assert!(detail.contains("conntrack: this node"), "{detail}");
        let snat_expected = if node == Node::Masquerades { 1.0 } else { 0.0 };
        assert_eq!(snat, Some(snat_expected), "{metrics}");
    } else {
        assert!(detail.contains("conntrack: skipped"), "{detail}");
        assert_eq!(snat, None, "{metrics}");
    }

    // The agent runs as the manifest's user, with exactly the capabilities it adds (none take
    // effect for a non-root user), no_new_privs as the manifest says, and fits in the
    // manifest's memory limit.
    let pid = run.container_pid(&lab, agent);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().next().unwrap_or_default().to_owned())
            .unwrap_or_else(|| panic!("no {name} in {status}"))
    };
    let uid: i64 = field("Uid:").parse().unwrap();
    let sc = &pod["securityContext"];
    assert_eq!(uid, sc["runAsUser"].as_i64().unwrap(), "{status}");
    let cap_eff = u64::from_str_radix(&field("CapEff:"), 16).unwrap();
    let added = container["securityContext"]["capabilities"]["add"]
        .as_array()
        .map_or(0, |caps| caps.len());
    let expected = if uid == 0 { added } else { 0 };
    assert_eq!(
        cap_eff.count_ones() as usize,
        expected,
        "CapEff {cap_eff:x}"
    );
    let no_new_privs = field("NoNewPrivs:") == "1";
    assert_eq!(
        no_new_privs,
        container["securityContext"]["allowPrivilegeEscalation"] == false,
        "{status}"
    );
    if pod["hostPID"] != true {
        // The node's /proc/1 is out of reach: the container's /proc/1 is the agent itself.
        let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap();
        assert_ne!(ns(&pid.to_string()), ns("self"), "a private PID namespace");
        let nspid = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .unwrap();
        assert_eq!(nspid.split_whitespace().last(), Some("1"), "{status}");
    }
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS");
    let limit = memory_bytes(str_of(&container["resources"]["limits"]["memory"]));
    eprintln!("{dir}: agent RSS {rss_kib} KiB, limit {} KiB", limit / 1024);
    assert!(rss_kib * 1024 < limit, "RSS {rss_kib} KiB over the limit");
    Some(())
}

/// No hostPID, no SYS_PTRACE: the node's pinned namespace and resolv.conf through hostPath
/// volumes, and every host-side check green.
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn base_daemonset_runs_green_in_the_lab() {
    run_rendered_daemonset("deploy-base", "deploy/base", Node::KeepsPodIp);
}

/// The /proc/1 way, for nodes that pin nothing: hostPID and SYS_PTRACE, every check green.
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn proc_1_host_overlay_runs_green_in_the_lab() {
    run_rendered_daemonset(
        "deploy-proc1",
        "deploy/overlays/proc-1-host",
        Node::KeepsPodIp,
    );
}

/// A node that has not pinned its namespace: the pod still runs, the pod side is green, and
/// /healthz says why the host side is not there and what to do.
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn an_unpinned_node_is_named_in_healthz() {
    let Some(lab) = Lab::new("deploy-unpinned") else {
        return;
    };
    let Some(manifests) = Manifests::render("deploy/base") else {
        return;
    };
    let Some(_targets) = ConfigTargets::start(&lab, "deploy-unpinned", false) else {
        return;
    };
    let mut run = PodRun::prepare(&lab, &manifests, manifests.pod_spec("DaemonSet"));
    run.node_pins_netns = false;
    run.spawn(&lab, Host::Pod);
    let port = run.port(&Value::from("http"));
    let url = format!("http://{POD_IP}:{port}/healthz");
    lab.wait_until("the agent answering", Duration::from_secs(10), || {
        lab.http_get(Host::Pod, &url, true).0 != 0
    });
    let (_, body) = lab.http_get(Host::Pod, &url, true);
    let verdict: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let host = verdict["namespaces"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["netns"] == "host"))
        .unwrap_or_else(|| panic!("no host namespace in {verdict}"));
    let reason = str_of(&host["reason"]);
    let file = run.env_value("HYBRIDPROBE_HOST_NETNS").unwrap();
    assert!(reason.contains(&format!("cannot open {file}")), "{reason}");
    assert!(reason.contains("has not pinned"), "{reason}");
    assert!(reason.contains("proc-1-host"), "{reason}");
    assert!(Path::new(file).starts_with(deploy::HOST_MOUNTS_UNDER));
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn azure_cni_overlay_runs_green_in_the_lab() {
    run_rendered_daemonset(
        "deploy-azure-cni",
        "deploy/overlays/azure-cni",
        Node::KeepsPodIp,
    );
}

/// The pod's traffic to on-prem leaves as the node's, as the overlay's source_ip check expects.
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn kubenet_overlay_runs_green_in_the_lab() {
    run_rendered_daemonset(
        "deploy-kubenet",
        "deploy/overlays/kubenet",
        Node::Masquerades,
    );
}

/// Non-root, no capabilities, no hostPID: the pod side still works, ICMP included, through the
/// manifest's ping_group_range sysctl.
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn no_host_privileges_overlay_runs_green_without_privileges() {
    run_rendered_daemonset(
        "deploy-no-host",
        "deploy/overlays/no-host-privileges",
        Node::KeepsPodIp,
    );
}

/// The chart's DaemonSet with its default values runs green, as the kustomize base's does.
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn helm_chart_daemonset_runs_green_in_the_lab() {
    run_daemonset("deploy-helm", || Manifests::helm(&[]), Node::KeepsPodIp);
}

/// The chart with `hostChecks.enabled=false` runs green without privileges, as the
/// no-host-privileges overlay does.
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn helm_chart_without_host_checks_runs_green_without_privileges() {
    run_daemonset(
        "deploy-helm-no-host",
        || Manifests::helm(&[HELM_NO_HOST_CHECKS]),
        Node::KeepsPodIp,
    );
}

/// The chart with `proc1Host.enabled=true` runs green through /proc/1, as the proc-1-host
/// overlay does.
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn helm_chart_through_proc_1_runs_green_in_the_lab() {
    run_daemonset(
        "deploy-helm-proc-1",
        || Manifests::helm(&[HELM_PROC_1_HOST]),
        Node::KeepsPodIp,
    );
}

/// Each capability the base adds is needed: without it a named check fails (or, for
/// NET_ADMIN, loses its evidence) the way docs/privileges.md says, and with all of them every check
/// passes.
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn every_added_capability_is_needed() {
    every_added_capability_is_needed_in("deploy-caps", "deploy/base");
}

/// The same for the /proc/1 way, whose SYS_PTRACE opens /proc/1/ns/net.
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn every_added_capability_is_needed_through_proc_1() {
    every_added_capability_is_needed_in("deploy-caps-p1", "deploy/overlays/proc-1-host");
}

fn every_added_capability_is_needed_in(test: &str, dir: &str) {
    let Some(lab) = Lab::new(test) else {
        return;
    };
    let Some(manifests) = Manifests::render(dir) else {
        return;
    };
    let Some(_targets) = ConfigTargets::start(&lab, test, false) else {
        return;
    };
    let run = PodRun::prepare(&lab, &manifests, manifests.pod_spec("DaemonSet"));
    let config = run.arg("--config").to_owned();
    let check_json = |privileges: &[String]| {
        let out = run.run_with(
            &lab,
            Host::Pod,
            &["check", "--config", &config, "--format", "json"],
            privileges,
        );
        let verdict: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code(), verdict)
    };

    let (code, verdict) = check_json(&run.privileges);
    assert_eq!(code, Some(0), "with the manifest's capabilities: {verdict}");
    let with_all = check(&verdict, SOURCE_IP_PROBE, "pod");
    assert!(
        str_of(&with_all["detail"]).contains("conntrack: this node"),
        "{with_all}"
    );

    let added = strings(
        &manifests.pod_spec("DaemonSet")["containers"][0]["securityContext"]["capabilities"]["add"],
    );
    for (capability, probe, result) in [
        ("SYS_ADMIN", "dc1-ldap", "netns_unavailable"),
        ("SYS_PTRACE", "dc1-ldap", "netns_unavailable"),
        ("NET_RAW", "dc1-ping", "permission_denied"),
    ] {
        if !added.contains(&capability.to_owned()) {
            continue;
        }
        let named = format!("CAP_{capability}");
        let privileges = run.without_capability(capability);
        assert_ne!(privileges, run.privileges, "{dir} adds {capability}");
        let (code, verdict) = check_json(&privileges);
        assert_eq!(code, Some(1), "without {capability}: {verdict}");
        let host = check(&verdict, probe, "host");
        assert_eq!(host["result"], result, "without {capability}: {host}");
        assert!(
            str_of(&host["detail"]).contains(&named),
            "the detail names what is missing: {host}"
        );
        assert_eq!(
            check(&verdict, probe, "pod")["result"],
            "success",
            "the pod side needs no {capability}: {verdict}"
        );
        if capability == "NET_RAW" {
            // Raw sockets, in every namespace: only they see fragmentation-needed and
            // time-exceeded.
            for probe in ["tunnel-mtu", "onprem-trace"] {
                let pod = check(&verdict, probe, "pod");
                assert_eq!(pod["result"], "permission_denied", "{pod}");
            }
        }
    }

    // Without NET_ADMIN every check still passes, but the source_ip check loses the node's
    // conntrack evidence: the detail says so and the metric is gone.
    let privileges = run.without_capability("NET_ADMIN");
    assert_ne!(privileges, run.privileges, "the base adds NET_ADMIN");
    let (code, verdict) = check_json(&privileges);
    assert_eq!(code, Some(0), "without NET_ADMIN: {verdict}");
    for netns in ["pod", "host"] {
        let source_ip = check(&verdict, SOURCE_IP_PROBE, netns);
        assert!(
            str_of(&source_ip["detail"])
                .contains("conntrack: skipped: reading conntrack needs CAP_NET_ADMIN"),
            "{source_ip}"
        );
    }
    run.spawn_with(&lab, Host::Pod, &privileges);
    let port = run.port(&Value::from("http"));
    let url = |path: &str| format!("http://{POD_IP}:{port}{path}");
    lab.wait_until(
        "the agent without NET_ADMIN ready",
        Duration::from_secs(30),
        || lab.http_get(Host::Pod, &url("/readyz"), false).0 == 200,
    );
    let (_, metrics) = lab.http_get(Host::Pod, &url("/metrics"), false);
    let labels = [("probe", SOURCE_IP_PROBE), ("netns", "pod")];
    assert_eq!(
        metric(&metrics, "hybridprobe_source_ip_preserved", &labels),
        Some(1.0),
        "{metrics}"
    );
    assert!(!metrics.contains("hybridprobe_snat_observed{"), "{metrics}");
}

/// The shipped overlays compose the monitoring components; every one of them renders with the
/// base's invariants (.ci/checks/manifests.sh renders every combination).
#[test]
fn overlays_compose_the_monitoring_components() {
    for dir in ["deploy/overlays/azure-cni", "deploy/overlays/kubenet"] {
        let Some(m) = Manifests::render(dir) else {
            return;
        };
        check_invariants(&m);
        let labels = &m.one("DaemonSet")["spec"]["template"]["metadata"]["labels"];
        check_pod_monitor(dir, m.one("PodMonitor"), labels);
        let rule = m.one("PrometheusRule");
        let alerts: Vec<&Value> = rule["spec"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .filter(|r| r.get("alert").is_some())
            .collect();
        assert!(alerts.len() >= 15, "{dir}: {} alerts", alerts.len());
        for alert in alerts {
            let url = str_of(&alert["annotations"]["runbook_url"]);
            assert!(
                url.starts_with("https://") && url.contains(".md#"),
                "{dir}: {url}"
            );
        }
        let dashboard = m
            .objects
            .iter()
            .find(|o| {
                o["kind"] == "ConfigMap" && o["metadata"]["labels"]["grafana_dashboard"] == "1"
            })
            .unwrap_or_else(|| panic!("{dir}: no ConfigMap for Grafana's sidecar"));
        let shipped =
            std::fs::read_to_string(deploy::repo_path("dashboards/hybridprobe.json")).unwrap();
        assert_eq!(
            str_of(&dashboard["data"]["hybridprobe.json"]),
            shipped,
            "{dir}: the sidecar's dashboard is dashboards/hybridprobe.json"
        );
        // Client-side `kubectl apply` copies the object into an annotation, which the API
        // server caps at 256 KiB.
        let size = serde_json::to_string(dashboard).unwrap().len();
        assert!(
            size < 256 * 1024,
            "{dir}: the dashboard ConfigMap is {size} bytes"
        );
    }
}

/// What the chart's DaemonSet must have, named so that two renders both lacking a field cannot
/// pass as equal: the command and its environment, privileges, probes, ports and volumes.
const DAEMONSET_ESSENTIALS: &[&str] = &[
    "/spec/template/spec/hostPID",
    "/spec/template/spec/hostNetwork",
    "/spec/template/spec/securityContext/runAsUser",
    "/spec/template/spec/securityContext/sysctls",
    "/spec/template/spec/volumes",
    "/spec/template/spec/containers/0/command",
    "/spec/template/spec/containers/0/args",
    "/spec/template/spec/containers/0/env",
    "/spec/template/spec/containers/0/ports",
    "/spec/template/spec/containers/0/livenessProbe",
    "/spec/template/spec/containers/0/readinessProbe",
    "/spec/template/spec/containers/0/securityContext/allowPrivilegeEscalation",
    "/spec/template/spec/containers/0/securityContext/capabilities",
    "/spec/template/spec/containers/0/volumeMounts",
];

/// The chart's switch for pod-side checks only.
const HELM_NO_HOST_CHECKS: &str = "hostChecks.enabled=false";
/// The chart's switch for entering the node through /proc/1.
const HELM_PROC_1_HOST: &str = "proc1Host.enabled=true";

/// The chart's defaults render the kustomize base's DaemonSet, its `hostChecks.enabled=false`
/// the no-host-privileges overlay's and its `proc1Host.enabled=true` the proc-1-host overlay's:
/// the whole `spec` (command, args, env, security contexts, hostPID, volumes, probes, ports,
/// sysctls and the rest), its name, namespace and labels, the scanner checks it skips, and the
/// config it mounts. A DaemonSet edit on one side only fails here, listing the fields that differ.
#[test]
fn helm_chart_renders_the_kustomize_daemonsets() {
    for (sets, dir) in [
        (&[][..], "deploy/base"),
        (
            &[HELM_NO_HOST_CHECKS][..],
            "deploy/overlays/no-host-privileges",
        ),
        (&[HELM_PROC_1_HOST][..], "deploy/overlays/proc-1-host"),
    ] {
        let (Some(chart), Some(kustomize)) = (Manifests::helm(sets), Manifests::render(dir)) else {
            return;
        };
        let src = &chart.source;
        check_invariants(&chart);
        let (ours, theirs) = (chart.one("DaemonSet"), kustomize.one("DaemonSet"));
        for path in DAEMONSET_ESSENTIALS {
            assert!(ours.pointer(path).is_some(), "{src}: no {path}");
        }
        let mut differ = Vec::new();
        differences(&ours["spec"], &theirs["spec"], "spec", &mut differ);
        assert!(
            differ.is_empty(),
            "{src} and {dir} render different DaemonSets; bring the other side, most likely \
             deploy/helm/hybridprobe/templates/daemonset.yaml, in line:\n{}",
            differ.join("\n")
        );
        for key in ["name", "namespace"] {
            assert_eq!(
                ours["metadata"][key], theirs["metadata"][key],
                "{src}: {key}"
            );
        }
        for (label, value) in theirs["metadata"]["labels"].as_object().expect("labels") {
            assert_eq!(
                &ours["metadata"]["labels"][label], value,
                "{src}: label {label}"
            );
        }
        // The reasons may differ (the chart's image tag comes from a value, not kustomize's
        // images), the checks skipped may not.
        assert_eq!(
            scanner_skips(ours),
            scanner_skips(theirs),
            "{src}: checkov skips"
        );
        assert_eq!(
            chart.config_map_file(CONFIG_MAP, "config.yaml"),
            kustomize.config_map_file(CONFIG_MAP, "config.yaml"),
            "{src}: the config is {dir}'s"
        );
    }
}

/// The checkov check IDs an object's `checkov.io/skip*` annotations skip, sorted.
fn scanner_skips(object: &Value) -> Vec<String> {
    let annotations = object["metadata"]["annotations"].as_object();
    let mut checks: Vec<String> = annotations
        .into_iter()
        .flatten()
        .filter(|(key, _)| key.starts_with("checkov.io/skip"))
        .map(|(_, value)| {
            str_of(value)
                .split('=')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    checks.sort();
    checks
}

/// Every place where `ours` and `theirs` differ, as `path: ours != theirs` lines.
fn differences(ours: &Value, theirs: &Value, path: &str, out: &mut Vec<String>) {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let (x, y) = (&ours[key.as_str()], &theirs[key.as_str()]);
                differences(x, y, &format!("{path}.{key}"), out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                differences(x, y, &format!("{path}[{i}]"), out);
            }
        }
        _ if ours != theirs => out.push(format!("{path}: chart {ours} != kustomize {theirs}")),
        _ => {}
    }
}

/// Azure Monitor's PodMonitor scrapes exactly as the operator's does.
#[test]
fn azure_pod_monitor_matches_the_operators() {
    let operator = Manifests::file("deploy/components/prometheus-operator/podmonitor.yaml");
    let azure = Manifests::file("deploy/components/azure-managed-prometheus/podmonitor.yaml");
    let (operator, azure) = (operator.one("PodMonitor"), azure.one("PodMonitor"));
    assert_eq!(operator["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(azure["apiVersion"], "azmonitoring.coreos.com/v1");
    assert_eq!(azure["spec"], operator["spec"]);
    assert_eq!(azure["metadata"], operator["metadata"]);
}

/// The network policy admits the agents' port to the smoke Job, and the node-local Service
/// that node-problem-detector asks reaches the agents on their port.
#[test]
fn network_policy_and_node_local_service_select_the_agents() {
    let Some(base) = Manifests::render("deploy/base") else {
        return;
    };
    let pod = &base.one("DaemonSet")["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    let port_names: Vec<&str> = pod["spec"]["containers"][0]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| str_of(&p["name"]))
        .collect();
    let matches = |selector: &Value| {
        selector["matchLabels"]
            .as_object()
            .is_some_and(|m| m.iter().all(|(k, v)| &labels[k] == v))
    };

    let policy = Manifests::file("deploy/components/network-policy/networkpolicy.yaml");
    let spec = &policy.one("NetworkPolicy")["spec"];
    assert!(matches(&spec["podSelector"]), "{spec}");
    let rule = &spec["ingress"][0];
    assert_eq!(spec["ingress"].as_array().map(Vec::len), Some(1), "{spec}");
    let port = str_of(&rule["ports"][0]["port"]);
    assert!(port_names.contains(&port), "{port} is no agent port");
    let smoke = Manifests::file("deploy/smoke/job.yaml");
    let smoke_labels = &smoke.one("Job")["spec"]["template"]["metadata"]["labels"];
    assert!(
        rule["from"].as_array().expect("from").iter().any(|peer| {
            peer.get("namespaceSelector").is_none()
                && peer["podSelector"]["matchLabels"]
                    .as_object()
                    .is_some_and(|m| m.iter().all(|(k, v)| &smoke_labels[k] == v))
        }),
        "the smoke Job is admitted: {rule}"
    );

    let npd = Manifests::file("deploy/components/node-problem-detector/service-node-local.yaml");
    let service = &npd.one("Service")["spec"];
    assert_eq!(service["internalTrafficPolicy"], "Local", "{service}");
    let selector = service["selector"].as_object().expect("selector");
    assert!(selector.iter().all(|(k, v)| &labels[k] == v), "{service}");
    assert!(port_names.contains(&str_of(&service["ports"][0]["targetPort"])));
}

#[test]
fn kubernetes_variable_expansion() {
    let env = vec![("NODE_NAME".to_owned(), "n1".to_owned())];
    assert_eq!(deploy::expand("$(NODE_NAME)", &env), "n1");
    assert_eq!(
        deploy::expand("a-$(NODE_NAME)-$(OTHER)", &env),
        "a-n1-$(OTHER)"
    );
    assert_eq!(deploy::expand("$$(NODE_NAME) $x", &env), "$(NODE_NAME) $x");
    assert_eq!(memory_bytes("64Mi"), 64 << 20);
    assert_eq!(memory_bytes("100M"), 100_000_000);
}
