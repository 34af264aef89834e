//! Network-namespace test lab: a pod, its node, a VNET gateway, a VXLAN "VPN" and an on-prem LAN.
//!
//! ```text
//! pod ──veth── node ──veth── vnetgw ══ vxlan "vpn" mtu 1400 ══ onpremgw ──veth── onprem
//! ```
//!
//! Every link is dual-stack: IPv4 from 198.18.0.0/15 (198.18 the cloud side, 198.19 on-prem) and
//! IPv6 from 2001:2::/48 (`2001:2:0:18xx::` the cloud side, `2001:2:0:19xx::` on-prem), with the
//! same routes in both families, so a fault can break one family and leave the other working.
//!
//! Everything a `Lab` creates (namespaces, processes, nftables rules, temp files) lives inside
//! namespaces or a per-lab temp dir named after the test and the process id, and is removed when
//! the `Lab` is dropped, so tests can run in parallel and clean up even when they panic.

// Each integration-test binary compiles this module and uses a different subset of it.
#![allow(dead_code)]

pub mod bind;
pub mod dns;
mod faults;
pub mod fleet;
mod http;
mod preflight;
mod procs;
pub mod proxy;
mod sockets;
pub mod stun;
mod topology;
pub mod web;

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const POD_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 10);
pub const NODE_POD_GW: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 4);
pub const VNET_GW: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
pub const VPN_LOCAL: Ipv4Addr = Ipv4Addr::new(198, 18, 254, 1);
pub const VPN_REMOTE: Ipv4Addr = Ipv4Addr::new(198, 18, 254, 2);
pub const ONPREM_GW: Ipv4Addr = Ipv4Addr::new(198, 19, 10, 254);
pub const ONPREM_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 10, 1);
pub const ONPREM_NET: &str = "198.19.0.0/16";
pub const POD_NET: &str = "198.18.2.0/24";
pub const POD_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0x1802, 0, 0, 0, 0x10);
pub const NODE_POD_GW6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0x1802, 0, 0, 0, 1);
pub const NODE_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0x1801, 0, 0, 0, 4);
pub const VNET_GW6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0x1801, 0, 0, 0, 1);
pub const VPN_LOCAL6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0x18fe, 0, 0, 0, 1);
pub const VPN_REMOTE6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0x18fe, 0, 0, 0, 2);
pub const ONPREM_GW6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0x1910, 0, 0, 0, 0xfe);
pub const ONPREM_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0x1910, 0, 0, 0, 1);
pub const POD_NET6: &str = "2001:2:0:1802::/64";
/// The prefix [`Lab::npt6`] translates the pod's to, and the pod's address in it.
pub const NPT_NET6: &str = "2001:2:0:1803::/64";
pub const POD_NPT_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0x1803, 0, 0, 0, 0x10);
pub const ONPREM_NET6: &str = "2001:2:0:1900::/56";
/// The cloud side's IPv6 prefix: the pod's, the node's and the tunnel's subnets.
pub const CLOUD_NET6: &str = "2001:2:0:1800::/56";
/// The one IPv6 prefix lab traffic may use.
pub const LAB_NET6: &str = "2001:2::/48";
pub const TUNNEL_MTU: u32 = 1400;
/// nftables table that holds every rule the lab adds, in any namespace.
pub const NFT_TABLE: &str = "hplab";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    Pod,
    Node,
    VnetGw,
    OnpremGw,
    Onprem,
}

impl Host {
    pub const ALL: [Host; 5] = [
        Host::Pod,
        Host::Node,
        Host::VnetGw,
        Host::OnpremGw,
        Host::Onprem,
    ];

    fn suffix(self) -> &'static str {
        match self {
            Host::Pod => "pod",
            Host::Node => "node",
            Host::VnetGw => "vnetgw",
            Host::OnpremGw => "onpremgw",
            Host::Onprem => "onprem",
        }
    }
}

/// Identifies a process started with [`Lab::spawn`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcHandle(usize);

pub struct Lab {
    /// `hp-<test>-<pid>`: shared by the namespaces and the temp dir.
    prefix: String,
    tmp: PathBuf,
    procs: Mutex<Vec<procs::Proc>>,
    servers: Mutex<Vec<JoinHandle<()>>>,
    stopping: Arc<AtomicBool>,
    /// Set once the logs were printed for a failure, so `Drop` does not print them again.
    logs_shown: AtomicBool,
}

/// Prefixes of labs alive in this process: two live labs with one prefix would tear each
/// other down, which is a test bug worth a loud panic rather than a flaky failure.
static LIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());

