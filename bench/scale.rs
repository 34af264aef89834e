//! Scale: the agent pinned to one core running 1,000 probes a second against on-prem targets
//! in the lab (CPU, peak RSS, every round counted, and how late rounds start, from
//! `hybridprobe_scheduler_lag_seconds`); then /metrics and /healthz latency with about 5,000
//! series under 20 concurrent clients: 20 Prometheus-like clients each asking once a second,
//! all at the same instant (the worst alignment), and wrk holding 20 connections busy back to
//! back (saturation); and the agent's RSS over time, anonymous and file-backed, with the
//! 1,000 checks while 20 such clients read /metrics. Everything but the agent runs on the
//! other core.
//!
//! Run it with `bench/scale.sh`; `cargo bench --bench scale -- --help` lists options.
//! `--seconds 0` skips the probes-per-second part, `--memory-seconds 0` the RSS over time;
//! `HYBRIDPROBE_BIN=PATH` runs another build of the agent, to compare two builds in one session.

#[path = "../tests/lab/mod.rs"]
mod lab;

mod common;

use std::time::Duration;

use common::{
    buckets, cpu_seconds, difference, drive, mib, pause, percentile_ms, quantile, rounds,
    status_kib, Agent, Job, Workload,
};
use lab::{Host, Lab};

const LAG: &str = "hybridprobe_scheduler_lag_seconds";
/// The share of probe kinds in the 1,000-probe run: mostly TCP, as real configs are.
const SCALE: Workload = Workload {
    tcp: 600,
    icmp: 300,
    dns: 100,
    http: 0,
};
/// About 5,000 series: a TCP check has 12, an ICMP check 24 (its RTT histogram makes most of
/// them), a DNS check of one server over one transport 20 (docs/metrics.md, "Series per check,
/// by kind"); the run prints the count it got.
const SERIES: Workload = Workload {
    tcp: 200,
    icmp: 80,
    dns: 30,
    http: 0,
};
const SCRAPERS: u32 = 20;

struct Options {
    seconds: u64,
    warmup: u64,
    scrape_seconds: u64,
    memory_seconds: u64,
}

impl Options {
    fn parse() -> Option<Options> {
        let (mut seconds, mut warmup, mut scrape_seconds, mut memory_seconds) = (60, 10, 30, 60);
        let run = common::options(
            "scale",
            "bench/scale.sh",
            &mut [
                ("seconds", &mut seconds),
                ("warmup", &mut warmup),
                ("scrape-seconds", &mut scrape_seconds),
                ("memory-seconds", &mut memory_seconds),
            ],
        );
        run.then_some(Options {
            seconds,
            warmup,
            scrape_seconds,
            memory_seconds,
        })
    }
}

fn main() {
    let Some(o) = Options::parse() else {
        return;
    };
    common::catch_interrupts();
    // Core 0 is the agent's alone: the lab's servers, the driver and wrk run on core 1.
    common::pin_to_cpu(1);
    let lab = Lab::new("scale").expect("the lab needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN)");
    SCALE.serve(&lab);
    println!("agent: {}", common::agent_bin());
    let probes = (o.seconds > 0).then(|| probes_per_second(&lab, &o));
    let scrapes = latency(&lab, &o);
    let memory = (o.memory_seconds > 0).then(|| memory(&lab, &o));
    println!("\nmachine: {}", common::machine());
    println!(
        "\n{}\n{scrapes}\n\n{}",
        probes.unwrap_or_default(),
        memory.unwrap_or_default()
    );
}

