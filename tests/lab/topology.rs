//! Building the namespaces, links, addresses and routes, and tearing namespaces down.

use super::{
    check, run, Host, Lab, CLOUD_NET6, NODE_IP6, NODE_POD_GW6, ONPREM_GW6, ONPREM_IP6, ONPREM_NET6,
    POD_IP6, POD_NET6, VNET_GW6, VPN_LOCAL6, VPN_REMOTE6,
};
use std::process::Command;
use std::sync::Mutex;

static NETNS_ADD: Mutex<()> = Mutex::new(());

/// Every lab namespace forwards like the router it may stand for. rp_filter defaults follow the
/// root namespace on some distributions; the lab's routes are symmetric, but asymmetric fault
/// scenarios must not be filtered silently. They are set before any link exists so every
/// interface inherits them. Every ICMP error is sent: the kernel's per-peer limit (a burst of
/// six, then one a second) would starve the traceroutes of a capture wave, every failing check's
/// at once toward one masquerading node, and make which hop answers a matter of timing. IPv6
/// mirrors all of it; duplicate address detection is off (every address also says `nodad`) so
/// link-local and lab addresses work at once instead of a second later, and accept_ra stays
/// ignored since every namespace forwards.
pub(super) const ROUTER_SYSCTLS: &[&str] = &[
    "-qw",
    "net.ipv4.ip_forward=1",
    "net.ipv4.conf.all.rp_filter=0",
    "net.ipv4.conf.default.rp_filter=0",
    "net.ipv4.icmp_ratelimit=0",
    "net.ipv6.conf.all.forwarding=1",
    "net.ipv6.conf.default.accept_dad=0",
    "net.ipv6.icmp.ratelimit=0",
];

/// MAC addresses of the underlay veth's ends (locally administered), in the VNET gateway and
/// in the on-prem gateway.
const UL_VNET: &str = "02:00:c6:12:ff:01";
const UL_ONPREM: &str = "02:00:c6:12:ff:02";

impl Lab {
    pub(super) fn build(&self) {
        for h in Host::ALL {
            let ns = self.ns_name(h);
            // The first `ip netns add` after boot turns /run/netns into a mount point; two racing
            // ones stack two mounts and the lower one's namespace files vanish from view.
            let out = {
                let _serial = NETNS_ADD.lock().unwrap_or_else(|e| e.into_inner());
                run(cmd("ip", &["netns", "add", &ns]), None)
            };
            check(&out, &format!("ip netns add {ns}"), h);
            self.must(h, "sysctl", ROUTER_SYSCTLS);
        }
        let ns = |h| self.ns_name(h);
        // Each veth pair is created inside the first namespace with its peer placed straight into
        // the second, so nothing ever appears in the root namespace.
        self.ip_batch(
            Host::Pod,
            &format!(
                "link set lo up
                 link add eth0 type veth peer name pod0 netns {node}
                 addr add 198.18.2.10/24 dev eth0
                 addr add {POD_IP6}/64 dev eth0 nodad
                 link set eth0 up
                 route add default via 198.18.2.1
                 route add ::/0 via {NODE_POD_GW6}",
                node = ns(Host::Node)
            ),
        );
        self.ip_batch(
            Host::Node,
            &format!(
                "link set lo up
                 addr add 198.18.2.1/24 dev pod0
                 addr add {NODE_POD_GW6}/64 dev pod0 nodad
                 link set pod0 up
                 link add eth0 type veth peer name node0 netns {vnetgw}
                 addr add 198.18.1.4/24 dev eth0
                 addr add {NODE_IP6}/64 dev eth0 nodad
                 link set eth0 up
                 route add default via 198.18.1.1
                 route add ::/0 via {VNET_GW6}",
                vnetgw = ns(Host::VnetGw)
            ),
        );
        // The underlay veth keeps MTU 1500, leaving room for the 50-byte VXLAN header; the
        // tunnel's own MTU (1400) is what the path MTU tests see. Its ends know each other's
        // MAC address from the start: a tunnel end sends as soon as it is up (IPv6 MLD reports),
        // and an ARP request for the underlay peer sent before the peer's end is up is lost,
        // which would hold the tests' first packets for a second until the kernel asks again.
        self.ip_batch(
            Host::VnetGw,
            &format!(
                "link set lo up
                 addr add 198.18.1.1/24 dev node0
                 addr add {VNET_GW6}/64 dev node0 nodad
                 link set node0 up
                 link add ul0 address {UL_VNET} type veth peer name ul0 address {UL_ONPREM} netns {onpremgw}
                 addr add 198.18.255.1/30 dev ul0
                 neigh add 198.18.255.2 lladdr {UL_ONPREM} dev ul0 nud permanent
                 link set ul0 up
                 link add vpn type vxlan id 42 remote 198.18.255.2 local 198.18.255.1 dstport 4789 dev ul0
                 link set vpn mtu 1400
                 addr add 198.18.254.1/30 dev vpn
                 addr add {VPN_LOCAL6}/64 dev vpn nodad
                 link set vpn up
                 route add 198.19.0.0/16 via 198.18.254.2 dev vpn
                 route add {ONPREM_NET6} via {VPN_REMOTE6} dev vpn
                 route add 198.18.2.0/24 via 198.18.1.4
                 route add {POD_NET6} via {NODE_IP6}",
                onpremgw = ns(Host::OnpremGw)
            ),
        );
        self.ip_batch(
            Host::OnpremGw,
            &format!(
                "link set lo up
                 addr add 198.18.255.2/30 dev ul0
                 neigh add 198.18.255.1 lladdr {UL_VNET} dev ul0 nud permanent
                 link set ul0 up
                 link add vpn type vxlan id 42 remote 198.18.255.1 local 198.18.255.2 dstport 4789 dev ul0
                 link set vpn mtu 1400
                 addr add 198.18.254.2/30 dev vpn
                 addr add {VPN_REMOTE6}/64 dev vpn nodad
                 link set vpn up
                 link add lan0 type veth peer name eth0 netns {onprem}
                 addr add 198.19.10.254/24 dev lan0
                 addr add {ONPREM_GW6}/64 dev lan0 nodad
                 link set lan0 up
                 route add 198.18.0.0/16 via 198.18.254.1 dev vpn
                 route add {CLOUD_NET6} via {VPN_LOCAL6} dev vpn",
                onprem = ns(Host::Onprem)
            ),
        );
        self.ip_batch(
            Host::Onprem,
            &format!(
                "link set lo up
                 addr add 198.19.10.1/24 dev eth0
                 addr add {ONPREM_IP6}/64 dev eth0 nodad
                 link set eth0 up
                 route add default via 198.19.10.254
                 route add ::/0 via {ONPREM_GW6}"
            ),
        );
    }

