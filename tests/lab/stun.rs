//! The source-IP scenario: coturn as a third-party STUN server on the on-prem host, a STUN client
//! usable from any namespace, and masquerade in the node namespace the way ip-masq-agent's final
//! MASQUERADE rule does it.

use super::{Host, Lab, ProcHandle, NFT_TABLE, ONPREM_IP};
use hybridprobe::net::stun;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

impl Lab {
    /// Starts coturn (`turnserver --stun-only`) on `ONPREM_IP:port`, UDP and TCP, with its log,
    /// pid file and database in the lab's temp dir and no config file, and waits until it answers.
    pub fn start_coturn(&self, port: u16) -> ProcHandle {
        let tmp = self.tmpdir();
        let path = |name: &str| tmp.join(name).display().to_string();
        let (log, pid, db) = (
            path("turnserver.log"),
            path("turnserver.pid"),
            path("turndb"),
        );
        let (ip, port_text) = (ONPREM_IP.to_string(), port.to_string());
        let handle = self.spawn(
            Host::Onprem,
            "turnserver",
            &[
                "-n", // no config file: everything is on this command line
                "--stun-only",
                "--listening-ip",
                &ip,
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
        let server = SocketAddr::from((ONPREM_IP, port));
        self.wait_until("coturn to answer STUN", Duration::from_secs(10), || {
            self.stun_binding(Host::Onprem, server, Duration::from_millis(200))
                .is_some()
        });
        handle
    }

    /// A UDP socket on an ephemeral port, created inside `h`.
    pub fn udp_socket(&self, h: Host) -> UdpSocket {
        self.in_ns(h, move || {
            UdpSocket::bind("0.0.0.0:0").unwrap_or_else(|e| panic!("udp bind in {h:?}: {e}"))
        })
    }

    /// One Binding request over UDP from inside `h`: the address the server saw, if a valid
    /// answer came within `wait`.
    pub fn stun_binding(&self, h: Host, server: SocketAddr, wait: Duration) -> Option<SocketAddr> {
        let socket = self.udp_socket(h);
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
    /// reuse its ports.
    pub fn masquerade(&self, on: bool) {
        self.source_nat(on.then_some("masquerade"));
    }

    /// Pod traffic to on-prem leaves the node translated to `to`, an address the node adds to
    /// its uplink: SNAT to another address than the node's own, as an appliance or a second
    /// interface does. [`Lab::masquerade`] undoes the translation.
    pub fn snat_to(&self, to: Ipv4Addr) {
        let addr = format!("{to}/24");
        self.must(Host::Node, "ip", &["addr", "replace", &addr, "dev", "eth0"]);
        self.source_nat(Some(&format!("snat to {to}")));
    }

    /// Makes `action` (none: no translation) the node's NAT of pod traffic to on-prem.
    fn source_nat(&self, action: Option<&str>) {
        let rule = action.map_or_else(String::new, |action| {
            format!(
                "add rule ip {NFT_TABLE} masq ip saddr 198.18.2.0/24 ip daddr 198.19.0.0/16 {action}\n"
            )
        });
        self.nft(
            Host::Node,
            &format!(
                "table ip {NFT_TABLE} {{\n\
                 \x20 chain track {{\n\
                 \x20   type filter hook prerouting priority -150; policy accept;\n\
                 \x20 }}\n\
                 \x20 chain masq {{\n\
                 \x20   type nat hook postrouting priority srcnat; policy accept;\n\
                 \x20 }}\n\
                 }}\n\
                 flush chain ip {NFT_TABLE} track\n\
                 add rule ip {NFT_TABLE} track ct state new counter\n\
                 flush chain ip {NFT_TABLE} masq\n\
                 {rule}"
            ),
        );
        // `conntrack -F` exits non-zero when the table is already empty on some versions.
        let _ = self.exec(Host::Node, "conntrack", &["-F"]);
    }
}
