//! The dashboard, the alert rules and the metrics text against live data: the azure-cni
//! overlay's DaemonSet (the base's, with the prometheus-operator component) runs in the lab's
//! pod namespace with its own config (every probe kind, against the lab's servers), a real
//! Prometheus in the node namespace scrapes it with the PodMonitor's own relabelings and loads
//! the PrometheusRule's own rules, `promtool check metrics` reads what the agent serves, and
//! after the tunnel has failed, recovered and failed again every panel query of
//! dashboards/hybridprobe.json, with its variables set from their own queries, must be valid and
//! return data.

mod deploy;
mod lab;
mod support;

use std::time::{Duration, Instant, SystemTime};

use deploy::{snake_keys, str_of, ConfigTargets, Manifests, PodRun, LAB_NODE_NAME};
use lab::{Host, Lab, NODE_IP, POD_IP};
use serde_json::{json, Value};
use support::support_tool;

const PROMETHEUS_PORT: u16 = 9090;
/// What Grafana would substitute for `$__rate_interval` at a 1 s scrape interval, with slack
/// for the agent's 10 s probe interval.
const RATE_INTERVAL: &str = "30s";
/// What Grafana would substitute for `$__range`, and the span of range queries: the whole test.
const RANGE: &str = "5m";
const RANGE_SECONDS: u64 = 300;
/// Panels whose queries must be valid but may return nothing here: the shipped config probes
/// plain HTTP, so no certificate is ever presented in this lab run (tests/http_e2e.rs checks
/// the expiry series against nginx's HTTPS vhosts).
const MAY_BE_EMPTY: &[&str] = &["TLS certificate time left"];
/// The rendering whose DaemonSet, PodMonitor and PrometheusRule run here.
const OVERLAY: &str = "deploy/overlays/azure-cni";
/// The `cluster` label a multi-cluster store (Thanos, Mimir, Azure Monitor) puts on every series.
const LAB_CLUSTER: &str = "lab-cluster";
/// A Prometheus in the lab's node namespace, queried from inside it.
struct Prometheus<'a> {
    lab: &'a Lab,
}

impl Prometheus<'_> {
    fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect();
        let url = format!(
            "http://{NODE_IP}:{PROMETHEUS_PORT}/api/v1/{path}?{}",
            query.join("&")
        );
        let (code, body) = self.lab.http_get(Host::Node, &url, false);
        if code == 0 {
            return json!({"status": "unreachable"});
        }
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"))
    }

    fn instant(&self, expr: &str) -> Value {
        self.api("query", &[("query", expr)])
    }

    fn range(&self, expr: &str) -> Value {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let (start, end) = ((now - RANGE_SECONDS).to_string(), now.to_string());
        self.api(
            "query_range",
            &[
                ("query", expr),
                ("start", &start),
                ("end", &end),
                ("step", "5"),
            ],
        )
    }

    fn has_data(&self, expr: &str) -> bool {
        let answer = self.instant(expr);
        answer["status"] == "success"
            && answer["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
    }
}

/// Percent-encoding for a query parameter: everything but RFC 3986 unreserved characters.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A scrape config equivalent to what the operator generates for the PodMonitor: the pod's
/// address as the target, Kubernetes discovery's node label, then the PodMonitor's relabelings.
fn scrape_config(manifests: &Manifests, port: u16) -> Value {
    let endpoint = &manifests.one("PodMonitor")["spec"]["podMetricsEndpoints"][0];
    json!({
        "job_name": "podmonitor",
        "scrape_interval": "1s",
        "scrape_timeout": "1s",
        "metrics_path": endpoint["path"],
        "static_configs": [{
            "targets": [format!("{POD_IP}:{port}")],
            "labels": {"__meta_kubernetes_pod_node_name": LAB_NODE_NAME, "cluster": LAB_CLUSTER},
        }],
        "relabel_configs": snake_keys(&endpoint["relabelings"]),
    })
}

/// Substitutes the dashboard's variables as Grafana would (each value a regex of the selected
/// values); panics on any left over.
fn substitute(expr: &str, values: &[(String, String)]) -> String {
    let mut out = expr
        .replace("$__rate_interval", RATE_INTERVAL)
        .replace("$__range", RANGE);
    for (name, regex) in values {
        out = out
            .replace(&format!("${{{name}}}"), regex)
            .replace(&format!("${name}"), regex);
    }
    assert!(!out.contains('$'), "unknown variable in {expr}");
    out
}

