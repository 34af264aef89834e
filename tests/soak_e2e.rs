//! Soak: the agent in the lab, probing on-prem with every probe kind over IPv4 and IPv6 from the
//! pod and the host namespace, while faults flap every 30 s. After a warm-up its memory stays
//! flat, its file descriptors do not pile up, it never panics, and no round goes missing.
//!
//! `HYBRIDPROBE_SOAK_SECONDS` sets how long (default 120, as CI runs it; `bench/soak.sh` runs
//! 30 minutes). These are leak and stability invariants, not timings.

mod lab;
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lab::dns::{dnsmasq_available, Forward, DB_NAME};
use lab::web::nginx_available;
use lab::{Host, Lab, NFT_TABLE, ONPREM_IP, ONPREM_IP6, VNET_GW};
use support::{pod_and_host_config, Agent, Resolv, BIN};

/// Faults change every `FLAP`: on for one period, off for the next.
const FLAP: Duration = Duration::from_secs(30);
const SAMPLE_EVERY: Duration = Duration::from_secs(3);
/// Growth of resident memory allowed between the end of the warm-up and the end of the run.
const RSS_GROWTH_KIB: u64 = 2 * 1024;
/// Open descriptors between rounds may differ by a socket or two caught mid-round.
const FD_SLACK: usize = 2;
/// Rounds a check may be off its schedule by: the window's two edges.
const ROUND_SLACK: f64 = 2.0;
const LDAP_PORT: u16 = 389;
const STUN_PORT: u16 = 3478;

/// A fault's name and how to turn it on or off.
type Fault = (&'static str, fn(&Lab, bool));

/// What fails while a fault is on, taking turns.
const FAULTS: [Fault; 4] = [
    ("tunnel_drop", |lab, on| lab.tunnel_drop(on)),
    ("ldap_refused", refuse_ldap),
    ("frag_needed_drop", |lab, on| lab.frag_needed_drop(on)),
    ("tunnel_drop_ip6", |lab, on| lab.tunnel_drop_ip6(on)),
];

/// The on-prem host resets connections to the LDAP port, as a stopped service would.
fn refuse_ldap(lab: &Lab, on: bool) {
    let rule = if on {
        format!(
            "add rule inet {NFT_TABLE} soak_refuse tcp dport {LDAP_PORT} reject with tcp reset\n"
        )
    } else {
        String::new()
    };
    lab.nft(
        Host::Onprem,
        &format!(
            "table inet {NFT_TABLE} {{\n  chain soak_refuse {{\n    type filter hook input priority 0; policy accept;\n  }}\n}}\nflush chain inet {NFT_TABLE} soak_refuse\n{rule}"
        ),
    );
}

/// Every probe kind, each in both namespaces where it makes sense; rounds stay well inside
/// their intervals even while the tunnel is down, so every round is expected to run.
fn config(lab: &Lab) -> (String, BTreeMap<(&'static str, &'static str), f64>) {
    let probes = format!(
        r#"  - name: dc1-ldap
    tcp: {{ target: "{ONPREM_IP}:{LDAP_PORT}" }}
  - name: dc1-ldap6
    tcp: {{ target: "[{ONPREM_IP6}]:{LDAP_PORT}" }}
  - name: dc1-ping
    icmp: {{ target: {ONPREM_IP}, count: 3 }}
  - name: dc1-ping6
    icmp: {{ target: "{ONPREM_IP6}", count: 3 }}
  - name: dc1-web
    http: {{ url: "http://{ONPREM_IP}/healthz" }}
  - name: dc1-web6
    http: {{ url: "http://[{ONPREM_IP6}]/healthz" }}
  - name: corp-db
    dns: {{ query: {DB_NAME}, servers: [system, "{ONPREM_IP}"], transport: [udp, tcp],
           expect: {{ within: [198.19.0.0/16] }} }}
  - name: pod-ip
    netns: [pod]
    interval: 2s
    source_ip: {{ stun: "{ONPREM_IP}:{STUN_PORT}", masquerade: forbidden }}
  - name: onprem-route
    netns: [host]
    interval: 2s
    route: {{ destination: 198.19.0.0/16, via: {VNET_GW} }}
  - name: tunnel-mtu
    interval: 5s
    timeout: 3s
    path_mtu: {{ target: {ONPREM_IP}, min: 1400 }}
  - name: trace
    interval: 5s
    timeout: 3s
    traceroute: {{ target: {ONPREM_IP} }}
  - name: resolv
    interval: 5s
    resolv_conf: {{}}
  - name: node-conntrack
    netns: [host]
    interval: 5s
    conntrack: {{ max_fill: 0.9 }}
"#
    );
    let yaml = pod_and_host_config(
        lab,
        Resolv::ClusterAndOnprem,
        "{ interval: 1s, timeout: 800ms }",
        &probes,
    );
    let mut intervals = BTreeMap::new();
    for (probe, seconds) in [
        ("dc1-ldap", 1.0),
        ("dc1-ldap6", 1.0),
        ("dc1-ping", 1.0),
        ("dc1-ping6", 1.0),
        ("dc1-web", 1.0),
        ("dc1-web6", 1.0),
        ("corp-db", 1.0),
        ("tunnel-mtu", 5.0),
        ("trace", 5.0),
        ("resolv", 5.0),
    ] {
        intervals.insert((probe, "pod"), seconds);
        intervals.insert((probe, "host"), seconds);
    }
    intervals.insert(("pod-ip", "pod"), 2.0);
    intervals.insert(("onprem-route", "host"), 2.0);
    intervals.insert(("node-conntrack", "host"), 5.0);
    (yaml, intervals)
}

/// One look at the agent.
struct Sample {
    /// Since the soak started, halfway through reading /metrics.
    at: Duration,
    rss_kib: u64,
    fds: usize,
    /// Finished rounds per (probe, netns), every result counted.
    rounds: BTreeMap<(String, String), f64>,
    lag_observations: f64,
}

fn sample(agent: &Agent, pid: u32, start: Instant) -> Sample {
    let before = start.elapsed();
    let metrics = agent.metrics();
    let at = (before + start.elapsed()) / 2;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("the agent (pid {pid}) is gone: {e}"));
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/PID/status");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/PID/fd")
        .count();
    let mut rounds = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("hybridprobe_probe_runs_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|pair| pair.strip_prefix(name)?.strip_prefix("=\""))
                .map(|v| v.trim_end_matches('"').to_owned())
                .unwrap_or_default()
        };
        let value: f64 = value.parse().expect("a counter value");
        *rounds.entry((label("probe"), label("netns"))).or_default() += value;
    }
    let lag_observations =
        support::metric(&metrics, "hybridprobe_scheduler_lag_seconds_count", &[])
            .expect("the scheduler lag histogram");
    Sample {
        at,
        rss_kib,
        fds,
        rounds,
        lag_observations,
    }
}

