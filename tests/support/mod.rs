//! Helpers for black-box tests of the `hybridprobe` binary: start an agent inside the lab, read
//! its endpoints, and pick values out of the Prometheus text format.

// Each integration-test binary compiles this module and uses a different subset of it.
#![allow(dead_code)]

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::Output;
use std::time::Duration;

pub mod cdp;

use crate::lab::dns::CLUSTER_DNS_IP;
use crate::lab::{Host, Lab, ProcHandle, ONPREM_IP, POD_IP};

pub const BIN: &str = env!("CARGO_BIN_EXE_hybridprobe");
pub const PORT: u16 = 9739;

/// An agent running in the lab's pod namespace, stopped with the lab.
pub struct Agent<'a> {
    pub lab: &'a Lab,
    pub handle: ProcHandle,
}

impl<'a> Agent<'a> {
    /// Writes `config` to the lab's temp dir and starts `hybridprobe agent` with it in the pod.
    pub fn start(lab: &'a Lab, config: &str) -> Agent<'a> {
        let path = write_config(lab, "agent.yaml", config);
        let listen = format!("{POD_IP}:{PORT}");
        Agent::start_args(lab, &["agent", "--config", &path, "--listen", &listen], &[])
    }

    pub fn start_args(lab: &'a Lab, args: &[&str], envs: &[(&str, &str)]) -> Agent<'a> {
        let handle = lab.spawn(Host::Pod, BIN, args, envs);
        let agent = Agent { lab, handle };
        lab.wait_until("the agent's /livez", Duration::from_secs(10), || {
            agent.get("/livez").0 == 200
        });
        agent
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        let url = format!("http://{POD_IP}:{PORT}{path}");
        self.lab.http_get(Host::Pod, &url, false)
    }

    pub fn healthz(&self) -> (u16, String) {
        self.get("/healthz")
    }

    pub fn healthz_json(&self) -> (u16, serde_json::Value) {
        let url = format!("http://{POD_IP}:{PORT}/healthz");
        let (code, body) = self.lab.http_get(Host::Pod, &url, true);
        let json = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("/healthz is not JSON ({e}): {body}"));
        (code, json)
    }

    pub fn metrics(&self) -> String {
        let (code, body) = self.get("/metrics");
        assert_eq!(code, 200, "/metrics failed: {body}");
        body
    }

    /// Waits until /readyz says the first round finished.
    pub fn wait_ready(&self) {
        self.lab
            .wait_until("the agent's first round", Duration::from_secs(15), || {
                self.get("/readyz").0 == 200
            });
    }

    /// Waits until `probe` in `netns` has finished `n` rounds or more, whatever their result,
    /// as `hybridprobe_probe_runs_total` counts them; returns the count it saw.
    pub fn wait_rounds(&self, probe: &str, netns: &str, n: u32, deadline: Duration) -> f64 {
        let what = format!("{n} rounds of {probe} in {netns}");
        let mut seen = 0.0;
        self.lab.wait_until(&what, deadline, || {
            seen = rounds(&self.metrics(), probe, netns);
            seen >= f64::from(n)
        });
        seen
    }

    /// Waits until `probe` in `netns` fails and holds evidence in /healthz JSON; returns its
    /// newest capture.
    pub fn wait_evidence(&self, probe: &str, netns: &str, deadline: Duration) -> serde_json::Value {
        let mut newest = serde_json::Value::Null;
        let what = format!("evidence for {probe} in {netns}");
        self.lab.wait_until(&what, deadline, || {
            let (_, verdict) = self.healthz_json();
            newest = check(&verdict, probe, netns)["evidence"][0].clone();
            !newest.is_null()
        });
        newest
    }

    /// Waits until `check` (a probe in a namespace) reports `result` in /healthz JSON.
    pub fn wait_check(&self, probe: &str, netns: &str, result: &str, deadline: Duration) {
        let what = format!("{probe} in {netns} to report {result}");
        self.lab.wait_until(&what, deadline, || {
            let (_, json) = self.healthz_json();
            check(&json, probe, netns)["result"] == result
        });
    }
}

/// The piece `what` taken in `netns` of an evidence capture (a `/healthz` check's `evidence`
/// entry), with the whole capture shown when it is missing.
pub fn piece<'c>(capture: &'c serde_json::Value, what: &str, netns: &str) -> &'c serde_json::Value {
    capture["pieces"]
        .as_array()
        .and_then(|pieces| {
            pieces
                .iter()
                .find(|p| p["what"] == what && p["netns"] == netns)
        })
        .unwrap_or_else(|| panic!("no {what} piece from {netns} in {capture:#}"))
}

/// The entry for `probe` in `netns` of a /healthz JSON verdict.
pub fn check<'j>(
    verdict: &'j serde_json::Value,
    probe: &str,
    netns: &str,
) -> &'j serde_json::Value {
    verdict["checks"]
        .as_array()
        .and_then(|checks| {
            checks
                .iter()
                .find(|c| c["probe"] == probe && c["netns"] == netns)
        })
        .unwrap_or_else(|| panic!("no check {probe}/{netns} in {verdict}"))
}

