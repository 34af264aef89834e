//! What the Rust benchmarks share: the on-prem workload in the lab, a process's CPU and memory
//! from /proc, a Prometheus-like HTTP driver running inside a lab namespace, and metric sums.
//!
//! Each benchmark is its own crate root, so this file is included with `mod common;` and every
//! benchmark uses a different part of it.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sched::{setns, CloneFlags};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::lab::dns::{DB_IP, DB_NAME};
use crate::lab::{Host, Lab, ProcHandle, POD_IP};

pub const BIN: &str = env!("CARGO_BIN_EXE_hybridprobe");

/// The agent binary to run: `HYBRIDPROBE_BIN` when set (to compare two builds in one session),
/// else the one Cargo built with the benchmark.
pub fn agent_bin() -> String {
    std::env::var("HYBRIDPROBE_BIN").unwrap_or_else(|_| BIN.to_owned())
}
pub const AGENT_PORT: u16 = 9739;

/// The TCP port every on-prem target listens on.
pub const TCP_PORT: u16 = 389;

/// On-prem addresses per kind: each kind has its own block in the on-prem /24, so a workload
/// of up to 100 TCP, 100 ICMP, 20 DNS and 20 HTTP targets has one address per target; larger
/// workloads reuse them.
const TCP_BASE: u8 = 10;
const ICMP_BASE: u8 = 110;
const DNS_BASE: u8 = 210;
const HTTP_BASE: u8 = 230;
const TCP_ADDRS: usize = 100;
const ICMP_ADDRS: usize = 100;
const DNS_ADDRS: usize = 20;
const HTTP_ADDRS: usize = 20;

/// What every `http` target asks for over plain HTTP on port 80, and what nginx answers.
pub const HTTP_PATH: &str = "/healthz";
pub const HTTP_BODY: &str = r#"{"status":"ok"}"#;

/// How many targets of each kind are probed, each once a second.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub tcp: usize,
    pub icmp: usize,
    pub dns: usize,
    pub http: usize,
}

/// One probe of a workload: what it is called and what it asks.
pub struct Target {
    pub name: String,
    pub kind: Kind,
    pub addr: Ipv4Addr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tcp,
    Icmp,
    Dns,
    Http,
}

fn onprem(last: usize) -> Ipv4Addr {
    Ipv4Addr::new(
        198,
        19,
        10,
        u8::try_from(last).expect("on-prem address in the /24"),
    )
}

/// The URL an `http` target at `addr` asks for.
pub fn http_url(addr: Ipv4Addr) -> String {
    format!("http://{addr}{HTTP_PATH}")
}

impl Workload {
    pub fn total(&self) -> usize {
        self.tcp + self.icmp + self.dns + self.http
    }

    pub fn targets(&self) -> Vec<Target> {
        let kinds = [
            (Kind::Tcp, "tcp", self.tcp, TCP_BASE, TCP_ADDRS),
            (Kind::Icmp, "icmp", self.icmp, ICMP_BASE, ICMP_ADDRS),
            (Kind::Dns, "dns", self.dns, DNS_BASE, DNS_ADDRS),
            (Kind::Http, "http", self.http, HTTP_BASE, HTTP_ADDRS),
        ];
        kinds
            .into_iter()
            .flat_map(|(kind, prefix, n, base, addrs)| {
                (0..n).map(move |i| Target {
                    name: format!("{prefix}-{i:04}"),
                    kind,
                    addr: onprem(usize::from(base) + i % addrs),
                })
            })
            .collect()
    }

    /// Gives the on-prem host every target address and starts what answers there: one TCP
    /// listener on all of them, one dnsmasq on the DNS ones and one nginx on the HTTP ones.
    /// None of them is measured.
    pub fn serve(&self, lab: &Lab) {
        let mut batch = String::new();
        let blocks = [
            (TCP_BASE, self.tcp.min(TCP_ADDRS)),
            (ICMP_BASE, self.icmp.min(ICMP_ADDRS)),
            (DNS_BASE, self.dns.min(DNS_ADDRS)),
            (HTTP_BASE, self.http.min(HTTP_ADDRS)),
        ];
        for (base, n) in blocks {
            for i in 0..n {
                let _ = writeln!(
                    batch,
                    "addr add {}/32 dev eth0",
                    onprem(usize::from(base) + i)
                );
            }
        }
        let file = lab.tmpdir().join("onprem-addresses.batch");
        std::fs::write(&file, batch).expect("writing the address batch");
        lab.must(Host::Onprem, "ip", &["-batch", &file.display().to_string()]);
        lab.serve_tcp(Host::Onprem, SocketAddr::from(([0, 0, 0, 0], TCP_PORT)));
        if self.dns > 0 {
            self.serve_dns(lab);
        }
        if self.http > 0 {
            self.serve_http(lab);
        }
    }

