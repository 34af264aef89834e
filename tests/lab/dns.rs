//! DNS servers in the lab, both dnsmasq: the on-prem server, authoritative for the corporate
//! zone, and the cluster DNS in the node namespace (the CoreDNS stand-in), which forwards that
//! zone on-prem. Neither ever asks the machine's own resolvers: no resolv.conf, no hosts file, no
//! upstream besides the explicit on-prem forward, and each listens on its lab addresses only, one
//! of each family. The cluster DNS forwards the zone over IPv4, as a CoreDNS stub zone naming an
//! IPv4 server does. [`DB6_NAME`] has only an AAAA record, [`DUAL_NAME`] and
//! [`DUAL_GW_NAME`] both: the tests of `family:` probe them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use super::{
    preflight, Host, Lab, ProcHandle, NODE_IP, NODE_IP6, ONPREM_GW, ONPREM_GW6, ONPREM_IP,
    ONPREM_IP6,
};

pub const CORP_ZONE: &str = "corp.example";
/// The cluster DNS listens on the node's address, where pods reach it through their gateway.
pub const CLUSTER_DNS_IP: Ipv4Addr = NODE_IP;
pub const CLUSTER_DNS_IP6: Ipv6Addr = NODE_IP6;
pub const DB_NAME: &str = "db.corp.example";
pub const DB_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 10, 5);
/// The IPv6 twin of [`DB_NAME`]: AAAA [`DB_IP6`], no A record.
pub const DB6_NAME: &str = "db6.corp.example";
pub const DB_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0x1910, 0, 0, 0, 5);
/// A name whose answer lies outside the on-prem range, as a split-horizon server handing out
/// the wrong view would give. Only ever an answer: nothing is sent to it.
pub const LEAK_NAME: &str = "web.corp.example";
pub const LEAK_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 99, 7);
/// A name for a service on the on-prem host, which the lab serves on [`APP_PORT`].
pub const APP_NAME: &str = "app.corp.example";
pub const APP_PORT: u16 = 8443;
/// A name with both records: the on-prem host's [`ONPREM_IP`] and [`ONPREM_IP6`].
pub const DUAL_NAME: &str = "dual.corp.example";
/// Another name with both records: the on-prem gateway's LAN side, [`ONPREM_GW`] and
/// [`ONPREM_GW6`], a second dual-stack address to probe.
pub const DUAL_GW_NAME: &str = "gw.corp.example";
/// A name the zone does not have.
pub const MISSING_NAME: &str = "gone.corp.example";

/// What the cluster DNS does with the corporate zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forward {
    /// Forwards it on-prem, as a CoreDNS stub zone does.
    Onprem,
    /// Lost the stub zone: answers NXDOMAIN, as the default upstream does for a private zone.
    Lost,
    /// Forwards it on-prem, but answers [`DB_NAME`] itself with [`LEAK_IP`], as a stale CoreDNS
    /// `hosts` or `rewrite` entry does.
    Override,
}

/// Whether dnsmasq can run here. Under CI a missing dnsmasq fails the test; elsewhere the test
/// skips with one line saying why, like [`Lab::new`].
pub fn dnsmasq_available(test_name: &str) -> bool {
    let found = Command::new("dnsmasq").arg("--version").output().is_ok();
    if !found && preflight::under_ci() {
        panic!("{test_name}: dnsmasq is required under CI (see .ci/packages.txt)");
    }
    if !found {
        eprintln!("skipping {test_name}: dnsmasq not found (apt-get install dnsmasq-base)");
    }
    found
}

impl Lab {
    /// Starts the on-prem DNS on `ONPREM_IP:53` and `[ONPREM_IP6]:53`, authoritative for `corp.example`; it refuses
    /// every other name.
    pub fn onprem_dns(&self) -> ProcHandle {
        self.onprem_dns_answering(DB_IP)
    }

