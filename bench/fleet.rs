//! Fleet: one agent per node on many nodes behind the lab's one tunnel, each running the
//! azure-cni overlay's config, scraped by one real Prometheus with the labels the shipped
//! PodMonitor gives and the shipped PrometheusRule loaded. Prints series per node and in all,
//! scrape and rule-evaluation time, Prometheus's memory and CPU, the agents' summed CPU and
//! memory; then takes the tunnel down for every node, and for three nodes only, and prints which
//! alerts Prometheus raised (its `ALERTS` series) and whether recovery cleared them.
//!
//! Run it with `bench/fleet.sh`; `cargo bench --bench fleet -- --help` lists options. `--fast 1`
//! scales the scrape and rule intervals and every `for:` down by [`FAST`] and halves the
//! agents' interval, and the tables say so.

#[path = "../tests/deploy/mod.rs"]
mod deploy;
#[path = "../tests/lab/mod.rs"]
mod lab;
#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use common::{cpu_seconds, mib, pause, status_kib};
use deploy::{repo_path, snake_keys, str_of, ConfigTargets, Manifests};
use lab::dns::CLUSTER_DNS_IP;
use lab::fleet::{Fleet, FleetNode};
use lab::{Host, Lab, ProcHandle, NODE_IP};
use serde_json::{json, Value};

/// The agents' config: what the azure-cni overlay's ConfigMap holds.
const CONFIG: &str = "deploy/overlays/azure-cni/config.yaml";
const POD_MONITOR: &str = "deploy/components/prometheus-operator/podmonitor.yaml";
const RULES: &str = "deploy/components/prometheus-operator/prometheusrule.yaml";
const AGENT_PORT: u16 = 9739;
const PROMETHEUS_PORT: u16 = 9090;
/// kube-prometheus-stack's rule evaluation interval (the PodMonitor sets the scrape's).
const EVALUATION: Duration = Duration::from_secs(30);
/// How much faster `--fast 1` runs Prometheus's side: scrape and rule intervals and `for:`.
const FAST: u32 = 6;
/// The shipped config's interval, and the one `--fast 1` gives the agents.
const AGENT_INTERVAL: &str = "interval: 10s";
const FAST_AGENT_INTERVAL: &str = "interval: 5s";

struct Options {
    nodes: usize,
    fast: bool,
    seconds: u64,
}

impl Options {
    fn parse() -> Option<Options> {
        let (mut nodes, mut fast, mut seconds) = (100, 0, 120);
        let run = common::options(
            "fleet",
            "bench/fleet.sh",
            &mut [
                ("nodes", &mut nodes),
                ("fast", &mut fast),
                ("seconds", &mut seconds),
            ],
        );
        run.then_some(Options {
            nodes: usize::try_from(nodes).expect("--nodes"),
            fast: fast != 0,
            seconds,
        })
    }
}

/// The intervals of one run: the shipped ones, or all shorter under `--fast 1`.
struct Pace {
    fast: bool,
    scrape: Duration,
    scrape_timeout: Duration,
    evaluation: Duration,
    agent: Duration,
}

impl Pace {
    fn new(fast: bool, monitor: &Value) -> Pace {
        let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
        let scrape = seconds(str_of(&endpoint["interval"]));
        let scrape_timeout = seconds(str_of(&endpoint["scrapeTimeout"]));
        if !fast {
            return Pace {
                fast,
                scrape,
                scrape_timeout,
                evaluation: EVALUATION,
                agent: Duration::from_secs(10),
            };
        }
        let scrape = scrape / FAST;
        Pace {
            fast,
            scrape,
            scrape_timeout: scrape_timeout.min(scrape),
            evaluation: EVALUATION / FAST,
            agent: Duration::from_secs(5),
        }
    }

    /// A rule's `for:` as this run loads it.
    fn hold(&self, shipped: Duration) -> Duration {
        if self.fast {
            shipped / FAST
        } else {
            shipped
        }
    }

    /// From a fault (or its end) to every agent having seen it, Prometheus having scraped
    /// that and evaluated the rules on it, with room for a slow round.
    fn noticed(&self) -> Duration {
        2 * self.agent + 2 * self.scrape + 2 * self.evaluation + Duration::from_secs(20)
    }