    /// dnsmasq answering `db.corp.example` from its own records on every DNS target address;
    /// it knows no upstream.
    fn serve_dns(&self, lab: &Lab) -> ProcHandle {
        let listen: Vec<IpAddr> = (0..self.dns.min(DNS_ADDRS))
            .map(|i| onprem(usize::from(DNS_BASE) + i).into())
            .collect();
        let records = [
            "--local=/corp.example/".to_owned(),
            format!("--host-record={DB_NAME},{DB_IP}"),
        ];
        lab.dnsmasq(Host::Onprem, "bench-dns", &listen, &records)
    }

    /// nginx (Debian's) answering [`HTTP_PATH`] with 200 and a small body over plain HTTP on
    /// port 80 of every address of the on-prem host, one worker, no access log, its files in
    /// the lab's temp dir; it runs in the foreground and stops with the lab. Ready once the pod
    /// gets the 200 through the tunnel.
    fn serve_http(&self, lab: &Lab) -> ProcHandle {
        let dir = lab.tmpdir().join("bench-nginx");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let d = dir.display();
        let temp_paths: String = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
            .map(|t| format!("{t}_temp_path {d}/{t}; "))
            .concat();
        let conf = format!(
            "daemon off; master_process on; worker_processes 1; user root; pid {d}/nginx.pid;
             error_log stderr warn;
             events {{ worker_connections 1024; }}
             http {{
               access_log off; {temp_paths}
               server {{
                 listen 80 default_server;
                 location = {HTTP_PATH} {{ default_type application/json; return 200 '{HTTP_BODY}'; }}
                 location / {{ return 404; }}
               }}
             }}\n"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap_or_else(|e| panic!("{}: {e}", conf_path.display()));
        let (prefix, conf_path) = (format!("{d}/"), conf_path.display().to_string());
        let nginx = lab.spawn(
            Host::Onprem,
            "nginx",
            &["-e", "stderr", "-p", &prefix, "-c", &conf_path],
            &[],
        );
        wait_http(lab, nginx, &http_url(onprem(usize::from(HTTP_BASE))));
        nginx
    }

    /// The agent's config for this workload: every target once a second from the pod, ICMP
    /// with one echo request a round, as blackbox_exporter sends.
    pub fn hybridprobe_config(&self) -> String {
        let mut yaml = String::from(
            "netns: { pod: {} }\ndefaults: { interval: 1s, timeout: 500ms }\nprobes:\n",
        );
        for t in self.targets() {
            let (name, addr) = (&t.name, t.addr);
            let _ = match t.kind {
                Kind::Tcp => writeln!(
                    yaml,
                    "  - {{ name: {name}, tcp: {{ target: \"{addr}:{TCP_PORT}\" }} }}"
                ),
                Kind::Icmp => writeln!(
                    yaml,
                    "  - {{ name: {name}, icmp: {{ target: {addr}, count: 1 }} }}"
                ),
                Kind::Dns => writeln!(
                    yaml,
                    "  - {{ name: {name}, dns: {{ query: {DB_NAME}, servers: [\"{addr}\"], \
                     transport: udp, expect: {{ equals: [{DB_IP}] }} }} }}"
                ),
                Kind::Http => writeln!(
                    yaml,
                    "  - {{ name: {name}, http: {{ url: \"{}\" }} }}",
                    http_url(addr)
                ),
            };
        }
        yaml
    }
}

// === options ===

/// Reads `--name number` options into `values`, which hold the defaults. False when the
/// benchmark should not run: after `--help`, and without `--bench`, which `cargo bench` passes
/// and `cargo test --all-targets` (running every target, benchmarks included) does not.
pub fn options(bench: &str, script: &str, values: &mut [(&str, &mut u64)]) -> bool {
    let given: Vec<String> = std::env::args().skip(1).collect();
    let wants_help = given.iter().any(|a| a == "--help" || a == "-h");
    // Under `cargo test` the arguments are the test harness's (`--test-threads=4`), not ours.
    let benching = given.iter().any(|a| a == "--bench");
    if !benching && !wants_help {
        println!("{bench} is a benchmark: run {script}");
        return false;
    }
    let mut args = given.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--bench" {
            continue;
        }
        if arg == "--help" || arg == "-h" {
            let usage: Vec<String> = values
                .iter()
                .map(|(name, value)| format!("[--{name} {value}]"))
                .collect();
            println!("{script} {}", usage.join(" "));
            return false;
        }
        let slot = arg
            .strip_prefix("--")
            .and_then(|name| values.iter_mut().find(|(n, _)| *n == name))
            .unwrap_or_else(|| panic!("{bench}: unknown option {arg} (try --help)"));
        *slot.1 = args
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{bench}: {arg} needs a number"));
    }
    true
}

