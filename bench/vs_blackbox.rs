//! Side by side: hybridprobe and prometheus-blackbox-exporter probing the same on-prem targets
//! from the lab's pod namespace, each target once a second; prints CPU and peak RSS of each.
//!
//! blackbox_exporter is driven the way Prometheus drives it: one `/probe?module=…&target=…`
//! request per probe, each target on its own one-second schedule, over pooled keep-alive
//! connections. The driver is a thread of this process, so its cost is not counted; only the
//! prober's own process is measured (`/proc/PID/stat` utime + stime, `VmHWM`). hybridprobe runs
//! as the agent with the same targets, intervals and timeouts, and is scraped once every 15 s.
//! Runs alternate between the two so that drift in a shared machine's load hits both.
//!
//! Run it with `bench/vs-blackbox.sh`; `cargo bench --bench vs_blackbox -- --help` lists options.

#[path = "../tests/lab/mod.rs"]
mod lab;

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{
    cpu_seconds, drive, mib, pause, rounds, status_kib, wait_http, Agent, Job, Kind, Tally,
    Workload, TCP_PORT,
};
use lab::dns::{DB_IP, DB_NAME};
use lab::{Host, Lab, POD_IP};

const BLACKBOX_PORT: u16 = 9115;

struct Options {
    seconds: u64,
    warmup: u64,
    rounds: u64,
    workload: Workload,
}