/// `label_values(SELECTOR, LABEL)`, a query variable's query, split.
fn label_values(query: &str) -> (&str, &str) {
    query
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .and_then(|q| q.rsplit_once(", "))
        .unwrap_or_else(|| panic!("unexpected variable query {query}"))
}

/// `promtool check metrics` on the text the agent serves: any finding fails (promtool exits
/// non-zero on lint problems as on parse errors).
fn promtool_check_metrics(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("writing to promtool");
    let out = child.wait_with_output().expect("promtool finishes");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics found problems in /metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn every_panel_and_rule_evaluates_against_a_live_agent() {
    if !support_tool("prometheus") || !support_tool("promtool") {
        return;
    }
    let Some(lab) = Lab::new("dashboard") else {
        return;
    };
    let Some(manifests) = Manifests::render(OVERLAY) else {
        return;
    };
    let Some(_targets) = ConfigTargets::start(&lab, "dashboard", false) else {
        return;
    };
    let run = PodRun::prepare(&lab, &manifests, manifests.pod_spec("DaemonSet"));
    run.spawn(&lab, Host::Pod);
    let port = run.port(&Value::from("http"));

    let rules = lab.tmpdir().join("rules.yaml");
    let spec = &manifests.one("PrometheusRule")["spec"];
    std::fs::write(&rules, spec.to_string()).unwrap();
    // Every alerting and recording rule the PrometheusRule holds must load.
    let written: usize = spec["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| g["rules"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(written >= 30, "only {written} rules in the PrometheusRule");
    // JSON is YAML, so both files are written as JSON.
    let config = json!({
        "global": {"evaluation_interval": "1s"},
        "rule_files": [rules.display().to_string()],
        "scrape_configs": [scrape_config(&manifests, port)],
    });
    let config_path = lab.tmpdir().join("prometheus.yml");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let storage = lab.tmpdir().join("prometheus-data");
    lab.spawn(
        Host::Node,
        "prometheus",
        &[
            &format!("--config.file={}", config_path.display()),
            &format!("--storage.tsdb.path={}", storage.display()),
            &format!("--web.listen-address={NODE_IP}:{PROMETHEUS_PORT}"),
            "--log.level=warn",
        ],
        &[],
    );
    let prom = Prometheus { lab: &lab };

    lab.wait_until(
        "Prometheus scraping the agent",
        Duration::from_secs(30),
        || {
            prom.has_data(&format!(
                r#"up{{job="hybridprobe", node="{LAB_NODE_NAME}"}} == 1"#
            ))
        },
    );
    // Two rounds of every check (10 s apart in the base config), so rates have data.
    lab.wait_until("two rounds of every check", Duration::from_secs(45), || {
        prom.has_data(
            r#"min(sum by (probe, netns) (hybridprobe_probe_runs_total{job="hybridprobe", result="success"})) >= 2"#,
        )
    });

    // The metrics text itself, as the agent serves it with every probe kind configured.
    let (code, metrics) =
        lab.http_get(Host::Pod, &format!("http://{POD_IP}:{port}/metrics"), false);
    assert_eq!(code, 200, "{metrics}");
    promtool_check_metrics(&metrics);

    // Every rule evaluates without error against live series, and a healthy lab fires nothing.
    lab.wait_until("every rule evaluated", Duration::from_secs(10), || {
        let rules = prom.api("rules", &[]);
        all_rules(&rules).iter().all(|r| r["health"] == "ok")
    });
    let rules = prom.api("rules", &[]);
    assert_eq!(all_rules(&rules).len(), written, "{rules}");
    let alerts = prom.api("alerts", &[]);
    assert_eq!(alerts["data"]["alerts"], json!([]), "healthy lab: {alerts}");

    // A dead tunnel on the only node: the agent diagnoses it, and that one alert starts pending
    // (the failing checks it explains raise none), with the labels the PodMonitor's relabeling
    // gives the series.
    lab.tunnel_drop(true);
    let (alert, label, value) = ("HybridprobeDiagnosis", "code", "onprem_unreachable");
    lab.wait_until(
        &format!("{alert} {label}={value} pending"),
        Duration::from_secs(30),
        || {
            let alerts = prom.api("alerts", &[]);
            alerts["data"]["alerts"].as_array().is_some_and(|alerts| {
                alerts.iter().any(|a| {
                    let l = &a["labels"];
                    l["alertname"] == alert
                        && l["node"] == LAB_NODE_NAME
                        && l[label] == value
                        && a["state"] == "pending"
                })
            })
        },
    );

    // The tunnel comes back, so the outage ends and is measured; then it fails again, so the
    // panels of active failures and diagnoses have something to show.
    lab.tunnel_drop(false);
    lab.wait_until("the outage measured", Duration::from_secs(30), || {
        prom.has_data(
            r#"hybridprobe_outage_duration_seconds_count{job="hybridprobe", probe="dc1-ldap", netns="pod"} >= 1"#,
        )
    });
    lab.tunnel_drop(true);
    lab.wait_until("the second outage", Duration::from_secs(30), || {
        prom.has_data(
            r#"hybridprobe_probe_success{job="hybridprobe", probe="dc1-ldap", netns="pod"} == 0"#,
        )
    });

    // Panels are evaluated last, once the outages above have put failed rounds into the series:
    // a healthy lab has no failure series, and every panel must show data.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(deploy::repo_path("dashboards/hybridprobe.json")).unwrap(),
    )
    .expect("dashboards/hybridprobe.json is JSON");
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name} variable"))
    };
    assert_eq!(variable("datasource")["type"], "datasource");
    assert_eq!(variable("datasource")["query"], "prometheus");
    // Each query variable's values from its own query, the ones before it substituted, as
    // Grafana fills them in; every value is selected (All, for `family`).
    let mut values: Vec<(String, String)> = Vec::new();
    let mut listed = |name: &str| -> Vec<String> {
        let (selector, label) = label_values(str_of(&variable(name)["query"]["query"]));
        assert_eq!(label, name, "${name} lists its own label");
        let selector = substitute(selector, &values);
        let answer = prom.api(&format!("label/{label}/values"), &[("match[]", &selector)]);
        let found: Vec<String> = answer["data"]
            .as_array()
            .unwrap_or_else(|| panic!("${name}: {answer}"))
            .iter()
            .map(|v| str_of(v).to_owned())
            .collect();
        // A label some series lack is selected by All as `.*`, which matches its absence.
        let all = match &variable(name)["allValue"] {
            Value::String(all) if all == ".*" => all.clone(),
            _ => found.join("|"),
        };
        values.push((name.to_owned(), all));
        found
    };
    assert_eq!(
        listed("job"),
        ["hybridprobe"],
        "the job the PodMonitor sets"
    );
    assert_eq!(listed("cluster"), [LAB_CLUSTER]);
    assert_eq!(listed("node"), [LAB_NODE_NAME]);
    assert_eq!(listed("netns"), ["host", "pod"]);
    // `family` lists the families of probes split by `family: both`; its All must still match
    // every other check, which has no family label, so it is `.*`, as Grafana substitutes it.
    let split = listed("family");
    assert!(
        split.iter().all(|f| f == "ipv4" || f == "ipv6"),
        "{split:?}"
    );
    assert_eq!(variable("family")["allValue"], ".*", "$family's All");
    let config = manifests.config_map_file("hybridprobe-config", "config.yaml");
    let probes = listed("probe");
    assert!(probes.len() >= 10, "{probes:?}");
    for probe in &probes {
        assert!(config.contains(&format!("name: {probe}")), "{probe}");
    }
    for name in ["job", "cluster", "node", "netns", "family", "probe"] {
        assert_eq!(variable(name)["type"], "query", "${name}");
    }

    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = str_of(&panel["title"]);
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{title}: panels use the datasource variable"
        );
        let targets = panel["targets"].as_array().filter(|t| !t.is_empty());
        let targets = targets.unwrap_or_else(|| panic!("{title}: no queries"));
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            let expr = substitute(str_of(&target["expr"]), &values);
            for name in ["job", "cluster", "node"] {
                assert!(
                    expr.contains(&format!("{name}=~")),
                    "{title}: every selector filters by ${name}: {expr}"
                );
            }
            queries.push((title, expr, target["instant"] == true));
        }
    }
    assert!(queries.len() >= 30, "only {} queries", queries.len());
    // Series arrive at the agent's pace (a round every 10 s): ask again until every query has
    // data, or say which never did.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut failures = Vec::new();
        for (title, expr, instant) in &queries {
            let answer = if *instant {
                prom.instant(expr)
            } else {
                prom.range(expr)
            };
            let empty = answer["data"]["result"]
                .as_array()
                .is_none_or(|r| r.is_empty());
            if answer["status"] != "success" || (empty && !MAY_BE_EMPTY.contains(title)) {
                failures.push(format!("{title}: {expr}\n  -> {answer}"));
            }
        }
        if failures.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "panel queries without data:\n{}",
            failures.join("\n")
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn all_rules(answer: &Value) -> Vec<&Value> {
    answer["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect()
}