// === the agent ===

/// `hybridprobe agent` in the pod namespace, probing `workload`, stopped with the lab.
pub struct Agent {
    pub handle: ProcHandle,
    pub listen: SocketAddr,
}

impl Agent {
    /// Starts the agent, pinned to the CPUs in `cpus` (a `taskset -c` list) if given, and
    /// waits until it serves /livez.
    pub fn start(lab: &Lab, workload: &Workload, cpus: Option<&str>) -> Agent {
        let config = lab.tmpdir().join("hybridprobe.yaml");
        std::fs::write(&config, workload.hybridprobe_config()).expect("writing the agent config");
        let listen = SocketAddr::from((POD_IP, AGENT_PORT));
        let (config, listen_text) = (config.display().to_string(), listen.to_string());
        let bin = agent_bin();
        let mut args = vec![
            bin.as_str(),
            "agent",
            "--config",
            &config,
            "--listen",
            &listen_text,
            "--log",
            "warn",
        ];
        // taskset execs the agent, so the process keeps taskset's pid.
        let program = match cpus {
            Some(cpus) => {
                args.splice(0..0, ["-c", cpus]);
                "taskset"
            }
            None => args.remove(0),
        };
        let handle = lab.spawn(Host::Pod, program, &args, &[]);
        wait_http(lab, handle, &format!("http://{listen}/livez"));
        Agent { handle, listen }
    }

    pub fn metrics(&self, lab: &Lab) -> String {
        let (code, body) =
            lab.http_get(Host::Pod, &format!("http://{}/metrics", self.listen), false);
        assert_eq!(code, 200, "GET /metrics: {body}");
        body
    }

    /// A Prometheus scraping /metrics every 15 s from the pod namespace, until dropped.
    pub fn scraped(&self, lab: &Lab) -> (NsThread, Arc<Counts>) {
        let every = Duration::from_secs(15);
        let job = Job {
            path: "/metrics".into(),
            every,
            offset: every / 2,
        };
        drive(lab, Host::Pod, self.listen, vec![job], |status, _| {
            status == 200
        })
    }
}

/// Rounds the agent finished so far, and how many of them failed.
pub fn rounds(metrics: &str) -> (f64, f64) {
    let all = sum(metrics, "hybridprobe_probe_runs_total", |_| true);
    let ok = sum(metrics, "hybridprobe_probe_runs_total", |l| {
        l.contains("result=\"success\"")
    });
    (all, all - ok)
}

/// Waits for `url` to answer 200 from the pod, failing fast if the process died.
pub fn wait_http(lab: &Lab, p: ProcHandle, url: &str) {
    lab.wait_until(url, Duration::from_secs(15), || {
        if let Some(status) = lab.try_status(p) {
            panic!("exited ({status}) before {url} answered:\n{}", lab.logs(p));
        }
        lab.http_get(Host::Pod, url, false).0 == 200
    });
}

// === the measured process ===

/// CPU time (user + system, every thread) of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let (user, system) = cpu_times(pid);
    user + system
}

/// User and kernel (system) CPU time of a process, every thread, in seconds.
pub fn cpu_times(pid: u32) -> (f64, f64) {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // The command name may hold spaces and parentheses; the fields after the last ')' do not.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| -> u64 {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .unwrap_or_else(|| panic!("{path}: no field {i} in {stat}"))
    };
    // Fields 14 and 15 of stat(5), counted from the state field (3) after the name.
    (
        ticks(11) as f64 / clock_ticks(),
        ticks(12) as f64 / clock_ticks(),
    )
}

fn clock_ticks() -> f64 {
    static TCK: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        let out = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .expect("getconf CLK_TCK");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("CLK_TCK is a number")
    })
}

/// A `/proc/PID/status` value in KiB, such as `VmHWM` (peak RSS) or `VmRSS`.
pub fn status_kib(pid: u32, key: &str) -> u64 {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{path}: no {key}"))
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The machine, for the tables: core count and CPU model.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_owned();
    // Counted from cpuinfo: available_parallelism would count only the CPUs this thread may use.
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    format!("{cores} cores, {model}")
}

