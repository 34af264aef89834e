//! Side by side: hybridprobe, prometheus-blackbox-exporter and the kernel floor (`floor.rs`, the
//! same socket calls with no prober around them) probing the same on-prem targets from the lab's
//! pod namespace, each target once a second; prints user and kernel CPU and peak RSS of each.
//!
//! blackbox_exporter is driven the way Prometheus drives it: one `/probe?module=…&target=…`
//! request per probe, each target on its own one-second schedule, over pooled keep-alive
//! connections. The driver is a thread of this process, so its cost is not counted; only the
//! prober's own process is measured (`/proc/PID/stat` utime + stime, `VmHWM`). hybridprobe runs
//! as the agent with the same targets, intervals and timeouts, and is scraped once every 15 s;
//! the floor reports the probes it ran on its stdout. Runs alternate between the three so that
//! drift in a shared machine's load hits each. `--by-kind 1` runs each kind's targets alone in
//! turn instead of the mixed workload, for the CPU per probe of each kind. `--http N` adds N
//! plain-HTTP checks of an nginx on-prem (none by default, so the mixed workload stays the one
//! the docs' earlier numbers measured).
//!
//! Run it with `bench/vs-blackbox.sh`; `cargo bench --bench vs_blackbox -- --help` lists options.

#[path = "../tests/lab/mod.rs"]
mod lab;

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{
    cpu_times, drive, http_url, mib, pause, rounds, status_kib, wait_http, Agent, Job, Kind, Tally,
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
    by_kind: bool,
}

impl Options {
    fn parse() -> Option<Options> {
        let (mut seconds, mut warmup, mut rounds) = (60, 10, 3);
        let (mut tcp, mut icmp, mut dns, mut http, mut by_kind) = (100, 100, 20, 0, 0);
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
                ("http", &mut http),
                ("by-kind", &mut by_kind),
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
                http: count(http),
            },
            by_kind: by_kind != 0,
        })
    }

    /// The workloads measured in turn: the mixed one, or each kind alone.
    fn workloads(&self) -> Vec<Workload> {
        let w = self.workload;
        if !self.by_kind {
            return vec![w];
        }
        let none = Workload {
            tcp: 0,
            icmp: 0,
            dns: 0,
            http: 0,
        };
        let alone = [
            Workload { tcp: w.tcp, ..none },
            Workload {
                icmp: w.icmp,
                ..none
            },
            Workload { dns: w.dns, ..none },
            Workload {
                http: w.http,
                ..none
            },
        ];
        alone.into_iter().filter(|w| w.total() > 0).collect()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Prober {
    Hybridprobe,
    Floor,
    Blackbox,
}

impl Prober {
    const ALL: [Prober; 3] = [Prober::Hybridprobe, Prober::Floor, Prober::Blackbox];

    fn name(self) -> &'static str {
        match self {
            Prober::Hybridprobe => "hybridprobe",
            Prober::Floor => "floor",
            Prober::Blackbox => "blackbox_exporter",
        }
    }
}

struct Measured {
    prober: Prober,
    workload: String,
    /// Probes finished in the measured window, and how many had failed.
    probes: u64,
    failed: u64,
    expected: u64,
    user: f64,
    system: f64,
    hwm_kib: u64,
}

/// What a workload is called in the tables: `100 tcp + 100 icmp + 20 dns`, or `100 icmp`.
fn label(w: &Workload) -> String {
    let parts: Vec<String> = [
        (w.tcp, "tcp"),
        (w.icmp, "icmp"),
        (w.dns, "dns"),
        (w.http, "http"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, kind)| format!("{n} {kind}"))
    .collect();
    parts.join(" + ")
}

/// CPU and peak RSS of `pid` over the next `seconds`, with what `probes` counts before and
/// after: (user s, system s, peak RSS KiB, probes before, probes after).
fn window<T>(pid: u32, seconds: u64, mut probes: impl FnMut() -> T) -> (f64, f64, u64, T, T) {
    let before = probes();
    let (user0, system0) = cpu_times(pid);
    pause(Duration::from_secs(seconds));
    let (user1, system1) = cpu_times(pid);
    let after = probes();
    let hwm_kib = status_kib(pid, "VmHWM");
    (user1 - user0, system1 - system0, hwm_kib, before, after)
}