    fn describe(&self) -> String {
        let shipped = if self.fast {
            format!("--fast: scrape, rule interval and every `for:` ÷{FAST}, agents' interval ÷2")
        } else {
            "shipped durations".to_owned()
        };
        format!(
            "{shipped} (scrape every {:?}, rules every {:?}, agents every {:?})",
            self.scrape, self.evaluation, self.agent
        )
    }
}

/// "30s", "5m", "1h" as a duration.
fn seconds(text: &str) -> Duration {
    let (n, unit) = text.split_at(text.len() - 1);
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("a duration: {text}"));
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => panic!("a duration: {text}"),
    };
    Duration::from_secs(n * factor)
}

fn main() {
    let Some(o) = Options::parse() else {
        return;
    };
    assert!(
        o.nodes >= 3,
        "--nodes: at least 3, for the three-node fault"
    );
    common::catch_interrupts();
    let lab = Lab::new("fleet").expect("the lab needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN)");
    let _targets = ConfigTargets::start(&lab, "fleet", false)
        .expect("dnsmasq and nginx: bench/fleet.sh installs them");
    let monitor = Manifests::file(POD_MONITOR).one("PodMonitor").clone();
    let pace = Pace::new(o.fast, &monitor);
    let rules = rules(&lab, &pace);
    println!("{} nodes, {}", o.nodes, pace.describe());

    let prom = Prometheus::start(&lab, &pace, &rules);
    // Prometheus alone, scraping itself: the memory it needs before any agent series.
    pause(Duration::from_secs(20).max(3 * pace.scrape));
    let alone = prom.rss();
    let alone_series = prom.scalar("prometheus_tsdb_head_series");

    let built = Instant::now();
    let fleet = Fleet::new(&lab, o.nodes);
    println!(
        "built {} nodes with a pod each in {:.1} s",
        o.nodes,
        built.elapsed().as_secs_f64()
    );
    let agents = start_agents(&lab, &fleet, &pace);
    prom.scrape_fleet(&fleet.nodes, &monitor);
    prom.wait(
        "every agent scraped",
        Duration::from_secs(120) + pace.noticed(),
        &format!(r#"count(up{{job="hybridprobe"}} == 1) == {}"#, o.nodes),
    );
    // Long enough for a few scrapes after every check's first rounds, and for increase()
    // over the rules' 5-minute windows to have two samples.
    let warmup = 4 * pace.scrape + 2 * pace.agent;
    println!("warm-up {warmup:?}, then {} s measured", o.seconds);
    pause(warmup);
    let steady = measure(&prom, &fleet, &agents, &o, alone, alone_series);

    let faults = faults(&lab, &fleet, &prom, &pace);
    println!("\nmachine: {}", common::machine());
    println!("{}", pace.describe());
    println!("\n{steady}\n\n{faults}");
}

/// The PrometheusRule's `spec` as a rules file, its `for:` scaled to the pace.
fn rules(lab: &Lab, pace: &Pace) -> std::path::PathBuf {
    let mut spec = Manifests::file(RULES).one("PrometheusRule")["spec"].clone();
    for group in spec["groups"].as_array_mut().expect("groups") {
        for rule in group["rules"].as_array_mut().expect("rules") {
            if let Some(hold) = rule.get("for").and_then(Value::as_str) {
                let hold = pace.hold(seconds(hold));
                rule["for"] = Value::from(format!("{}s", hold.as_secs()));
            }
        }
    }
    let path = lab.tmpdir().join("rules.yaml");
    // JSON is YAML.
    std::fs::write(&path, spec.to_string()).expect("writing the rules");
    path
}

/// One agent per node in its pod, started one after the other over one probe interval (as a
/// DaemonSet's pods come up at different times, rather than all probing at the same instant),
/// with the DaemonSet's arguments and the env its downward API gives. Returns their pids.
fn start_agents(lab: &Lab, fleet: &Fleet, pace: &Pace) -> Vec<u32> {
    let shipped = std::fs::read_to_string(repo_path(CONFIG)).expect("the overlay's config");
    assert!(
        shipped.contains(AGENT_INTERVAL),
        "{CONFIG}: {AGENT_INTERVAL}"
    );
    let config = if pace.fast {
        shipped.replace(AGENT_INTERVAL, FAST_AGENT_INTERVAL)
    } else {
        shipped
    };
    let config_path = lab.tmpdir().join("config.yaml");
    std::fs::write(&config_path, config).expect("writing the agents' config");
    let config_path = config_path.display().to_string();
    // The cluster DNS for pods and nodes alike, as ConfigTargets gives the lab's own.
    let resolv_path = lab.resolv_conf("fleet-resolv.conf", &[CLUSTER_DNS_IP]);
    let resolv = std::fs::read_to_string(&resolv_path).expect("the resolv.conf");
    let gap = pace.agent / u32::try_from(fleet.nodes.len()).expect("node count");
    fleet
        .nodes
        .iter()
        .map(|node| {
            fleet.etc_file(&node.pod_ns, "resolv.conf", &resolv);
            let netns = format!("/var/run/netns/{}", node.node_ns);
            let (pod_ip, host_ip) = (node.pod_ip.to_string(), node.node_ip.to_string());
            let envs = [
                ("NODE_NAME", node.name.as_str()),
                ("POD_IP", &pod_ip),
                ("HOST_IP", &host_ip),
                ("HYBRIDPROBE_NODE", node.name.as_str()),
                ("HYBRIDPROBE_HOST_NETNS", &netns),
                ("HYBRIDPROBE_HOST_RESOLV_CONF", &resolv_path),
            ];
            let listen = format!("0.0.0.0:{AGENT_PORT}");
            let args = [
                "agent",
                "--config",
                &config_path,
                "--listen",
                &listen,
                "--log-format",
                "json",
            ];
            let pid = fleet.spawn(&node.pod_ns, &node.name, &common::agent_bin(), &args, &envs);
            pause(gap);
            pid
        })
        .collect()
}

// === the steady state ===

fn measure(
    prom: &Prometheus,
    fleet: &Fleet,
    agents: &[u32],
    o: &Options,
    alone: f64,
    alone_series: f64,
) -> String {
    let alive = |when: &str| {
        let exited = fleet.exited();
        assert!(exited.is_empty(), "agents {exited:?} exited {when}");
    };
    alive("during the warm-up");
    let cpu0: f64 = agents.iter().map(|&p| cpu_seconds(p)).sum();
    pause(Duration::from_secs(o.seconds));
    let cpu1: f64 = agents.iter().map(|&p| cpu_seconds(p)).sum();
    alive("while measured");
    let rss: Vec<u64> = agents.iter().map(|&p| status_kib(p, "VmRSS")).collect();
    let hwm = agents.iter().map(|&p| status_kib(p, "VmHWM")).max();
    let pss: u64 = agents.iter().map(|&p| pss_kib(p)).sum();
    let window = format!("{}s", o.seconds);

    let per_node = prom.values(r#"scrape_samples_scraped{job="hybridprobe"}"#);
    // What grows with checks and what is the agent's own, on one node (all run one config).
    let first = &fleet.nodes[0].name;
    let node_own = prom.scalar(&format!(
        r#"count({{job="hybridprobe", node="{first}", probe=""}})"#
    ));
    let by_kind = per_check_by_kind(prom, first);
    let checks = prom.values(r#"count by (node) (hybridprobe_probe_success{job="hybridprobe"})"#);
    let rounds = prom.scalar(&format!(
        r#"sum(increase(hybridprobe_probe_runs_total{{job="hybridprobe"}}[{window}]))"#
    ));
    let head = prom.scalar("prometheus_tsdb_head_series");
    let durations = prom.samples(&format!(
        r#"scrape_duration_seconds{{job="hybridprobe"}}[{window}]"#
    ));
    let groups = prom.by_label(
        &format!("max_over_time(prometheus_rule_group_last_duration_seconds[{window}])"),
        "rule_group",
    );
    let rss_now = prom.rss();
    let rss_peak = prom.scalar(&format!(
        r#"max_over_time(process_resident_memory_bytes{{job="prometheus"}}[{window}])"#
    ));
    let prom_cpu = prom.scalar(&format!(
        r#"rate(process_cpu_seconds_total{{job="prometheus"}}[{window}])"#
    ));
    let healthy_alerts = prom.by_label(
        &format!("count by (alertname) (last_over_time(ALERTS[{window}]))"),
        "alertname",
    );

    let n = o.nodes as f64;
    let total: f64 = per_node.iter().sum();
    let agent_cpu = cpu1 - cpu0;
    let per_series = (rss_now - alone) / (head - alone_series).max(1.0);
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| {} nodes, {} s measured | value |\n|---|---|",
        o.nodes, o.seconds
    );
    let mut row = |what: &str, value: String| {
        let _ = writeln!(t, "| {what} | {value} |");
    };
    row(
        "checks per node (probe × netns)",
        spread(&checks, |v| format!("{v:.0}")),
    );
    row(
        "series per node (`scrape_samples_scraped`) min / median / max",
        spread(&per_node, |v| format!("{v:.0}")),
    );
    row("series from all agents", format!("{total:.0}"));
    row(
        "series of one node without a `probe` label (the agent's own, and `up` and `scrape_*`)",
        format!("{node_own:.0}"),
    );
    row(
        "series per check (probe × netns) of each probe, by its kind",
        by_kind,
    );
    row(
        "Prometheus head series (the agents', its own, the rules')",
        format!("{head:.0} ({alone_series:.0} before the agents)"),
    );
    row(
        "scrape duration (`scrape_duration_seconds`) p50 / p99 / max",
        quantiles_ms(durations),
    );
    let mut slowest = groups.iter().collect::<Vec<_>>();
    slowest.sort_by(|a, b| b.1.total_cmp(a.1));
    row(
        "rule evaluation (`prometheus_rule_group_last_duration_seconds`, max in window)",
        slowest
            .iter()
            .map(|(g, v)| {
                // Prometheus names a group after its file too: `FILE;NAME`.
                let name = g.rsplit(';').next().unwrap_or(g);
                format!("{name} {:.1} ms", **v * 1e3)
            })
            .collect::<Vec<_>>()
            .join("; "),
    );
    row(
        "Prometheus RSS (`process_resident_memory_bytes`) alone / now / max in window",
        format!(
            "{:.0} / {:.0} / {:.0} MiB",
            alone / 1048576.0,
            rss_now / 1048576.0,
            rss_peak / 1048576.0
        ),
    );
    row(
        "Prometheus RSS per series it gained",
        format!("{:.1} KiB", per_series / 1024.0),
    );
    row(
        "Prometheus CPU",
        format!("{:.1} % of one core", prom_cpu * 100.0),
    );
    row(
        "agents' CPU, summed (utime + stime)",
        format!(
            "{:.1} % of one core; {:.2} % per agent; {:.0} µs per round ({rounds:.0} rounds)",
            agent_cpu * 100.0 / o.seconds as f64,
            agent_cpu * 100.0 / o.seconds as f64 / n,
            agent_cpu * 1e6 / rounds.max(1.0),
        ),
    );
    let rss_mib: Vec<f64> = rss.iter().map(|&k| mib(k)).collect();
    row(
        "agents' RSS, summed (PSS summed: shared pages counted once); per agent min / median / \
         max; highest peak",
        format!(
            "{:.0} MiB ({:.0} MiB); {}; {:.1} MiB",
            rss_mib.iter().sum::<f64>(),
            mib(pss),
            spread(&rss_mib, |v| format!("{v:.1} MiB")),
            mib(hwm.unwrap_or(0)),
        ),
    );
    row(
        "alerts while healthy (`ALERTS`, any state, in window)",
        if healthy_alerts.is_empty() {
            "none".to_owned()
        } else {
            format!("{healthy_alerts:?}")
        },
    );
    let _ = writeln!(
        t,
        "\nextrapolated, not measured: 1,000 such nodes send {:.0} series; at {:.1} KiB \
         each, Prometheus would hold about {:.1} GiB for them",
        total / n * 1000.0,
        per_series / 1024.0,
        (alone + per_series * total / n * 1000.0) / 1073741824.0
    );
    t
}

/// Series with a `probe` label per check (probe × netns) of each probe, with its kind, on
/// `node`: the series every check has, and those of its kind.
fn per_check_by_kind(prom: &Prometheus, node: &str) -> String {
    let series = prom.by_label(
        &format!(r#"count by (probe) ({{job="hybridprobe", node="{node}", probe!=""}})"#),
        "probe",
    );
    prom.query(&format!(
        r#"count by (probe, kind) (hybridprobe_probe_success{{job="hybridprobe", node="{node}"}})"#
    ))
    .iter()
    .map(|s| {
        let (probe, kind) = (str_of(&s["metric"]["probe"]), str_of(&s["metric"]["kind"]));
        let per_check = series.get(probe).unwrap_or(&0.0) / number(&s["value"][1]);
        format!("{kind} {per_check:.0}")
    })
    .collect::<Vec<_>>()
    .join(", ")
}

/// A process's proportional set size in KiB: its resident pages, each shared page divided
/// among the processes sharing it (the agents share their binary's pages).
fn pss_kib(pid: u32) -> u64 {
    let path = format!("/proc/{pid}/smaps_rollup");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{path}: no Pss"))
}

/// min / median / max of `values`, each written by `show`.
fn spread(values: &[f64], show: impl Fn(f64) -> String) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match (sorted.first(), sorted.last()) {
        (Some(&lo), Some(&hi)) => format!(
            "{} / {} / {}",
            show(lo),
            show(sorted[sorted.len() / 2]),
            show(hi)
        ),
        _ => "no data".to_owned(),
    }
}

fn quantiles_ms(mut samples: Vec<f64>) -> String {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let i = ((samples.len() - 1) as f64 * q).round() as usize;
        format!("{:.1} ms", samples[i] * 1e3)
    };
    if samples.is_empty() {
        return "no data".to_owned();
    }
    format!(
        "{} / {} / {} ({} scrapes)",
        at(0.5),
        at(0.99),
        at(1.0),
        samples.len()
    )
}

// === faults ===

/// Which alerts one fault raised, from `ALERTS` polled at every rule evaluation.
#[derive(Default)]
struct Seen {
    /// Per alert name: the most series firing at once, and the most pending at once.
    most: BTreeMap<String, (usize, usize)>,
    /// Per alert name: every node it fired for (`-` for alerts without a node label).
    nodes: BTreeMap<String, BTreeSet<String>>,
    /// When the expected alert first fired, from the fault.
    fired_after: Option<Duration>,
}

fn faults(lab: &Lab, fleet: &Fleet, prom: &Prometheus, pace: &Pace) -> String {
    // Long enough for the node-level alerts (`for: 5m`) to have fired if the rules let them.
    let hold = pace.hold(Duration::from_secs(300)) + pace.noticed();
    let mut t = String::from(
        "| fault | alerts firing (most series at once; nodes) | most pending at once | \
         expected alert fired after | all cleared after recovery |\n|---|---|---|---|---|\n",
    );

    println!("\nthe tunnel down for every node, watched for {hold:?}");
    lab.tunnel_drop(true);
    let seen = watch(prom, hold, |alerts| {
        alerts
            .iter()
            .any(|(name, state, _)| name == "HybridprobeDiagnosisOnAllNodes" && state == "firing")
    });
    lab.tunnel_drop(false);
    let cleared_all = cleared(prom, pace);
    t.push_str(&fault_row("tunnel down for every node", &seen, cleared_all));

    let n = fleet.nodes.len();
    let three = [n / 7, n / 2, n - 1];
    let names: BTreeSet<String> = three.iter().map(|&i| fleet.nodes[i].name.clone()).collect();
    println!("the tunnel down for {names:?} only, watched for {hold:?}");
    fleet.tunnel_drop_for(&three);
    let seen3 = watch(prom, hold, |alerts| {
        let fired: BTreeSet<&str> = alerts
            .iter()
            .filter(|(name, state, _)| name == "HybridprobeDiagnosis" && state == "firing")
            .map(|(_, _, node)| node.as_str())
            .collect();
        names.iter().all(|n| fired.contains(n.as_str()))
    });
    fleet.tunnel_drop_for(&[]);
    let cleared3 = cleared(prom, pace);
    t.push_str(&fault_row(
        &format!(
            "tunnel down for {} only",
            names.iter().cloned().collect::<Vec<_>>().join(", ")
        ),
        &seen3,
        cleared3,
    ));
    let fired3: BTreeSet<String> = seen3.nodes.values().flatten().cloned().collect();
    let _ = writeln!(
        t,
        "\nnodes any alert fired for in the three-node fault: {fired3:?}; exactly the three: {}",
        if fired3 == names { "yes" } else { "no" }
    );
    t
}

/// Polls `ALERTS` at every rule evaluation for `hold`, noting when `expected` first holds.
fn watch(
    prom: &Prometheus,
    hold: Duration,
    expected: impl Fn(&[(String, String, String)]) -> bool,
) -> Seen {
    let start = Instant::now();
    let mut seen = Seen::default();
    while start.elapsed() < hold {
        let alerts = prom.alerts();
        let mut now: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for (name, state, node) in &alerts {
            let count = now.entry(name.clone()).or_default();
            if state == "firing" {
                count.0 += 1;
                seen.nodes
                    .entry(name.clone())
                    .or_default()
                    .insert(node.clone());
            } else {
                count.1 += 1;
            }
        }
        for (name, (firing, pending)) in now {
            let most = seen.most.entry(name).or_default();
            *most = (most.0.max(firing), most.1.max(pending));
        }
        if seen.fired_after.is_none() && expected(&alerts) {
            seen.fired_after = Some(start.elapsed());
        }
        pause(prom.pace_evaluation);
    }
    seen
}

/// How long after recovery `ALERTS` was empty, if it was within the time recovery needs.
fn cleared(prom: &Prometheus, pace: &Pace) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < 2 * pace.noticed() {
        if prom.alerts().is_empty() {
            return Some(start.elapsed());
        }
        pause(pace.evaluation);
    }
    None
}