/// Keeps the calling thread, and every thread and process it starts from now on, on `cpu`.
pub fn pin_to_cpu(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).expect("a CPU number within the set");
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .unwrap_or_else(|e| panic!("pinning to CPU {cpu}: {e}"));
}

/// The `p` quantile (0 to 1) of sorted durations, in milliseconds.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let i = ((last as f64) * p).round() as usize;
    Some(sorted[i.min(last)].as_secs_f64() * 1e3)
}

// === waiting, interruptible ===

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Turns SIGINT and SIGTERM into a panic at the next [`pause`], so the lab's `Drop` removes
/// every namespace and process instead of leaving them behind.
pub fn catch_interrupts() {
    std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("signal runtime");
        runtime.block_on(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        INTERRUPTED.store(true, Ordering::SeqCst);
    });
}

/// Sleeps for `d`, panicking (which cleans up) if the run was interrupted meanwhile.
pub fn pause(d: Duration) {
    let end = std::time::Instant::now() + d;
    loop {
        assert!(!INTERRUPTED.load(Ordering::SeqCst), "interrupted");
        let now = std::time::Instant::now();
        if now >= end {
            return;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(100)));
    }
}

// === the driver: HTTP requests from inside a namespace, the way Prometheus makes them ===

/// A request the driver repeats: `path` every `every`, first after `offset`.
pub struct Job {
    pub path: String,
    pub every: Duration,
    pub offset: Duration,
}

/// Requests the driver finished: `ok` when the body passed the check, `failed` when it did
/// not, `errors` when no response came within the interval; and how long each `ok` one took.
#[derive(Debug, Default)]
pub struct Counts {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub errors: AtomicU64,
    latencies: Mutex<Vec<Duration>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub ok: u64,
    pub failed: u64,
    pub errors: u64,
}