fn main() {
    let Some(options) = Options::parse() else {
        return;
    };
    common::catch_interrupts();
    let lab = Lab::new("vs-blackbox").expect("the lab needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN)");
    options.workload.serve(&lab);
    println!(
        "workload: {}, each probed once a second from the pod namespace; {} s warm-up, {} s \
         measured per run",
        options
            .workloads()
            .iter()
            .map(label)
            .collect::<Vec<_>>()
            .join("; then "),
        options.warmup,
        options.seconds
    );
    let floor = floor_bin();
    let mut runs = Vec::new();
    for workload in options.workloads() {
        for round in 0..options.rounds {
            for prober in Prober::ALL {
                let m = match prober {
                    Prober::Hybridprobe => hybridprobe(&lab, &options, &workload),
                    Prober::Floor => floor_run(&lab, &options, &workload, &floor),
                    Prober::Blackbox => blackbox(&lab, &options, &workload),
                };
                println!(
                    "{} run {}: {:<17} {:>6} probes ({} expected), {} failed, {:.2} user + {:.2} \
                     kernel CPU s, peak RSS {:.1} MiB",
                    m.workload,
                    round + 1,
                    prober.name(),
                    m.probes,
                    m.expected,
                    m.failed,
                    m.user,
                    m.system,
                    mib(m.hwm_kib)
                );
                runs.push(m);
            }
        }
    }
    report(&runs, &options);
}

fn hybridprobe(lab: &Lab, o: &Options, workload: &Workload) -> Measured {
    let agent = Agent::start(lab, workload, None);
    let (scraper, scrapes) = agent.scraped(lab);
    pause(Duration::from_secs(o.warmup));
    // The window's edge scrapes fall outside the measured CPU.
    let pid = lab.pid(agent.handle);
    let (user, system, hwm_kib, (all0, failed0), (all1, failed1)) =
        window(pid, o.seconds, || rounds(&agent.metrics(lab)));
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
        workload: label(workload),
        probes: (all1 - all0) as u64,
        failed: (failed1 - failed0) as u64,
        expected: workload.total() as u64 * o.seconds,
        user,
        system,
        hwm_kib,
    }
}

/// The floor prober Cargo built beside this benchmark (`bench/vs-blackbox.sh` builds both):
/// `FLOOR_BIN` when set, else the newest `floor-*` executable in this benchmark's directory.
fn floor_bin() -> String {
    if let Ok(bin) = std::env::var("FLOOR_BIN") {
        return bin;
    }
    let me = std::env::current_exe().expect("this benchmark's path");
    let dir = me.parent().expect("a directory");
    let newest = std::fs::read_dir(dir)
        .expect("this benchmark's directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| is_floor(p))
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok());
    let bin = newest.unwrap_or_else(|| {
        panic!(
            "no floor-* in {}: build it with cargo bench --bench floor --no-run",
            dir.display()
        )
    });
    bin.display().to_string()
}

fn is_floor(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    name.starts_with("floor-")
        && path.extension().is_none()
        && path
            .metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn floor_run(lab: &Lab, o: &Options, workload: &Workload, bin: &str) -> Measured {
    let counts = [
        ("--tcp", workload.tcp),
        ("--icmp", workload.icmp),
        ("--dns", workload.dns),
        ("--http", workload.http),
    ]
    .map(|(flag, n)| (flag, n.to_string()));
    let mut args = vec!["--bench"];
    for (flag, n) in &counts {
        args.extend([*flag, n.as_str()]);
    }
    let floor = lab.spawn(Host::Pod, bin, &args, &[]);
    pause(Duration::from_secs(o.warmup));
    let progress = || floor_progress(&lab.logs(floor));
    let (user, system, hwm_kib, (ok0, failed0), (ok1, failed1)) =
        window(lab.pid(floor), o.seconds, progress);
    lab.stop(floor);
    Measured {
        prober: Prober::Floor,
        workload: label(workload),
        probes: ok1 + failed1 - ok0 - failed0,
        failed: failed1 - failed0,
        expected: workload.total() as u64 * o.seconds,
        user,
        system,
        hwm_kib,
    }
}

/// The floor's last `floor: ok N failed N` line.
fn floor_progress(logs: &str) -> (u64, u64) {
    let line = logs
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("floor: ok "))
        .unwrap_or_else(|| panic!("the floor reported no probes:\n{logs}"));
    let (ok, failed) = line.split_once(" failed ").expect("ok N failed N");
    (
        ok.parse().expect("a count"),
        failed.parse().expect("a count"),
    )
}