impl Lab {
    /// Builds the whole topology. Returns `None` (after one line on stderr) only when root or a
    /// tool is missing and `CI` is unset; under `CI` that panics instead.
    pub fn new(test_name: &str) -> Option<Lab> {
        if let Err(why) = preflight::check() {
            if preflight::under_ci() {
                panic!("{test_name}: the network lab is required under CI, but {why}");
            }
            // Straight to stderr: libtest captures eprintln!, which would hide why nothing ran.
            let _ = writeln!(
                std::io::stderr(),
                "skipping {test_name}: network lab unavailable: {why} (set CI=true to fail instead)"
            );
            return None;
        }
        topology::sweep_stale_namespaces();
        let prefix = format!("hp-{}-{}", short_name(test_name), std::process::id());
        {
            let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
            assert!(
                !live.contains(&prefix),
                "two live labs named {prefix}: give each Lab::new a distinct test name"
            );
            live.push(prefix.clone());
        }
        let lab = Lab {
            tmp: std::env::temp_dir().join(&prefix),
            prefix,
            procs: Mutex::new(Vec::new()),
            servers: Mutex::new(Vec::new()),
            stopping: Arc::new(AtomicBool::new(false)),
            logs_shown: AtomicBool::new(false),
        };
        // From here on a panic unwinds through Lab::drop, which removes partial state.
        lab.remove_leftovers();
        std::fs::create_dir_all(&lab.tmp)
            .unwrap_or_else(|e| panic!("creating {}: {e}", lab.tmp.display()));
        lab.build();
        Some(lab)
    }

    pub fn ns_name(&self, h: Host) -> String {
        format!("{}-{}", self.prefix, h.suffix())
    }

    pub fn ns_path(&self, h: Host) -> PathBuf {
        Path::new("/var/run/netns").join(self.ns_name(h))
    }

    /// Per-lab scratch directory for configs and logs, removed on drop.
    pub fn tmpdir(&self) -> &Path {
        &self.tmp
    }

    /// Runs `program args` inside the namespace and returns whatever happened.
    pub fn exec(&self, h: Host, program: &str, args: &[&str]) -> Output {
        run(self.ns_command(h, program, args), None)
    }

    pub fn sh(&self, h: Host, script: &str) -> Output {
        self.exec(h, "bash", &["-c", script])
    }

    /// Like `exec`, but panics with the command's stderr unless it succeeds; returns stdout.
    pub fn must(&self, h: Host, program: &str, args: &[&str]) -> String {
        let out = self.exec(h, program, args);
        check(&out, &format!("{program} {}", args.join(" ")), h);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn must_sh(&self, h: Host, script: &str) -> String {
        self.must(h, "bash", &["-c", script])
    }

    /// Polls `f` every 200 ms until it holds; on timeout panics naming `what`, after printing
    /// every spawned process's logs.
    pub fn wait_until(&self, what: &str, deadline: Duration, mut f: impl FnMut() -> bool) {
        let end = Instant::now() + deadline;
        loop {
            if f() {
                return;
            }
            if Instant::now() >= end {
                eprintln!("{}", self.all_logs());
                self.logs_shown.store(true, Ordering::Relaxed);
                panic!("timed out after {deadline:?} waiting for {what}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn ns_command(&self, h: Host, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns_name(h), program])
            .args(args);
        cmd
    }

    fn remove_leftovers(&self) {
        for h in Host::ALL {
            topology::remove_namespace(&self.ns_name(h));
        }
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.logs_shown.load(Ordering::Relaxed) {
            let logs = self.all_logs();
            if !logs.is_empty() {
                eprintln!("{logs}");
            }
        }
        self.stop_servers();
        self.stop_all();
        self.remove_leftovers();
        LIVE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|p| p != &self.prefix);
    }
}

/// Namespace names must stay well under path limits and be predictable in `ip netns list`.
fn short_name(test_name: &str) -> String {
    let name: String = test_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(20)
        .collect();
    name.trim_matches('-').to_string()
}

/// Runs a command to completion, feeding it `stdin` if given. Panics only if it cannot start,
/// since then the tool is missing and nothing the test asserts would mean anything.
fn run(mut cmd: Command, stdin: Option<&str>) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("writing stdin of {cmd:?}: {e}"));
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {cmd:?}: {e}"))
}

fn check(out: &Output, what: &str, h: Host) {
    assert!(
        out.status.success(),
        "`{what}` in {h:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
