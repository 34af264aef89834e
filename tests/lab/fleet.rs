//! A fleet: many more nodes, each with its own pod, on the lab node's subnet behind the same
//! VNET gateway and tunnel, with processes started in them and every one removed on drop.
//!
//! ```text
//! pod NNN ──veth── node NNN ──veth──┐
//! pod     ──veth── node     ──veth──┴─ bridge "fleet" in vnetgw (198.18.1.1/24) ══ vpn ══ onprem
//! ```
//!
//! Node NNN has 198.18.1.(10+NNN-1) on the lab node's own /24, so the subnet gateway and every
//! path to on-prem are the ones the lab node has; its pod has the second address of a /30 in
//! 198.18.64.0/18, routed by the gateway to the node. Namespaces are named after the lab's,
//! `<lab>-nNNN` and `<lab>-pNNN`.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{check, run, topology, Host, Lab, NFT_TABLE};

/// The node subnet's addresses left for fleet nodes: .10 to .249.
pub const FLEET_MAX: usize = 240;
/// How long a fleet process gets to exit after SIGTERM before it is SIGKILLed.
const GRACE: Duration = Duration::from_secs(5);

pub struct FleetNode {
    /// The name Kubernetes would give the node, as the scrape labels it.
    pub name: String,
    pub node_ns: String,
    pub pod_ns: String,
    pub node_ip: Ipv4Addr,
    pub pod_ip: Ipv4Addr,
}

pub struct Fleet<'a> {
    lab: &'a Lab,
    pub nodes: Vec<FleetNode>,
    procs: Mutex<Vec<Child>>,
}