fn fault_row(fault: &str, seen: &Seen, cleared: Option<Duration>) -> String {
    let firing: Vec<String> = seen
        .most
        .iter()
        .filter(|(_, (f, _))| *f > 0)
        .map(|(name, (f, _))| {
            let nodes = &seen.nodes[name];
            let shown = if nodes.len() > 5 {
                format!("{} nodes", nodes.len())
            } else {
                nodes.iter().cloned().collect::<Vec<_>>().join(", ")
            };
            format!("{name} ({f}; {shown})")
        })
        .collect();
    let pending: Vec<String> = seen
        .most
        .iter()
        .filter(|(_, (_, p))| *p > 0)
        .map(|(name, (_, p))| format!("{name} {p}"))
        .collect();
    let secs =
        |d: Option<Duration>| d.map_or("never".to_owned(), |d| format!("{:.0} s", d.as_secs_f64()));
    format!(
        "| {fault} | {} | {} | {} | {} |\n",
        if firing.is_empty() {
            "none".to_owned()
        } else {
            firing.join("; ")
        },
        if pending.is_empty() {
            "none".to_owned()
        } else {
            pending.join("; ")
        },
        secs(seen.fired_after),
        secs(cleared),
    )
}

// === Prometheus ===

/// The Prometheus in the lab's node namespace, its config rewritten and reloaded (SIGHUP).
struct Prometheus<'a> {
    lab: &'a Lab,
    handle: ProcHandle,
    config: std::path::PathBuf,
    base: Value,
    pace_evaluation: Duration,
}