    /// The on-prem DNS of [`Lab::onprem_dns`], with `db` as [`DB_NAME`]'s address: another one
    /// is a stale record.
    pub fn onprem_dns_answering(&self, db: Ipv4Addr) -> ProcHandle {
        let records = [
            ("ns1.corp.example", ONPREM_IP.to_string()),
            (DB_NAME, db.to_string()),
            (DB6_NAME, DB_IP6.to_string()),
            (LEAK_NAME, LEAK_IP.to_string()),
            (APP_NAME, ONPREM_IP.to_string()),
            (DUAL_NAME, format!("{ONPREM_IP},{ONPREM_IP6}")),
            (DUAL_GW_NAME, format!("{ONPREM_GW},{ONPREM_GW6}")),
        ];
        // Queries reaching an address the auth-server line does not name are not answered
        // authoritatively, so it names both.
        let mut args = vec![
            format!("--auth-server=ns1.{CORP_ZONE},{ONPREM_IP},{ONPREM_IP6}"),
            format!("--auth-zone={CORP_ZONE}"),
        ];
        args.extend(
            records
                .iter()
                .map(|(name, ips)| format!("--host-record={name},{ips}")),
        );
        let listen = [ONPREM_IP.into(), ONPREM_IP6.into()];
        self.dnsmasq(Host::Onprem, "onprem-dns", &listen, &args)
    }

    /// Starts the cluster DNS on `CLUSTER_DNS_IP:53` and `[CLUSTER_DNS_IP6]:53`. It caches nothing, so a change on-prem or
    /// in its forwarding shows in the very next query.
    pub fn cluster_dns(&self, forward: Forward) -> ProcHandle {
        let stub = format!("--server=/{CORP_ZONE}/{ONPREM_IP}");
        let zone = match forward {
            Forward::Onprem => vec![stub],
            Forward::Lost => vec![format!("--local=/{CORP_ZONE}/")],
            Forward::Override => vec![stub, format!("--address=/{DB_NAME}/{LEAK_IP}")],
        };
        let mut args = vec!["--cache-size=0".to_owned()];
        args.extend(zone);
        let listen = [CLUSTER_DNS_IP.into(), CLUSTER_DNS_IP6.into()];
        self.dnsmasq(Host::Node, "cluster-dns", &listen, &args)
    }

    /// Writes a resolv.conf into the lab's temp dir and returns its path.
    pub fn resolv_conf(&self, file: &str, nameservers: &[Ipv4Addr]) -> String {
        let mut text = format!("search {CORP_ZONE}\n");
        for ns in nameservers {
            text.push_str(&format!("nameserver {ns}\n"));
        }
        let path = self.tmpdir().join(file);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path.display().to_string()
    }

    /// Runs dnsmasq in the foreground, bound to the `listen` addresses only, with its pid file
    /// in the temp dir and its log on stderr; returns once it accepts TCP on port 53 of each.
    pub fn dnsmasq(&self, h: Host, name: &str, listen: &[IpAddr], extra: &[String]) -> ProcHandle {
        let pid_file = self.tmpdir().join(format!("{name}.pid"));
        let mut args = vec![
            "--keep-in-foreground".to_owned(),
            "--conf-file=/dev/null".to_owned(),
            "--no-resolv".to_owned(),
            "--no-hosts".to_owned(),
            "--no-poll".to_owned(),
            "--bind-interfaces".to_owned(),
            format!("--pid-file={}", pid_file.display()),
            "--log-facility=-".to_owned(),
            "--log-queries".to_owned(),
        ];
        args.extend(listen.iter().map(|ip| format!("--listen-address={ip}")));
        args.extend(extra.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let handle = self.spawn(h, "dnsmasq", &args, &[]);
        for &ip in listen {
            let addr = SocketAddr::from((ip, 53));
            self.wait_until(
                &format!("{name} on {addr}"),
                Duration::from_secs(10),
                || {
                    if let Some(status) = self.try_status(handle) {
                        panic!("{name} exited ({status}):\n{}", self.logs(handle));
                    }
                    self.tcp_connect(h, addr, Duration::from_millis(200))
                        .is_ok()
                },
            );
        }
        handle
    }
}