impl Counts {
    /// How many `ok` requests have a latency recorded.
    pub fn measured(&self) -> usize {
        self.latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Latencies of the `ok` requests after the first `skip`, sorted.
    pub fn latencies(&self, skip: usize) -> Vec<Duration> {
        let all = self.latencies.lock().unwrap_or_else(|e| e.into_inner());
        let mut mine = all.get(skip..).unwrap_or_default().to_vec();
        mine.sort();
        mine
    }

    pub fn tally(&self) -> Tally {
        Tally {
            ok: self.ok.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

impl std::ops::Sub for Tally {
    type Output = Tally;
    fn sub(self, before: Tally) -> Tally {
        Tally {
            ok: self.ok - before.ok,
            failed: self.failed - before.failed,
            errors: self.errors - before.errors,
        }
    }
}

/// A thread inside a lab namespace running a current-thread runtime: every socket it opens
/// lives there. Stopped and joined on drop.
pub struct NsThread {
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl NsThread {
    pub fn spawn<F, Fut>(lab: &Lab, h: Host, work: F) -> NsThread
    where
        F: FnOnce(watch::Receiver<bool>) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let path: PathBuf = lab.ns_path(h);
        let (stop, stopped) = watch::channel(false);
        let thread = std::thread::spawn(move || {
            let ns =
                std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            setns(&ns, CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("setns {}: {e}", path.display()));
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("driver runtime");
            runtime.block_on(work(stopped));
        });
        NsThread {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for NsThread {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Repeats every job against `server` from inside namespace `h` until dropped, each on its
/// own schedule, a late request skipped rather than bunched (as a Prometheus scrape loop
/// does). Connections are kept alive and shared through a pool, like Go's and Prometheus's
/// HTTP clients. `judge` says whether a response body counts as `ok`.
pub fn drive(
    lab: &Lab,
    h: Host,
    server: SocketAddr,
    jobs: Vec<Job>,
    judge: fn(u16, &str) -> bool,
) -> (NsThread, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    let shared = counts.clone();
    let thread = NsThread::spawn(lab, h, move |stopped| async move {
        let pool = Arc::new(Pool::new(server));
        let mut tasks = tokio::task::JoinSet::new();
        for job in jobs {
            let (pool, counts, mut stopped) = (pool.clone(), shared.clone(), stopped.clone());
            tasks.spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(job.offset) => {}
                    _ = stopped.changed() => return,
                }
                let mut ticker = tokio::time::interval(job.every);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    tokio::select! {
                        _ = ticker.tick() => {}
                        _ = stopped.changed() => return,
                    }
                    let started = std::time::Instant::now();
                    let request = tokio::time::timeout(job.every, pool.get(&job.path));
                    let counter = match request.await {
                        Ok(Ok((status, body))) if judge(status, &body) => {
                            counts
                                .latencies
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(started.elapsed());
                            &counts.ok
                        }
                        Ok(Ok(_)) => &counts.failed,
                        Ok(Err(_)) | Err(_) => &counts.errors,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let mut stopped = stopped;
        let _ = stopped.changed().await;
        tasks.shutdown().await;
    });
    (thread, counts)
}

/// Keep-alive HTTP/1.1 connections to one server, reused by whichever request comes next.
struct Pool {
    server: SocketAddr,
    idle: Mutex<Vec<BufReader<TcpStream>>>,
}

impl Pool {
    fn new(server: SocketAddr) -> Pool {
        Pool {
            server,
            idle: Mutex::new(Vec::new()),
        }
    }

    async fn get(&self, path: &str) -> io::Result<(u16, String)> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        if let Some(conn) = pooled {
            // A pooled connection may have been closed by the server meanwhile: retry once on
            // a fresh one, as Go's transport does.
            if let Ok(response) = self.exchange(conn, path).await {
                return Ok(response);
            }
        }
        // Large reads: a /metrics body is hundreds of kilobytes, and the driver must not be
        // what makes a scrape slow.
        let fresh = BufReader::with_capacity(256 * 1024, TcpStream::connect(self.server).await?);
        self.exchange(fresh, path).await
    }

    async fn exchange(
        &self,
        mut conn: BufReader<TcpStream>,
        path: &str,
    ) -> io::Result<(u16, String)> {
        // The headers Prometheus sends, minus Accept-Encoding: gzip, which would add
        // compression to blackbox_exporter's cost and none to hybridprobe's.
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: Prometheus/2.45.0\r\n\
             Accept: text/plain;version=0.0.4;q=0.9,*/*;q=0.1\r\n\
             X-Prometheus-Scrape-Timeout-Seconds: 1\r\n\r\n",
            self.server
        );
        conn.get_mut().write_all(request.as_bytes()).await?;
        let (status, body, keep) = read_response(&mut conn).await?;
        if keep {
            self.idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(conn);
        }
        Ok((status, body))
    }
}

/// Reads one HTTP/1.1 response: status, body (by Content-Length or chunked), and whether the
/// connection may be reused.
async fn read_response(conn: &mut BufReader<TcpStream>) -> io::Result<(u16, String, bool)> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let mut line = String::new();
    if conn.read_line(&mut line).await? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("status line"))?;
    let (mut length, mut chunked, mut keep) = (None, false, true);
    loop {
        line.clear();
        if conn.read_line(&mut line).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(bad("header line"));
        };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = Some(value.parse().map_err(|_| bad("length"))?),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" => keep = !value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            conn.read_line(&mut line).await?;
            let size = usize::from_str_radix(line.trim(), 16).map_err(|_| bad("chunk size"))?;
            let start = body.len();
            body.resize(start + size + 2, 0);
            conn.read_exact(&mut body[start..]).await?;
            body.truncate(start + size);
            if size == 0 {
                break;
            }
        }
    } else if let Some(length) = length {
        body.resize(length, 0);
        conn.read_exact(&mut body).await?;
    } else {
        conn.read_to_end(&mut body).await?;
        keep = false;
    }
    let body = String::from_utf8(body)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    Ok((status, body, keep))
}

// === Prometheus text ===

/// The sum of every sample of `name` whose label text passes `filter`.
pub fn sum(text: &str, name: &str, filter: impl Fn(&str) -> bool) -> f64 {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(rest) => rest.rsplit_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            filter(labels).then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}

/// A histogram without labels: cumulative counts per upper bound, `+Inf` last.
pub fn buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (le, value) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, value.trim().parse().ok()?))
        })
        .collect()
}

/// The observations between two readings of a histogram's buckets.
pub fn difference(before: &[(f64, f64)], after: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .map(|&(le, n)| {
            let earlier = before
                .iter()
                .find(|(b, _)| *b == le)
                .map_or(0.0, |(_, n)| *n);
            (le, n - earlier)
        })
        .collect()
}

/// The `q` quantile of cumulative bucket counts, interpolated within the bucket as
/// Prometheus's `histogram_quantile` does; `None` without observations.
pub fn quantile(q: f64, counts: &[(f64, f64)]) -> Option<f64> {
    let total = counts.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, n) in counts {
        if n >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let share = if n > lower.1 {
                (rank - lower.1) / (n - lower.1)
            } else {
                0.0
            };
            return Some(lower.0 + (le - lower.0) * share);
        }
        lower = (le, n);
    }
    None
}