impl Options {
    fn parse() -> Option<Options> {
        let (mut seconds, mut warmup, mut rounds) = (60, 10, 3);
        let (mut tcp, mut icmp, mut dns) = (100, 100, 20);
        let run = common::options(
            "vs_blackbox",
            "bench/vs-blackbox.sh",
            &mut [
                ("seconds", &mut seconds),
                ("warmup", &mut warmup),
                ("rounds", &mut rounds),
                ("tcp", &mut tcp),
                ("icmp", &mut icmp),
                ("dns", &mut dns),
            ],
        );
        let count = |n: u64| usize::try_from(n).expect("a count that fits in memory");
        run.then(|| Options {
            seconds,
            warmup,
            rounds,
            workload: Workload {
                tcp: count(tcp),
                icmp: count(icmp),
                dns: count(dns),
            },
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Prober {
    Hybridprobe,
    Blackbox,
}

impl Prober {
    fn name(self) -> &'static str {
        match self {
            Prober::Hybridprobe => "hybridprobe",
            Prober::Blackbox => "blackbox_exporter",
        }
    }
}

struct Measured {
    prober: Prober,
    /// Probes finished in the measured window, and how many had failed.
    probes: u64,
    failed: u64,
    expected: u64,
    cpu: f64,
    hwm_kib: u64,
}

fn main() {
    let Some(options) = Options::parse() else {
        return;
    };
    common::catch_interrupts();
    let lab = Lab::new("vs-blackbox").expect("the lab needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN)");
    let workload = options.workload;
    workload.serve(&lab);
    println!(
        "workload: {} TCP, {} ICMP, {} DNS targets, each probed once a second from the pod \
         namespace; {} s warm-up, {} s measured per run",
        workload.tcp, workload.icmp, workload.dns, options.warmup, options.seconds
    );
    let mut runs = Vec::new();
    for round in 0..options.rounds {
        for prober in [Prober::Hybridprobe, Prober::Blackbox] {
            let m = match prober {
                Prober::Hybridprobe => hybridprobe(&lab, &options),
                Prober::Blackbox => blackbox(&lab, &options),
            };
            println!(
                "run {}: {:<17} {:>6} probes ({} expected), {} failed, {:.2} CPU s, peak RSS {:.1} MiB",
                round + 1,
                prober.name(),
                m.probes,
                m.expected,
                m.failed,
                m.cpu,
                mib(m.hwm_kib)
            );
            runs.push(m);
        }
    }
    report(&runs, &options);
}

fn hybridprobe(lab: &Lab, o: &Options) -> Measured {
    let agent = Agent::start(lab, &o.workload, None);
    let (scraper, scrapes) = agent.scraped(lab);
    pause(Duration::from_secs(o.warmup));
    // The window's edge scrapes fall outside the measured CPU.
    let (all0, failed0) = rounds(&agent.metrics(lab));
    let pid = lab.pid(agent.handle);
    let cpu0 = cpu_seconds(pid);
    pause(Duration::from_secs(o.seconds));
    let cpu1 = cpu_seconds(pid);
    let (all1, failed1) = rounds(&agent.metrics(lab));
    let hwm_kib = status_kib(pid, "VmHWM");
    drop(scraper);
    let scraped = scrapes.tally();
    assert_eq!(
        (scraped.failed, scraped.errors),
        (0, 0),
        "scrapes of hybridprobe failed"
    );
    lab.stop(agent.handle);
    Measured {
        prober: Prober::Hybridprobe,
        probes: (all1 - all0) as u64,
        failed: (failed1 - failed0) as u64,
        expected: o.workload.total() as u64 * o.seconds,
        cpu: cpu1 - cpu0,
        hwm_kib,
    }
}

fn blackbox(lab: &Lab, o: &Options) -> Measured {
    let config = lab.tmpdir().join("blackbox.yml");
    std::fs::write(&config, blackbox_config()).expect("writing the blackbox config");
    let listen = SocketAddr::from((POD_IP, BLACKBOX_PORT));
    let exporter = lab.spawn(
        Host::Pod,
        "prometheus-blackbox-exporter",
        &[
            &format!("--config.file={}", config.display()),
            &format!("--web.listen-address={listen}"),
            "--log.level=warn",
        ],
        &[],
    );
    wait_http(lab, exporter, &format!("http://{listen}/-/healthy"));
    let targets = o.workload.targets();
    let n = targets.len() as u32;
    // Prometheus spreads each target's scrapes over the interval; so does the driver.
    let jobs = targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let (module, target) = match t.kind {
                Kind::Tcp => ("tcp", format!("{}:{TCP_PORT}", t.addr)),
                Kind::Icmp => ("icmp", t.addr.to_string()),
                Kind::Dns => ("dns", t.addr.to_string()),
            };
            Job {
                path: format!("/probe?module={module}&target={target}"),
                every: Duration::from_secs(1),
                offset: Duration::from_secs(1) * i as u32 / n,
            }
        })
        .collect();
    let (driver, counts) = drive(lab, Host::Pod, listen, jobs, |status, body| {
        status == 200 && body.lines().any(|l| l == "probe_success 1")
    });
    pause(Duration::from_secs(o.warmup));
    let pid = lab.pid(exporter);
    let (before, cpu0) = (counts.tally(), cpu_seconds(pid));
    pause(Duration::from_secs(o.seconds));
    let (cpu1, after) = (cpu_seconds(pid), counts.tally());
    let hwm_kib = status_kib(pid, "VmHWM");
    drop(driver);
    lab.stop(exporter);
    let Tally { ok, failed, errors } = after - before;
    Measured {
        prober: Prober::Blackbox,
        probes: ok + failed + errors,
        failed: failed + errors,
        expected: o.workload.total() as u64 * o.seconds,
        cpu: cpu1 - cpu0,
        hwm_kib,
    }
}

/// The modules the driver asks for, with the agent's timeout and IPv4 only, as hybridprobe
/// probes the same literal addresses; the DNS module checks the answer as the agent does.
fn blackbox_config() -> String {
    let answer = DB_IP.to_string().replace('.', "\\\\.");
    format!(
        "modules:
  tcp:
    prober: tcp
    timeout: 500ms
    tcp: {{ preferred_ip_protocol: ip4, ip_protocol_fallback: false }}
  icmp:
    prober: icmp
    timeout: 500ms
    icmp: {{ preferred_ip_protocol: ip4, ip_protocol_fallback: false }}
  dns:
    prober: dns
    timeout: 500ms
    dns:
      query_name: {DB_NAME}
      query_type: A
      transport_protocol: udp
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
      valid_rcodes: [NOERROR]
      validate_answer_rrs:
        fail_if_not_matches_regexp: [\"\\\\t{answer}$\"]
"
    )
}

fn report(runs: &[Measured], o: &Options) {
    println!("\nmachine: {}", common::machine());
    println!(
        "workload: {} TCP + {} ICMP + {} DNS probes/s from the pod namespace, {} s per run, \
         runs alternating",
        o.workload.tcp, o.workload.icmp, o.workload.dns, o.seconds
    );
    println!(
        "\n| run | prober | probes run (expected) | failed | CPU s | CPU per probe | peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (i, m) in runs.iter().enumerate() {
        println!(
            "| {} | {} | {} ({}) | {} | {:.2} | {:.1} µs | {:.1} MiB |",
            i / 2 + 1,
            m.prober.name(),
            m.probes,
            m.expected,
            m.failed,
            m.cpu,
            m.cpu * 1e6 / m.probes.max(1) as f64,
            mib(m.hwm_kib)
        );
    }
    let summary = |p: Prober| {
        let mine: Vec<&Measured> = runs.iter().filter(|m| m.prober == p).collect();
        let cpu: f64 = mine.iter().map(|m| m.cpu).sum();
        let probes: u64 = mine.iter().map(|m| m.probes).sum();
        let hwm = mine.iter().map(|m| m.hwm_kib).max().unwrap_or(0);
        (
            cpu / mine.len().max(1) as f64,
            cpu / probes.max(1) as f64,
            hwm,
        )
    };
    let (hp, bb) = (summary(Prober::Hybridprobe), summary(Prober::Blackbox));
    println!("\n| prober | CPU s per run (mean) | CPU per probe | peak RSS (max) |");
    println!("|---|---|---|---|");
    for (p, (cpu, per, hwm)) in [(Prober::Hybridprobe, hp), (Prober::Blackbox, bb)] {
        println!(
            "| {} | {cpu:.2} | {:.1} µs | {:.1} MiB |",
            p.name(),
            per * 1e6,
            mib(hwm)
        );
    }
    println!(
        "| ratio hybridprobe / blackbox_exporter | {:.2} | {:.2} | {:.2} |",
        hp.0 / bb.0,
        hp.1 / bb.1,
        hp.2 as f64 / bb.2 as f64
    );
    let missed: Vec<String> = runs
        .iter()
        .filter(|m| m.probes + m.expected / 100 < m.expected || m.failed > 0)
        .map(|m| {
            format!(
                "{} ran {} of {} ({} failed)",
                m.prober.name(),
                m.probes,
                m.expected,
                m.failed
            )
        })
        .collect();
    if !missed.is_empty() {
        println!(
            "\nWARNING: not every scheduled probe ran and passed: {}",
            missed.join("; ")
        );
    }
}
