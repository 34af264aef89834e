//! Real resolvers from Debian beside dnsmasq: BIND9 on-prem, authoritative for the corporate
//! zone and truncating large UDP answers, and unbound on the cluster side, forwarding that zone
//! to BIND as a CoreDNS stand-in would, and serving DNS over TLS on port 853 when asked, with a
//! certificate from the lab CA ([`super::web`]'s). Both run in the foreground with their config, zone, pid
//! file and keys in the lab's temp dir (no systemd, no /etc), listen on their lab address only,
//! and never ask the machine's own resolvers.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::dns::{CORP_ZONE, DB_IP, DB_NAME};
use super::{preflight, Host, Lab, ProcHandle, NODE_POD_GW, ONPREM_IP};

/// BIND listens where the on-prem dnsmasq would; a test starts one or the other.
pub const BIND_IP: Ipv4Addr = ONPREM_IP;
/// unbound listens on the node's pod-side address, which pods reach directly.
pub const UNBOUND_IP: Ipv4Addr = NODE_POD_GW;
/// unbound's DNS-over-TLS port.
pub const DOT_PORT: u16 = 853;
/// The name unbound's DoT certificate carries beside its address (an IP SAN).
pub const DOT_NAME: &str = "dns.cluster.example";

/// A TXT set far larger than BIND's 512-byte UDP limit: every UDP answer is truncated.
pub const BIG_NAME: &str = "big.corp.example";
pub const BIG_RECORDS: usize = 30;

const NAMED: &str = "/usr/sbin/named";
const UNBOUND: &str = "/usr/sbin/unbound";

/// Whether BIND9 and unbound can run here; under CI their absence fails the test, elsewhere the
/// test skips with one line saying why, like [`super::dns::dnsmasq_available`].
pub fn bind_and_unbound_available(test_name: &str) -> bool {
    let found = [NAMED, UNBOUND]
        .iter()
        .all(|p| Command::new(p).arg("-h").output().is_ok());
    if !found && preflight::under_ci() {
        panic!("{test_name}: bind9 and unbound are required under CI (see .ci/packages.txt)");
    }
    if !found {
        eprintln!(
            "skipping {test_name}: named or unbound not found (apt-get install bind9 unbound)"
        );
    }
    found
}

/// The `i`th TXT string of [`BIG_NAME`]: 60 characters, telling which one it is.
pub fn big_txt(i: usize) -> String {
    format!("record-{i:02}-{}", "x".repeat(50))
}