impl<'a> Fleet<'a> {
    /// Moves the VNET gateway's node-subnet address onto a bridge (the lab node keeps its
    /// place on it) and adds `n` nodes with a pod each. Panics above [`FLEET_MAX`].
    pub fn new(lab: &'a Lab, n: usize) -> Fleet<'a> {
        assert!(n <= FLEET_MAX, "at most {FLEET_MAX} fleet nodes, not {n}");
        let fleet = Fleet {
            lab,
            nodes: (0..n).map(|i| node(lab, i)).collect(),
            procs: Mutex::new(Vec::new()),
        };
        // From here on a panic unwinds through Fleet::drop, which removes what exists.
        ip_batch(
            &lab.ns_name(Host::VnetGw),
            "link add fleet type bridge
             link set fleet up
             addr del 198.18.1.1/24 dev node0
             link set node0 master fleet
             addr add 198.18.1.1/24 dev fleet
             route replace 198.18.2.0/24 via 198.18.1.4",
        );
        for (i, node) in fleet.nodes.iter().enumerate() {
            fleet.build(i, node);
        }
        fleet
    }

    fn build(&self, i: usize, node: &FleetNode) {
        for ns in [&node.node_ns, &node.pod_ns] {
            check(
                &run(cmd("ip", &["netns", "add", ns]), None),
                &format!("ip netns add {ns}"),
                Host::VnetGw,
            );
            self.exec_ok(ns, "sysctl", topology::ROUTER_SYSCTLS);
        }
        let pod_net = Ipv4Addr::from(u32::from(node.pod_ip) & !3);
        let pod_gw = Ipv4Addr::from(u32::from(pod_net) + 1);
        let gw_ns = self.lab.ns_name(Host::VnetGw);
        ip_batch(
            &gw_ns,
            &format!(
                "link add f{i:03} type veth peer name eth0 netns {node_ns}
                 link set f{i:03} master fleet
                 link set f{i:03} up
                 route add {pod_net}/30 via {node_ip}",
                node_ns = node.node_ns,
                node_ip = node.node_ip,
            ),
        );
        ip_batch(
            &node.node_ns,
            &format!(
                "link set lo up
                 addr add {node_ip}/24 dev eth0
                 link set eth0 up
                 route add default via 198.18.1.1
                 link add pod0 type veth peer name eth0 netns {pod_ns}
                 addr add {pod_gw}/30 dev pod0
                 link set pod0 up",
                node_ip = node.node_ip,
                pod_ns = node.pod_ns,
            ),
        );
        ip_batch(
            &node.pod_ns,
            &format!(
                "link set lo up
                 addr add {pod_ip}/30 dev eth0
                 link set eth0 up
                 route add default via {pod_gw}",
                pod_ip = node.pod_ip,
            ),
        );
        // A node tracks connections (kube-proxy's rules need conntrack); a table alone would not
        // turn tracking on in this namespace.
        let track = format!(
            "table ip {NFT_TABLE} {{\n\
             \x20 chain track {{\n\
             \x20   type filter hook prerouting priority -150; policy accept;\n\
             \x20   ct state new counter\n\
             \x20 }}\n\
             }}\n"
        );
        let out = run(
            cmd("ip", &["netns", "exec", &node.node_ns, "nft", "-f", "-"]),
            Some(&track),
        );
        check(&out, &format!("nft in {}", node.node_ns), Host::VnetGw);
    }

    /// Runs `program args` inside namespace `ns` and returns whatever happened.
    pub fn exec(&self, ns: &str, program: &str, args: &[&str]) -> Output {
        let mut c = cmd("ip", &["netns", "exec", ns, program]);
        c.args(args);
        run(c, None)
    }

    fn exec_ok(&self, ns: &str, program: &str, args: &[&str]) {
        let what = format!("{program} {} in {ns}", args.join(" "));
        check(&self.exec(ns, program, args), &what, Host::VnetGw);
    }

    /// Writes /etc/NAME as the processes of namespace `ns` (started from now on) see it.
    pub fn etc_file(&self, ns: &str, name: &str, text: &str) {
        let dir = etc_dir(ns);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    /// Starts `program args` with `envs` in namespace `ns`, its stdout and stderr going to
    /// `<log>.stdout` and `<log>.stderr` in the lab's temp dir; returns its pid. It is stopped
    /// when the fleet drops.
    pub fn spawn(
        &self,
        ns: &str,
        log: &str,
        program: &str,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> u32 {
        let file = |ext: &str| {
            let path = self.lab.tmpdir().join(format!("{log}.{ext}"));
            File::create(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        };
        // `ip netns exec` execs the program, so the child's pid is the program's pid.
        let child = Command::new("ip")
            .args(["netns", "exec", ns, program])
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(file("stdout"))
            .stderr(file("stderr"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program} in {ns}: {e}"));
        let pid = child.id();
        self.procs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(child);
        pid
    }

    /// Pids of the fleet's processes that have exited.
    pub fn exited(&self) -> Vec<u32> {
        let mut procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        procs
            .iter_mut()
            .filter_map(|c| c.try_wait().ok().flatten().map(|_| c.id()))
            .collect()
    }

    /// The tunnel dead for the `nodes` (indexes) only: the VNET gateway drops what their node
    /// and pod addresses send into the tunnel and what comes back to them. An empty list
    /// removes the rule.
    pub fn tunnel_drop_for(&self, nodes: &[usize]) {
        let addrs: Vec<String> = nodes
            .iter()
            .flat_map(|&i| [self.nodes[i].node_ip, self.nodes[i].pod_ip])
            .map(|a| a.to_string())
            .collect();
        let set = addrs.join(", ");
        let rules = [
            format!("ip saddr {{ {set} }} oifname \"vpn\" drop"),
            format!("ip daddr {{ {set} }} iifname \"vpn\" drop"),
        ];
        let rules: Vec<&str> = if nodes.is_empty() {
            Vec::new()
        } else {
            rules.iter().map(String::as_str).collect()
        };
        self.lab
            .nft_chain(Host::VnetGw, "fleet_tunnel_drop", "forward", &rules);
    }
}

impl Drop for Fleet<'_> {
    fn drop(&mut self) {
        let mut procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        terminate(&mut procs);
        for node in &self.nodes {
            topology::remove_namespace(&node.node_ns);
            topology::remove_namespace(&node.pod_ns);
            let _ = std::fs::remove_dir_all(etc_dir(&node.pod_ns));
            let _ = std::fs::remove_dir_all(etc_dir(&node.node_ns));
        }
    }
}

/// SIGTERM to all at once, SIGKILL to whatever still runs after [`GRACE`]; every child reaped.
fn terminate(procs: &mut [Child]) {
    for child in procs.iter_mut() {
        if child.try_wait().ok().flatten().is_none() {
            let _ = run(cmd("kill", &["-TERM", &child.id().to_string()]), None);
        }
    }
    let end = Instant::now() + GRACE;
    for child in procs.iter_mut() {
        while child.try_wait().ok().flatten().is_none() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn node(lab: &Lab, i: usize) -> FleetNode {
    let n = i + 1;
    let last = u8::try_from(10 + i).expect("a node address in the /24");
    FleetNode {
        name: format!("fleet-node-{n:03}"),
        node_ns: format!("{}-n{n:03}", lab.prefix),
        pod_ns: format!("{}-p{n:03}", lab.prefix),
        node_ip: Ipv4Addr::new(198, 18, 1, last),
        pod_ip: Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 64, 0)) + 4 * i as u32 + 2),
    }
}

/// One `ip -batch` per namespace, reporting the failing line.
fn ip_batch(ns: &str, script: &str) {
    let script: String = script.lines().map(|l| l.trim().to_owned() + "\n").collect();
    let out = run(cmd("ip", &["-n", ns, "-batch", "-"]), Some(&script));
    check(&out, &format!("ip -n {ns} -batch:\n{script}"), Host::VnetGw);
}

fn etc_dir(ns: &str) -> PathBuf {
    Path::new("/etc/netns").join(ns)
}

/// Whether `host`, the last part of a namespace's name, is a fleet node's (`nNNN`) or pod's
/// (`pNNN`): the lab's sweep removes those of runs that were killed, as it does its own.
pub(super) fn is_fleet_host(host: &str) -> bool {
    host.len() == 4
        && (host.starts_with('n') || host.starts_with('p'))
        && host[1..].bytes().all(|b| b.is_ascii_digit())
}

fn cmd(program: &str, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args);
    c
}
