//! A real forward proxy on the Azure side: squid in the VNET gateway's namespace, one port that
//! lets CONNECT and plain requests through to the on-prem network and one whose access rules
//! deny everything. Its config, logs, pid and hosts file live in the lab's temp dir; it caches
//! nothing, speaks no ICP or HTCP, and resolves the web server's names from its hosts file (its
//! DNS server is a lab address), so it never reaches outside the lab.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::bind::write;
use super::web::{EXPIRED_NAME, GOOD_NAME, WEB_IP, WRONG_NAME};
use super::{preflight, Host, Lab, ProcHandle, ONPREM_IP, ONPREM_NET, VNET_GW};

const SQUID: &str = "/usr/sbin/squid";
/// Where squid listens: the VNET gateway's address, which pod and node reach directly.
pub const PROXY_IP: Ipv4Addr = VNET_GW;
/// The port whose rules allow the on-prem network.
pub const ALLOW_PORT: u16 = 3128;
/// The port whose rules deny every request (squid's 403 with `ERR_ACCESS_DENIED`).
pub const DENY_PORT: u16 = 3129;
/// How long squid tries to reach a target before it answers 503 (it checks timeouts once a
/// second, so the answer comes a second or two later).
pub const CONNECT_TIMEOUT_SECS: u32 = 1;

/// The squid of a lab.
pub struct Squid {
    pub proc: ProcHandle,
    pub allow: SocketAddr,
    pub deny: SocketAddr,
}

/// Whether squid can run here; like [`super::web::nginx_available`].
pub fn squid_available(test_name: &str) -> bool {
    let found = Command::new(SQUID).arg("-v").output().is_ok();
    if !found && preflight::under_ci() {
        panic!("{test_name}: squid is required under CI (see .ci/packages.txt)");
    }
    if !found {
        eprintln!("skipping {test_name}: squid not found (apt-get install squid)");
    }
    found
}

/// Squid names its shared-memory segments after its service name: each instance gets its own,
/// so parallel labs never open each other's.
static INSTANCES: AtomicUsize = AtomicUsize::new(0);

impl Lab {
    /// Starts squid in the VNET gateway's namespace; returns once both ports accept.
    pub fn forward_proxy(&self) -> Squid {
        let dir = self.tmpdir().join("squid");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let d = dir.display();
        let hosts: String = [GOOD_NAME, EXPIRED_NAME, WRONG_NAME]
            .iter()
            .map(|name| format!("{WEB_IP} {name}\n"))
            .collect();
        write(&dir.join("hosts"), &hosts);
        let conf = format!(
            "http_port {PROXY_IP}:{ALLOW_PORT} name=allow
http_port {PROXY_IP}:{DENY_PORT} name=deny
visible_hostname hplab-proxy
# Squid refuses to work as root; the directory is handed to this user below.
cache_effective_user proxy
pid_filename {d}/squid.pid
cache_log stdio:{d}/cache.log
access_log stdio:{d}/access.log
cache_store_log none
netdb_filename none
coredump_dir {d}
cache deny all
cache_mem 0 MB
icp_port 0
htcp_port 0
pinger_enable off
digest_generation off
dns_nameservers {ONPREM_IP}
hosts_file {d}/hosts
connect_timeout {CONNECT_TIMEOUT_SECS} seconds
# One try: a dead path is told within the round, not after retries.
forward_max_tries 1
shutdown_lifetime 0 seconds
acl deny_port myportname deny
acl onprem dst {ONPREM_NET}
http_access deny deny_port
http_access allow onprem
http_access deny all
"
        );
        write(&dir.join("squid.conf"), &conf);
        let out = Command::new("chown")
            .args(["-R", "proxy:proxy", &d.to_string()])
            .output()
            .expect("chown");
        assert!(out.status.success(), "chown {d}: {out:?}");
        let service = format!(
            "hplab{}x{}",
            std::process::id(),
            INSTANCES.fetch_add(1, Ordering::Relaxed)
        );
        let conf_path = format!("{d}/squid.conf");
        // -N: foreground, one process; -d 1: its log on stderr too.
        let proc = self.spawn(
            Host::VnetGw,
            SQUID,
            &["-N", "-n", &service, "-d", "1", "-f", &conf_path],
            &[],
        );
        let squid = Squid {
            proc,
            allow: SocketAddr::from((PROXY_IP, ALLOW_PORT)),
            deny: SocketAddr::from((PROXY_IP, DENY_PORT)),
        };
        for addr in [squid.allow, squid.deny] {
            self.wait_until(&format!("squid on {addr}"), Duration::from_secs(15), || {
                if let Some(status) = self.try_status(proc) {
                    panic!("squid exited ({status}):\n{}", self.logs(proc));
                }
                self.tcp_connect(Host::VnetGw, addr, Duration::from_millis(200))
                    .is_ok()
            });
        }
        squid
    }
}