/// Seconds of soak from the environment, rounded up to whole on/off fault cycles.
fn soak_length() -> Duration {
    let seconds: u64 = std::env::var("HYBRIDPROBE_SOAK_SECONDS")
        .ok()
        .map(|v| {
            v.parse().unwrap_or_else(|_| {
                panic!("HYBRIDPROBE_SOAK_SECONDS={v} is not a number of seconds")
            })
        })
        .unwrap_or(120);
    let cycle = 2 * FLAP.as_secs();
    // A warm-up cycle and a measured one at least, so both end in a fault-free period.
    Duration::from_secs(seconds.max(2 * cycle).div_ceil(cycle) * cycle)
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn memory_and_descriptors_stay_flat_and_no_round_is_missed_while_faults_flap() {
    if !dnsmasq_available("soak") || !nginx_available("soak") {
        return;
    }
    let Some(lab) = Lab::new("soak") else {
        return;
    };
    let total = soak_length();
    // Half the run, at most two cycles: long enough for every allocation a healthy and a
    // failing round make to have happened once.
    let warmup = (total / 2).min(4 * FLAP);
    let warmup = Duration::from_secs(warmup.as_secs() / (2 * FLAP.as_secs()) * 2 * FLAP.as_secs());

    for ip in [ONPREM_IP.into(), ONPREM_IP6.into()] {
        lab.serve_tcp(Host::Onprem, SocketAddr::new(ip, LDAP_PORT));
    }
    lab.onprem_web();
    lab.onprem_dns();
    lab.cluster_dns(Forward::Onprem);
    let stun = SocketAddr::from((ONPREM_IP, STUN_PORT)).to_string();
    let reflector = lab.spawn(Host::Onprem, BIN, &["reflect", "--listen", &stun], &[]);
    let (yaml, intervals) = config(&lab);
    let agent = Agent::start(&lab, &yaml);
    agent.wait_ready();
    let pid = lab.pid(agent.handle);

    eprintln!(
        "soak: {} s with faults flapping every {} s, warm-up {} s",
        total.as_secs(),
        FLAP.as_secs(),
        warmup.as_secs()
    );
    let start = Instant::now();
    let mut samples = Vec::new();
    let mut phase = usize::MAX;
    while start.elapsed() < total {
        let now = (start.elapsed().as_secs() / FLAP.as_secs()) as usize;
        if now != phase {
            // Even periods turn the next fault on, odd ones turn it off again.
            let (_, set) = FAULTS[(now / 2) % FAULTS.len()];
            set(&lab, now.is_multiple_of(2));
            phase = now;
        }
        samples.push(sample(&agent, pid, start));
        let next = SAMPLE_EVERY * samples.len() as u32;
        std::thread::sleep(next.saturating_sub(start.elapsed()).min(SAMPLE_EVERY));
    }
    let last = sample(&agent, pid, start);
    let status = lab.try_status(agent.handle);
    let logs = lab.logs(agent.handle);
    eprintln!("{}", phase_table(&samples));

    assert_eq!(status, None, "the agent exited during the soak:\n{logs}");
    assert!(
        !logs.contains("panicked"),
        "the agent panicked during the soak:\n{logs}"
    );
    assert_eq!(agent.get("/livez").0, 200, "/livez after the soak");
    assert_eq!(lab.try_status(reflector), None, "the reflector exited");

    // Memory and descriptors: the last fault-free period against the warm-up's last one.
    let window = |end: Duration| -> Vec<&Sample> {
        samples
            .iter()
            .filter(|s| s.at + FLAP >= end && s.at < end)
            .collect()
    };
    let (baseline, end) = (window(warmup), window(total));
    assert!(
        baseline.len() >= 3 && end.len() >= 3,
        "too few samples to compare"
    );
    let peak = |w: &[&Sample]| w.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let floor = |w: &[&Sample]| w.iter().map(|s| s.fds).min().unwrap_or(0);
    let growth = peak(&end).saturating_sub(peak(&baseline));
    eprintln!(
        "soak: RSS {} KiB after warm-up, {} KiB at the end (+{growth} KiB); open fds {} then {}",
        peak(&baseline),
        peak(&end),
        floor(&baseline),
        floor(&end)
    );
    assert!(
        growth < RSS_GROWTH_KIB,
        "RSS grew by {growth} KiB after the warm-up (limit {RSS_GROWTH_KIB} KiB)"
    );
    assert!(
        floor(&end) <= floor(&baseline) + FD_SLACK,
        "open file descriptors grew from {} to {} between rounds",
        floor(&baseline),
        floor(&end)
    );

    // Rounds: every check ran once per interval over the measured part, faults or not.
    let from = samples
        .iter()
        .find(|s| s.at >= warmup)
        .expect("samples after the warm-up");
    let seconds = (last.at - from.at).as_secs_f64();
    let mut missed = Vec::new();
    let mut all_rounds = 0.0;
    for (&(probe, netns), interval) in &intervals {
        let key = (probe.to_owned(), netns.to_owned());
        let ran = last.rounds.get(&key).copied().unwrap_or(0.0)
            - from.rounds.get(&key).copied().unwrap_or(0.0);
        let expected = seconds / interval;
        all_rounds += ran;
        if (ran - expected).abs() > ROUND_SLACK {
            missed.push(format!(
                "{probe}/{netns}: {ran} rounds, expected {expected:.1}"
            ));
        }
    }
    assert!(
        missed.is_empty(),
        "checks off their schedule over {seconds:.0} s:\n{}",
        missed.join("\n")
    );
    assert_eq!(
        last.rounds.len(),
        intervals.len(),
        "unexpected checks: {:?}",
        last.rounds.keys()
    );
    // Each round's start is observed once: a round can be in flight at either edge.
    let lag = last.lag_observations - from.lag_observations;
    assert!(
        (lag - all_rounds).abs() <= intervals.len() as f64,
        "{lag} scheduler lag observations for {all_rounds} rounds"
    );
}

/// Per fault period: the fault, peak RSS, the range of open fds, and rounds finished.
fn phase_table(samples: &[Sample]) -> String {
    let mut text = String::from(
        "| period | fault | peak RSS KiB | open fds | rounds |\n|---|---|---|---|---|\n",
    );
    let flap = FLAP.as_secs() as usize;
    let phases = samples
        .last()
        .map_or(0, |s| s.at.as_secs() as usize / flap + 1);
    let mut previous_rounds = 0.0;
    for phase in 0..phases {
        let mine: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.at.as_secs() as usize / flap == phase)
            .collect();
        let Some(last) = mine.last() else { continue };
        let rounds: f64 = last.rounds.values().sum();
        let fault = if phase.is_multiple_of(2) {
            FAULTS[(phase / 2) % FAULTS.len()].0
        } else {
            "-"
        };
        text.push_str(&format!(
            "| {}-{} s | {fault} | {} | {}-{} | {} |\n",
            phase * flap,
            (phase + 1) * flap,
            mine.iter().map(|s| s.rss_kib).max().unwrap_or(0),
            mine.iter().map(|s| s.fds).min().unwrap_or(0),
            mine.iter().map(|s| s.fds).max().unwrap_or(0),
            rounds - previous_rounds
        ));
        previous_rounds = rounds;
    }
    text
}