    /// One `ip -batch` per namespace keeps the build to a handful of processes and reports the
    /// failing line.
    fn ip_batch(&self, h: Host, script: &str) {
        let script: String = script
            .lines()
            .map(|l| l.trim().to_string() + "\n")
            .collect();
        let out = run(
            cmd("ip", &["-n", &self.ns_name(h), "-batch", "-"]),
            Some(&script),
        );
        check(&out, &format!("ip -batch <<'EOF'\n{script}EOF\n"), h);
    }
}

/// Removes a namespace and kills anything still running in it (a process would otherwise keep
/// the namespace, its sockets and its routes alive after the name is gone). Never fails: it runs
/// from `Drop` and on leftovers that may be half gone.
pub(super) fn remove_namespace(name: &str) {
    if !std::path::Path::new("/var/run/netns").join(name).exists() {
        return;
    }
    let pids = run(cmd("ip", &["netns", "pids", name]), None);
    let me = std::process::id().to_string();
    for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
        if pid != me {
            let _ = run(cmd("kill", &["-KILL", pid]), None);
        }
    }
    let out = run(cmd("ip", &["netns", "delete", name]), None);
    if !out.status.success() {
        eprintln!(
            "lab: could not delete namespace {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
}

/// Deletes `hp-<test>-<pid>-<host>` namespaces whose process is gone (a killed test run cannot
/// run its Drop), so stale labs do not pile up on CI machines.
pub(super) fn sweep_stale_namespaces() {
    let list = run(cmd("ip", &["netns", "list"]), None);
    for line in String::from_utf8_lossy(&list.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let mut parts = name.rsplitn(3, '-');
        let (Some(host), Some(pid), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let ours = rest.starts_with("hp-")
            && (Host::ALL.iter().any(|h| h.suffix() == host) || super::fleet::is_fleet_host(host))
            && pid.parse::<u32>().is_ok();
        if ours && !std::path::Path::new("/proc").join(pid).exists() {
            remove_namespace(name);
        }
    }
}

fn cmd(program: &str, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args);
    c
}