/// 1,000 probes a second on core 0 for `o.seconds`, scraped every 15 s.
fn probes_per_second(lab: &Lab, o: &Options) -> String {
    println!(
        "{} TCP + {} ICMP + {} DNS probes a second, agent on core 0: {} s warm-up, {} s measured",
        SCALE.tcp, SCALE.icmp, SCALE.dns, o.warmup, o.seconds
    );
    let agent = Agent::start(lab, &SCALE, Some("0"));
    let (scraper, _) = agent.scraped(lab);
    pause(Duration::from_secs(o.warmup));
    let pid = lab.pid(agent.handle);
    let before = agent.metrics(lab);
    let cpu0 = cpu_seconds(pid);
    pause(Duration::from_secs(o.seconds));
    let cpu1 = cpu_seconds(pid);
    let after = agent.metrics(lab);
    let hwm = status_kib(pid, "VmHWM");
    drop(scraper);
    lab.stop(agent.handle);

    let ((all0, failed0), (all1, failed1)) = (rounds(&before), rounds(&after));
    let done = all1 - all0;
    let cpu = cpu1 - cpu0;
    let lag = difference(&buckets(&before, LAG), &buckets(&after, LAG));
    let ms = |q: f64| quantile(q, &lag).map_or("-".into(), |s| format!("{:.2} ms", s * 1e3));
    // The smallest bucket bound that holds every late start: the worst lag, to the bucket.
    let total = lag.last().map_or(0.0, |b| b.1);
    let worst = lag
        .iter()
        .find(|(_, n)| *n >= total)
        .map_or("-".into(), |(le, _)| format!("≤ {} ms", le * 1e3));
    format!(
        "| workload | rounds (expected) | failed | CPU s | CPU share of one core | CPU per probe | peak RSS | scheduler lag p50 / p99 / max |\n\
         |---|---|---|---|---|---|---|---|\n\
         | {} probes/s for {} s, 1 core | {:.0} ({}) | {:.0} | {:.2} | {:.1} % | {:.1} µs | {:.1} MiB | {} / {} / {} |",
        SCALE.total(),
        o.seconds,
        done,
        SCALE.total() as u64 * o.seconds,
        failed1 - failed0,
        cpu,
        cpu * 100.0 / o.seconds as f64,
        cpu * 1e6 / done.max(1.0),
        mib(hwm),
        ms(0.5),
        ms(0.99),
        worst,
    )
}

/// /metrics and /healthz of an agent with about 5,000 series under 20 clients, first as
/// Prometheus scrapes, then as fast as wrk can.
fn latency(lab: &Lab, o: &Options) -> String {
    let agent = Agent::start(lab, &SERIES, Some("0"));
    pause(Duration::from_secs(o.warmup));
    let series = agent
        .metrics(lab)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    println!(
        "/metrics with {series} series ({} checks probing once a second, agent on core 0), \
         {SCRAPERS} concurrent clients on core 1 for {} s each way, then /healthz",
        SERIES.total(),
        o.scrape_seconds
    );
    let mut rows = Vec::new();
    for path in ["/metrics", "/healthz"] {
        rows.push(aligned_scrapes(lab, &agent, o, path));
        rows.push(wrk(lab, &agent, o, path));
    }
    let pid = lab.pid(agent.handle);
    let hwm = status_kib(pid, "VmHWM");
    lab.stop(agent.handle);
    format!(
        "| {series} series, {SCRAPERS} clients | requests/s | p50 | p90 | p99 | max | errors |\n\
         |---|---|---|---|---|---|---|\n{}\n\npeak RSS of the agent: {:.1} MiB",
        rows.join("\n"),
        mib(hwm)
    )
}