impl<'a> Prometheus<'a> {
    /// Prometheus scraping itself only, with `rules` loaded.
    fn start(lab: &'a Lab, pace: &Pace, rules: &std::path::Path) -> Prometheus<'a> {
        let secs = |d: Duration| format!("{}s", d.as_secs());
        let base = json!({
            "global": {"evaluation_interval": secs(pace.evaluation)},
            "rule_files": [rules.display().to_string()],
            "scrape_configs": [{
                "job_name": "prometheus",
                "scrape_interval": secs(pace.scrape),
                "scrape_timeout": secs(pace.scrape_timeout),
                "static_configs": [{"targets": [format!("{NODE_IP}:{PROMETHEUS_PORT}")]}],
            }],
        });
        let config = lab.tmpdir().join("prometheus.yml");
        std::fs::write(&config, base.to_string()).expect("writing prometheus.yml");
        let storage = lab.tmpdir().join("prometheus-data");
        let handle = lab.spawn(
            Host::Node,
            "prometheus",
            &[
                &format!("--config.file={}", config.display()),
                &format!("--storage.tsdb.path={}", storage.display()),
                &format!("--web.listen-address={NODE_IP}:{PROMETHEUS_PORT}"),
                "--log.level=warn",
            ],
            &[],
        );
        let prom = Prometheus {
            lab,
            handle,
            config,
            base,
            pace_evaluation: pace.evaluation,
        };
        prom.wait(
            "Prometheus scraping itself",
            Duration::from_secs(30) + 2 * pace.scrape,
            r#"up{job="prometheus"} == 1"#,
        );
        prom
    }

    /// Adds the fleet's agents as static targets carrying what Kubernetes discovery would
    /// give each pod, relabelled as the operator does for the PodMonitor and then by the
    /// PodMonitor's own relabelings; reloads.
    fn scrape_fleet(&self, nodes: &[FleetNode], monitor: &Value) {
        let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
        let namespace = str_of(&monitor["metadata"]["namespace"]);
        let name = str_of(&monitor["metadata"]["name"]);
        let port = str_of(&endpoint["port"]);
        let targets: Vec<Value> = nodes
            .iter()
            .map(|n| {
                json!({
                    "targets": [format!("{}:{AGENT_PORT}", n.pod_ip)],
                    "labels": {
                        "__meta_kubernetes_namespace": namespace,
                        "__meta_kubernetes_pod_name": format!("hybridprobe-{}", n.name),
                        "__meta_kubernetes_pod_container_name": "agent",
                        "__meta_kubernetes_pod_node_name": n.name,
                    },
                })
            })
            .collect();
        // The labels the operator sets on every PodMonitor target, then the shipped ones.
        let mut relabel = vec![
            json!({"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"}),
            json!({"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"}),
            json!({"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"}),
            json!({"target_label": "job", "replacement": format!("{namespace}/{name}")}),
            json!({"target_label": "endpoint", "replacement": port}),
        ];
        relabel.extend(
            snake_keys(&endpoint["relabelings"])
                .as_array()
                .expect("relabelings")
                .iter()
                .cloned(),
        );
        let scrape = json!({
            "job_name": format!("podMonitor/{namespace}/{name}/0"),
            "scrape_interval": self.base["scrape_configs"][0]["scrape_interval"],
            "scrape_timeout": self.base["scrape_configs"][0]["scrape_timeout"],
            "metrics_path": endpoint["path"],
            "static_configs": targets,
            "relabel_configs": relabel,
        });
        let mut config = self.base.clone();
        config["scrape_configs"]
            .as_array_mut()
            .expect("scrape configs")
            .push(scrape);
        std::fs::write(&self.config, config.to_string()).expect("writing prometheus.yml");
        let pid = self.lab.pid(self.handle).to_string();
        let out = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill");
        assert!(out.success(), "kill -HUP {pid}");
    }

    fn query(&self, expr: &str) -> Vec<Value> {
        let url = format!("http://{NODE_IP}:{PROMETHEUS_PORT}/api/v1/query");
        let query = format!("query={expr}");
        let out = self.lab.exec(
            Host::Node,
            "curl",
            &[
                "-s",
                "-m",
                "20",
                "--noproxy",
                "*",
                "-G",
                "--data-urlencode",
                &query,
                &url,
            ],
        );
        let body = String::from_utf8_lossy(&out.stdout);
        let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        assert!(
            answer["status"] == "success" || body.is_empty(),
            "{expr}: {body}"
        );
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Every value of an instant vector.
    fn values(&self, expr: &str) -> Vec<f64> {
        self.query(expr)
            .iter()
            .map(|s| number(&s["value"][1]))
            .collect()
    }

    /// The value of a one-element vector; 0 when empty.
    fn scalar(&self, expr: &str) -> f64 {
        self.values(expr).first().copied().unwrap_or(0.0)
    }

    /// An instant vector's values by one label.
    fn by_label(&self, expr: &str, label: &str) -> BTreeMap<String, f64> {
        self.query(expr)
            .iter()
            .map(|s| {
                (
                    str_of(&s["metric"][label]).to_owned(),
                    number(&s["value"][1]),
                )
            })
            .collect()
    }

    /// Every sample of a range vector, all series together.
    fn samples(&self, expr: &str) -> Vec<f64> {
        self.query(expr)
            .iter()
            .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
            .map(|v| number(&v[1]))
            .collect()
    }

    fn rss(&self) -> f64 {
        self.scalar(r#"process_resident_memory_bytes{job="prometheus"}"#)
    }

    /// `ALERTS` now: name, state and node (`-` without one) of each.
    fn alerts(&self) -> Vec<(String, String, String)> {
        self.query("ALERTS")
            .iter()
            .map(|s| {
                let m = &s["metric"];
                let label = |k: &str| m[k].as_str().unwrap_or("-").to_owned();
                (label("alertname"), label("alertstate"), label("node"))
            })
            .collect()
    }

    /// Polls `expr` until it returns something, panicking (which cleans up) after `deadline`.
    fn wait(&self, what: &str, deadline: Duration, expr: &str) {
        let start = Instant::now();
        while self.query(expr).is_empty() {
            assert!(
                start.elapsed() < deadline,
                "timed out after {deadline:?} waiting for {what}:\n{}",
                self.lab.logs(self.handle)
            );
            pause(Duration::from_secs(1));
        }
    }
}

fn number(v: &Value) -> f64 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN)
}