/// The diagnosis codes of a /healthz or `check` JSON verdict, in order.
pub fn codes(verdict: &serde_json::Value) -> Vec<String> {
    verdict["diagnoses"]
        .as_array()
        .unwrap_or_else(|| panic!("no diagnoses in {verdict}"))
        .iter()
        .map(|d| d["code"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Which resolv.conf each namespace of a lab config reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolv {
    /// Its own `/etc/resolv.conf`: the host's through `/proc/1/root`, named explicitly since the
    /// built-in default is where the DaemonSet mounts the node's.
    Own,
    /// The pod asks the cluster DNS, the host asks on-prem, as on an AKS node joined to an
    /// on-prem domain: files written to the lab's temp dir (the DNS servers are the test's own).
    ClusterAndOnprem,
}

/// The `netns:` section for the pod namespace and the lab's node namespace as the host.
fn pod_and_host_netns(lab: &Lab, resolv: Resolv) -> String {
    let host = lab.ns_path(Host::Node).display().to_string();
    match resolv {
        Resolv::Own => format!(
            "netns:\n  pod: {{}}\n  host: {{ path: {host}, resolv_conf: /proc/1/root/etc/resolv.conf }}\n"
        ),
        Resolv::ClusterAndOnprem => {
            let pod_resolv = lab.resolv_conf("pod-resolv.conf", &[CLUSTER_DNS_IP]);
            let host_resolv = lab.resolv_conf("host-resolv.conf", &[ONPREM_IP]);
            format!(
                "netns:\n  pod: {{ resolv_conf: {pod_resolv} }}\n  host: {{ path: {host}, resolv_conf: {host_resolv} }}\n"
            )
        }
    }
}

/// A config that runs `probes` (YAML list items) with `defaults` (a YAML flow mapping) in the pod
/// namespace and in the lab's node namespace as the host.
pub fn pod_and_host_config(lab: &Lab, resolv: Resolv, defaults: &str, probes: &str) -> String {
    format!(
        "{}defaults: {defaults}\nprobes:\n{probes}",
        pod_and_host_netns(lab, resolv)
    )
}

/// One `check` round of `probes` (YAML list items) from pod and host, as JSON.
pub fn check_once(lab: &Lab, resolv: Resolv, defaults: &str, probes: &str) -> serde_json::Value {
    let text = pod_and_host_config(lab, resolv, defaults, probes);
    let path = write_config(lab, "check.yaml", &text);
    let out = run_cli(
        lab,
        Host::Pod,
        &["check", "--config", &path, "--format", "json"],
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check printed no JSON ({e}):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Asserts that a command exited 0, else panics showing its status, stdout and stderr; returns
/// its stdout.
pub fn assert_success(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "exited with {}:\n---- stdout\n{stdout}---- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

pub fn write_config(lab: &Lab, name: &str, text: &str) -> String {
    let path = lab.tmpdir().join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path.display().to_string()
}

/// Runs the CLI to completion inside a lab namespace.
pub fn run_cli(lab: &Lab, h: Host, args: &[&str]) -> Output {
    lab.exec(h, BIN, args)
}

/// The value of the series `name` whose labels include every pair in `labels`.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    series(text, name, labels).next()
}

/// The sum over every series `name` whose labels include every pair in `labels`; 0 if none.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    series(text, name, labels).sum()
}

/// Finished rounds of `probe` in `netns`, whatever their result.
pub fn rounds(text: &str, probe: &str, netns: &str) -> f64 {
    let labels = [("probe", probe), ("netns", netns)];
    metric_sum(text, "hybridprobe_probe_runs_total", &labels)
}

/// The values of the series `name` whose labels include every pair in `labels`.
fn series<'t>(
    text: &'t str,
    name: &'t str,
    labels: &'t [(&'t str, &'t str)],
) -> impl Iterator<Item = f64> + 't {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(move |line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let matches = series_name == name
                && labels.iter().all(|(k, v)| {
                    series_labels
                        .split(',')
                        .any(|pair| pair == format!("{k}=\"{v}\""))
                });
            matches.then(|| value.parse().ok()).flatten()
        })
}

// === the agent process's health, and raw connections to it

/// A `kB` field of the process's /proc status, e.g. `VmRSS:`.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// How many file descriptors the process has open.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Fails the test if the process exited or panicked.
pub fn assert_alive(lab: &Lab, handle: ProcHandle) {
    assert_eq!(lab.try_status(handle), None, "{}", lab.logs(handle));
    assert!(
        !lab.logs(handle).contains("panicked"),
        "{}",
        lab.logs(handle)
    );
}

/// `n` TCP connections to `addr` made from inside `h`.
pub fn connections(lab: &Lab, h: Host, addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    lab.in_ns(h, move || {
        (0..n)
            .map(|i| {
                TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                    .unwrap_or_else(|e| panic!("connection {i} to {addr}: {e}"))
            })
            .collect()
    })
}

/// Whether the other end has closed the connection, without waiting; data it sent is skipped.
pub fn closed(mut stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// A config that runs `probes` (YAML list items) in the pod namespace only, every second.
pub fn pod_only(probes: &str) -> String {
    format!(
        "netns: {{ pod: {{}} }}\ndefaults: {{ interval: 1s, timeout: 800ms }}\nprobes:\n{probes}"
    )
}

/// A verdict's check: its result and detail.
pub fn result(verdict: &serde_json::Value, probe: &str, netns: &str) -> (String, String) {
    let c = check(verdict, probe, netns);
    (
        c["result"].as_str().unwrap_or_default().to_owned(),
        c["detail"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Rounds of `probe` in `netns` that ended with `result`.
pub fn runs(metrics: &str, probe: &str, netns: &str, result: &str) -> f64 {
    let labels = [("probe", probe), ("netns", netns), ("result", result)];
    metric(metrics, "hybridprobe_probe_runs_total", &labels).unwrap_or(0.0)
}

/// Whether `tool` is installed; under CI its absence fails the test.
pub fn support_tool(tool: &str) -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        let why = format!("{tool} not found (see .ci/packages.txt)");
        if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
            panic!("{why}");
        }
        eprintln!("skipping: {why} (set CI=true to fail instead)");
    }
    found
}