/// The agent with the 1,000 checks while 20 clients read /metrics once a second, all at once:
/// its RSS every second, anonymous (heap, stacks) and file-backed (the binary's pages).
fn memory(lab: &Lab, o: &Options) -> String {
    let agent = Agent::start(lab, &SCALE, Some("0"));
    pause(Duration::from_secs(o.warmup));
    let pid = lab.pid(agent.handle);
    let (driver, _) = drive(lab, Host::Pod, agent.listen, aligned("/metrics"), |s, _| {
        s == 200
    });
    let mut samples = Vec::new();
    for second in 0..=o.memory_seconds {
        if second > 0 {
            pause(Duration::from_secs(1));
        }
        let kib = |key| status_kib(pid, key);
        samples.push([second, kib("VmRSS"), kib("RssAnon"), kib("RssFile")]);
    }
    drop(driver);
    let hwm = status_kib(pid, "VmHWM");
    lab.stop(agent.handle);
    // About ten rows, and the largest sample.
    let step = (samples.len() / 10).max(1);
    let largest = samples.iter().max_by_key(|s| s[1]).copied();
    let mut shown: Vec<[u64; 4]> = samples.iter().step_by(step).copied().collect();
    shown.extend(largest.filter(|l| !shown.contains(l)));
    shown.sort();
    let rows: Vec<String> = shown
        .iter()
        .map(|[t, rss, anon, file]| {
            format!(
                "| {t} s | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
                mib(*rss),
                mib(*anon),
                mib(*file)
            )
        })
        .collect();
    format!(
        "RSS of the agent with {} checks while {SCRAPERS} clients read /metrics once a second, \
         all at once, after a {} s warm-up:\n\n\
         | time | RSS | anonymous | file-backed |\n|---|---|---|---|\n{}\n\n\
         peak RSS (VmHWM, warm-up included): {:.1} MiB",
        SCALE.total(),
        o.warmup,
        rows.join("\n"),
        mib(hwm)
    )
}

/// `SCRAPERS` clients asking for `path` once a second, all at the same instant.
fn aligned(path: &str) -> Vec<Job> {
    (0..SCRAPERS)
        .map(|_| Job {
            path: path.into(),
            every: Duration::from_secs(1),
            offset: Duration::ZERO,
        })
        .collect()
}

/// Every client once a second, all at the same instant, over keep-alive connections.
fn aligned_scrapes(lab: &Lab, agent: &Agent, o: &Options, path: &str) -> String {
    let jobs = aligned(path);
    // /healthz says 503 while a check fails: an answer either way is a served request.
    let (driver, counts) = drive(lab, Host::Pod, agent.listen, jobs, |status, _| {
        status == 200 || status == 503
    });
    // The first bursts open the connections, which Prometheus then keeps.
    pause(Duration::from_secs(2));
    let (before, skip) = (counts.tally(), counts.measured());
    pause(Duration::from_secs(o.scrape_seconds));
    drop(driver);
    let tally = counts.tally() - before;
    let latencies = counts.latencies(skip);
    let ms = |p: f64| percentile_ms(&latencies, p).map_or("-".into(), |v| format!("{v:.2}ms"));
    format!(
        "| {path}, each once a second, all at once, {} s | {:.0} | {} | {} | {} | {} | {} |",
        o.scrape_seconds,
        tally.ok as f64 / o.scrape_seconds as f64,
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(1.0),
        tally.failed + tally.errors
    )
}

/// wrk keeping 20 connections busy back to back: the most `path` can serve.
fn wrk(lab: &Lab, agent: &Agent, o: &Options, path: &str) -> String {
    let url = format!("http://{}{path}", agent.listen);
    let (connections, duration) = (SCRAPERS.to_string(), format!("{}s", o.scrape_seconds));
    let out = lab.exec(
        Host::Pod,
        "taskset",
        &[
            "-c",
            "1",
            "wrk",
            "-t",
            "2",
            "-c",
            &connections,
            "-d",
            &duration,
            "--timeout",
            "5s",
            "--latency",
            &url,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    let percentile = |p: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(p))
            .map_or("-".to_owned(), |v| v.trim().to_owned())
    };
    let rate = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .map_or("-".to_owned(), |v| v.trim().to_owned());
    let errors = text
        .lines()
        .filter(|l| l.contains("Socket errors") || l.contains("Non-2xx"))
        .collect::<Vec<_>>()
        .join("; ");
    let max = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Latency"))
        .and_then(|stats| stats.split_whitespace().nth(2))
        .unwrap_or("-");
    format!(
        "| {path}, wrk, back to back, {} s | {rate} | {} | {} | {} | {max} | {} |",
        o.scrape_seconds,
        percentile("50%"),
        percentile("90%"),
        percentile("99%"),
        if errors.is_empty() { "0" } else { &errors },
    )
}
