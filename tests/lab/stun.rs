//! The source-IP scenario: coturn as a third-party STUN server on the on-prem host, a STUN client
//! usable from any namespace, and masquerade in the node namespace the way ip-masq-agent's final
//! MASQUERADE rule does it.

use super::{
    preflight, Host, Lab, ProcHandle, NFT_TABLE, NODE_IP6, NPT_NET6, ONPREM_IP, ONPREM_IP6,
    ONPREM_NET, ONPREM_NET6, POD_NET, POD_NET6,
};
use hybridprobe::net::stun;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

/// Whether coturn can run here; like [`super::dns::dnsmasq_available`].
pub fn turnserver_available(test: &str) -> bool {
    let found = std::process::Command::new("turnserver")
        .arg("--version")
        .output()
        .is_ok();
    if !found && preflight::under_ci() {
        panic!("{test}: turnserver (coturn) is required under CI (see .ci/packages.txt)");
    }
    if !found {
        eprintln!("skipping {test}: turnserver not found (apt-get install coturn)");
    }
    found
}

impl Lab {
    /// Starts coturn (`turnserver --stun-only`) on `ONPREM_IP:port` and `[ONPREM_IP6]:port`, UDP
    /// and TCP, with its log, pid file and database in the lab's temp dir and no config file, and
    /// waits until it answers on both.
    pub fn start_coturn(&self, port: u16) -> ProcHandle {
        let tmp = self.tmpdir();
        let path = |name: &str| tmp.join(name).display().to_string();
        let (log, pid, db) = (
            path("turnserver.log"),
            path("turnserver.pid"),
            path("turndb"),
        );
        let (ip, ip6, port_text) = (
            ONPREM_IP.to_string(),
            ONPREM_IP6.to_string(),
            port.to_string(),
        );
        let handle = self.spawn(
            Host::Onprem,
            "turnserver",
            &[
                "-n", // no config file: everything is on this command line
                "--stun-only",
                "--listening-ip",
                &ip,
                "--listening-ip",
                &ip6,
                "--listening-port",
                &port_text,
                "--no-cli",
                "--no-tls",
                "--no-dtls",
                "--no-rfc5780",
                "--log-file",
                &log,
                "--simple-log",
                "--pidfile",
                &pid,
                "--db",
                &db,
            ],
            &[],
        );
        for ip in [IpAddr::from(ONPREM_IP), ONPREM_IP6.into()] {
            let server = SocketAddr::new(ip, port);
            self.wait_until(
                &format!("coturn on {server}"),
                Duration::from_secs(10),
                || {
                    self.stun_binding(Host::Onprem, server, Duration::from_millis(200))
                        .is_some()
                },
            );
        }
        handle
    }

    /// An IPv4 UDP socket on an ephemeral port, created inside `h`.
    pub fn udp_socket(&self, h: Host) -> UdpSocket {
        self.udp_socket_on(h, Ipv4Addr::UNSPECIFIED.into())
    }

    /// A UDP socket bound to `ip` (an unspecified address picks the family) on an ephemeral
    /// port, created inside `h`.
    fn udp_socket_on(&self, h: Host, ip: IpAddr) -> UdpSocket {
        self.in_ns(h, move || {
            UdpSocket::bind((ip, 0)).unwrap_or_else(|e| panic!("udp bind {ip} in {h:?}: {e}"))
        })
    }

    /// One Binding request over UDP from inside `h`: the address the server saw, if a valid
    /// answer came within `wait`.
    pub fn stun_binding(&self, h: Host, server: SocketAddr, wait: Duration) -> Option<SocketAddr> {
        let any = match server {
            SocketAddr::V4(_) => IpAddr::from(Ipv4Addr::UNSPECIFIED),
            SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        };
        let socket = self.udp_socket_on(h, any);
        socket.connect(server).ok()?;
        socket.set_read_timeout(Some(wait)).ok()?;
        let (id, request) = stun::new_request().expect("random transaction ID");
        socket.send(&request).ok()?;
        let mut buf = [0u8; 1500];
        let len = socket.recv(&mut buf).ok()?;
        stun::decode_response(&buf[..len], &id).ok()
    }