impl Lab {
    /// Starts BIND9 on `BIND_IP:53`, authoritative for `corp.example` (no recursion), with UDP
    /// answers capped at 512 bytes, so [`BIG_NAME`] is truncated over UDP and whole over TCP.
    pub fn bind(&self) -> ProcHandle {
        let dir = self.tmpdir().join("bind");
        write(&dir.join("corp.example.zone"), &zone());
        let d = dir.display();
        let conf = format!(
            r#"options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    managed-keys-directory "{d}";
    listen-on port 53 {{ {BIND_IP}; }};
    listen-on-v6 {{ none; }};
    recursion no;
    allow-query {{ any; }};
    dnssec-validation no;
    max-udp-size 512;
    edns-udp-size 512;
    notify no;
}};
controls {{ }};
zone "{CORP_ZONE}" {{ type primary; file "{d}/corp.example.zone"; }};
"#
        );
        let conf_path = dir.join("named.conf");
        write(&conf_path, &conf);
        let conf_path = conf_path.display().to_string();
        // -g: foreground, log to stderr; -4: IPv4 only; no -u: the lab runs as root anyway.
        let handle = self.spawn(Host::Onprem, NAMED, &["-g", "-4", "-c", &conf_path], &[]);
        self.wait_for_dns("named", handle, Host::Onprem, BIND_IP);
        // named listens before it has loaded its zones, and answers SERVFAIL until then.
        self.wait_until("named loading its zones", Duration::from_secs(15), || {
            self.logs(handle).contains(" running\n")
        });
        handle
    }

    /// Starts unbound on `UNBOUND_IP:53` in the node namespace, forwarding `corp.example` to
    /// BIND and nothing else (no root hints are ever asked: no other name is queried). It
    /// caches nothing.
    pub fn unbound(&self) -> ProcHandle {
        self.start_unbound("")
    }

    /// [`Lab::unbound`], also serving DNS over TLS on `UNBOUND_IP:853` with a certificate from a
    /// lab CA naming [`DOT_NAME`] and its address. Returns the CA's certificate too.
    pub fn unbound_dot(&self) -> (ProcHandle, PathBuf) {
        let dir = self.tmpdir().join("unbound");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let ca_file = self.lab_ca(&dir);
        let san = format!("DNS:{DOT_NAME},IP:{UNBOUND_IP}");
        self.leaf(&dir, "dot", DOT_NAME, &san, None);
        let d = dir.display();
        let handle = self.start_unbound(&format!(
            "    interface: {UNBOUND_IP}@{DOT_PORT}\n    tls-port: {DOT_PORT}\n    \
             tls-service-pem: \"{d}/dot.pem\"\n    tls-service-key: \"{d}/dot.key\"\n"
        ));
        let addr = SocketAddr::from((UNBOUND_IP, DOT_PORT));
        self.wait_until(
            &format!("unbound on {addr}"),
            Duration::from_secs(15),
            || {
                self.tcp_connect(Host::Node, addr, Duration::from_millis(200))
                    .is_ok()
            },
        );
        (handle, ca_file)
    }

    /// unbound with `extra` lines in its `server:` section.
    fn start_unbound(&self, extra: &str) -> ProcHandle {
        let dir = self.tmpdir().join("unbound");
        let d = dir.display();
        let conf = format!(
            r#"server:
    interface: {UNBOUND_IP}
{extra}    port: 53
    do-ip6: no
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{d}"
    pidfile: "{d}/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 1
    log-queries: yes
    access-control: 0.0.0.0/0 allow
    module-config: "iterator"
    domain-insecure: "{CORP_ZONE}"
    msg-cache-size: 0
    rrset-cache-size: 0
    cache-max-ttl: 0
    cache-max-negative-ttl: 0
remote-control:
    control-enable: no
forward-zone:
    name: "{CORP_ZONE}"
    forward-addr: {BIND_IP}
"#
        );
        let conf_path = dir.join("unbound.conf");
        write(&conf_path, &conf);
        let conf_path = conf_path.display().to_string();
        let handle = self.spawn(Host::Node, UNBOUND, &["-d", "-c", &conf_path], &[]);
        self.wait_for_dns("unbound", handle, Host::Node, UNBOUND_IP);
        handle
    }

    /// Returns once `name` accepts TCP on port 53 of `ip`; panics with its logs if it exits.
    fn wait_for_dns(&self, name: &str, handle: ProcHandle, h: Host, ip: Ipv4Addr) {
        let addr = SocketAddr::from((ip, 53));
        self.wait_until(
            &format!("{name} on {addr}"),
            Duration::from_secs(15),
            || {
                if let Some(status) = self.try_status(handle) {
                    panic!("{name} exited ({status}):\n{}", self.logs(handle));
                }
                self.tcp_connect(h, addr, Duration::from_millis(200))
                    .is_ok()
            },
        );
    }

    /// TCP/53 to BIND dropped in the on-prem namespace itself, as a host firewall that lets only
    /// UDP DNS in does: UDP answers, truncated ones included, while every TCP query times out.
    pub fn bind_tcp_drop(&self, on: bool) {
        let rule = format!("ip daddr {BIND_IP} tcp dport 53 drop");
        let rules: &[&str] = if on { &[rule.as_str()] } else { &[] };
        self.nft_chain(Host::Onprem, "bind_tcp_drop", "input", rules);
    }
}

/// The corporate zone: its name server, the database name, and the big TXT set.
fn zone() -> String {
    let mut zone = format!(
        "$TTL 0\n\
         @ IN SOA ns1.{CORP_ZONE}. hostmaster.{CORP_ZONE}. 1 3600 600 86400 0\n\
         @ IN NS ns1.{CORP_ZONE}.\n\
         ns1 IN A {BIND_IP}\n\
         {DB_NAME}. IN A {DB_IP}\n"
    );
    for i in 0..BIG_RECORDS {
        zone.push_str(&format!("{BIG_NAME}. IN TXT \"{}\"\n", big_txt(i)));
    }
    zone
}

/// Writes a lab file, its directory made first.
pub(super) fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}