fn blackbox(lab: &Lab, o: &Options, workload: &Workload) -> Measured {
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
    let targets = workload.targets();
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
                Kind::Http => ("http_2xx", http_url(t.addr)),
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
    let (user, system, hwm_kib, before, after) =
        window(lab.pid(exporter), o.seconds, || counts.tally());
    drop(driver);
    lab.stop(exporter);
    let Tally { ok, failed, errors } = after - before;
    Measured {
        prober: Prober::Blackbox,
        workload: label(workload),
        probes: ok + failed + errors,
        failed: failed + errors,
        expected: workload.total() as u64 * o.seconds,
        user,
        system,
        hwm_kib,
    }
}

/// The modules the driver asks for, with the agent's timeout and IPv4 only, as hybridprobe
/// probes the same literal addresses; the DNS module checks the answer as the agent does, and
/// the HTTP one is blackbox_exporter's own `http_2xx` (any 2xx, redirects followed, which the
/// target never sends).
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
  http_2xx:
    prober: http
    timeout: 500ms
    http: {{ preferred_ip_protocol: ip4, ip_protocol_fallback: false }}
"
    )
}

fn report(runs: &[Measured], o: &Options) {
    println!("\nmachine: {}", common::machine());
    println!(
        "each target probed once a second from the pod namespace, {} s per run, runs alternating",
        o.seconds
    );
    let us = |s: f64, m: &Measured| s * 1e6 / m.probes.max(1) as f64;
    println!(
        "\n| workload | run | prober | probes run (expected) | failed | user CPU s | kernel CPU s | \
         user per probe | kernel per probe | peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (i, m) in runs.iter().enumerate() {
        println!(
            "| {} | {} | {} | {} ({}) | {} | {:.2} | {:.2} | {:.1} µs | {:.1} µs | {:.1} MiB |",
            m.workload,
            (i / Prober::ALL.len()) % o.rounds as usize + 1,
            m.prober.name(),
            m.probes,
            m.expected,
            m.failed,
            m.user,
            m.system,
            us(m.user, m),
            us(m.system, m),
            mib(m.hwm_kib)
        );
    }
    println!(
        "\n| workload | prober | user per probe (median) | kernel per probe (median) | CPU per probe \
         | peak RSS (max) |"
    );
    println!("|---|---|---|---|---|---|");
    for workload in o.workloads().iter().map(label) {
        let summary = |p: Prober| {
            let mine: Vec<&Measured> = runs
                .iter()
                .filter(|m| m.prober == p && m.workload == workload)
                .collect();
            let user = median(mine.iter().map(|m| us(m.user, m)).collect());
            let system = median(mine.iter().map(|m| us(m.system, m)).collect());
            let hwm = mine.iter().map(|m| m.hwm_kib).max().unwrap_or(0);
            (user, system, hwm)
        };
        for p in Prober::ALL {
            let (user, system, hwm) = summary(p);
            println!(
                "| {workload} | {} | {user:.1} µs | {system:.1} µs | {:.1} µs | {:.1} MiB |",
                p.name(),
                user + system,
                mib(hwm)
            );
        }
        let (hp, floor, bb) = (
            summary(Prober::Hybridprobe),
            summary(Prober::Floor),
            summary(Prober::Blackbox),
        );
        let ratio = |name: &str, of: (f64, f64, u64), goal: &str| {
            println!(
                "| {workload} | ratio hybridprobe / {name} | {:.2} | {:.2}{goal} | {:.2} | {:.2} |",
                hp.0 / of.0,
                hp.1 / of.1,
                (hp.0 + hp.1) / (of.0 + of.1),
                hp.2 as f64 / of.2 as f64
            );
        };
        ratio("floor", floor, " (goal <= 1.2)");
        ratio("blackbox_exporter", bb, "");
    }
    let missed: Vec<String> = runs
        .iter()
        .filter(|m| m.probes + m.expected / 100 < m.expected || m.failed > 0)
        .map(|m| {
            format!(
                "{} on {} ran {} of {} ({} failed)",
                m.prober.name(),
                m.workload,
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

/// The middle value (the mean of the middle two for an even count); 0 for none.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}