    /// Masquerades pod traffic to on-prem at the node, as ip-masq-agent's final MASQUERADE does
    /// for an on-prem range missing from `nonMasqueradeCIDRs`. On or off, the node tracks every
    /// connection, as a real node does (kube-proxy's rules need conntrack); a nat chain alone
    /// would not turn tracking on. Either way the node's conntrack table is flushed: an entry
    /// made under the old setting would otherwise decide the NAT of a new flow that happens to
    /// reuse its ports. IPv4 only; [`Lab::masquerade6`] is IPv6's.
    pub fn masquerade(&self, on: bool) {
        self.source_nat(Nat::V4, on.then_some("masquerade"));
    }

    /// NAT66 at the node: pod IPv6 traffic to on-prem leaves with the node's IPv6 address, as
    /// an `ip6` masquerade on the node's egress does where pods have no routable IPv6 prefix.
    /// Tracking and flushing as [`Lab::masquerade`]; IPv4 keeps its own setting.
    pub fn masquerade6(&self, on: bool) {
        self.source_nat(Nat::V6, on.then_some("masquerade"));
    }

    /// NPTv6 at the node: the pod's IPv6 prefix leaves as [`NPT_NET6`], each address keeping its
    /// interface identifier (`snat prefix to`, stateful here where RFC 6296's is not; on-prem sees
    /// the same), and the VNET gateway routes that prefix back to the node. Off removes both;
    /// [`Lab::masquerade6`] also ends the translation.
    pub fn npt6(&self, on: bool) {
        let node = NODE_IP6.to_string();
        if on {
            let route = ["-6", "route", "replace", NPT_NET6, "via", &node];
            self.must(Host::VnetGw, "ip", &route);
        } else {
            self.must(
                Host::VnetGw,
                "ip",
                &["-6", "route", "flush", "exact", NPT_NET6],
            );
        }
        let action = format!("snat ip6 prefix to {NPT_NET6}");
        self.source_nat(Nat::V6, on.then_some(&action));
    }

    /// Pod traffic to on-prem leaves the node translated to `to`, an address the node adds to
    /// its uplink: SNAT to another address than the node's own, as an appliance or a second
    /// interface does. [`Lab::masquerade`] undoes the translation.
    pub fn snat_to(&self, to: Ipv4Addr) {
        let addr = format!("{to}/24");
        self.must(Host::Node, "ip", &["addr", "replace", &addr, "dev", "eth0"]);
        self.source_nat(Nat::V4, Some(&format!("snat to {to}")));
    }

    /// Makes `action` (none: no translation) the node's NAT of pod traffic to on-prem in
    /// `nat`'s family, in that family's own table.
    fn source_nat(&self, nat: Nat, action: Option<&str>) {
        let (family, pods, onprem) = match nat {
            Nat::V4 => ("ip", POD_NET, ONPREM_NET),
            Nat::V6 => ("ip6", POD_NET6, ONPREM_NET6),
        };
        let table = format!("{family} {NFT_TABLE}");
        let rule = action.map_or_else(String::new, |action| {
            format!(
                "add rule {table} masq {family} saddr {pods} {family} daddr {onprem} {action}\n"
            )
        });
        self.nft(
            Host::Node,
            &format!(
                "table {table} {{\n\
                 \x20 chain track {{\n\
                 \x20   type filter hook prerouting priority -150; policy accept;\n\
                 \x20 }}\n\
                 \x20 chain masq {{\n\
                 \x20   type nat hook postrouting priority srcnat; policy accept;\n\
                 \x20 }}\n\
                 }}\n\
                 flush chain {table} track\n\
                 add rule {table} track ct state new counter\n\
                 flush chain {table} masq\n\
                 {rule}"
            ),
        );
        // `conntrack -F` exits non-zero when the table is already empty on some versions.
        let _ = self.exec(
            Host::Node,
            "conntrack",
            &["-F", "-f", nat.conntrack_family()],
        );
    }
}

/// The address family a node NAT applies to.
#[derive(Clone, Copy)]
enum Nat {
    V4,
    V6,
}

impl Nat {
    fn conntrack_family(self) -> &'static str {
        match self {
            Nat::V4 => "ipv4",
            Nat::V6 => "ipv6",
        }
    }
}
