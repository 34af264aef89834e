//! Self-test of the lab's fleet: extra nodes and their pods reach on-prem through the one
//! tunnel beside the lab's own pod, a drop for some nodes stops only theirs, and teardown
//! removes every fleet namespace.

mod lab;

use lab::fleet::Fleet;
use lab::{Host, Lab, ONPREM_IP};

/// Whether one echo from namespace `ns` comes back from the on-prem host.
fn reaches_onprem(fleet: &Fleet, ns: &str) -> bool {
    let ip = ONPREM_IP.to_string();
    let out = fleet.exec(ns, "ping", &["-n", "-c1", "-W1", &ip]);
    out.status.success()
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn fleet_nodes_share_the_tunnel_and_fail_alone() {
    let Some(lab) = Lab::new("fleet-selftest") else {
        return;
    };
    let names: Vec<String>;
    {
        let fleet = Fleet::new(&lab, 3);
        names = fleet
            .nodes
            .iter()
            .flat_map(|n| [n.node_ns.clone(), n.pod_ns.clone()])
            .collect();
        let all = |fleet: &Fleet| -> Vec<bool> {
            fleet
                .nodes
                .iter()
                .flat_map(|n| [&n.node_ns, &n.pod_ns])
                .map(|ns| reaches_onprem(fleet, ns))
                .collect()
        };
        assert_eq!(all(&fleet), [true; 6], "every fleet node and pod");
        let ip = ONPREM_IP.to_string();
        let own = lab.exec(Host::Pod, "ping", &["-n", "-c1", "-W1", &ip]);
        assert!(own.status.success(), "the lab's own pod beside the fleet");

        fleet.tunnel_drop_for(&[1]);
        assert_eq!(
            all(&fleet),
            [true, true, false, false, true, true],
            "only node 2 and its pod cut off"
        );
        fleet.tunnel_drop_for(&[]);
        assert_eq!(all(&fleet), [true; 6], "all back");
    }
    for name in &names {
        let file = std::path::Path::new("/var/run/netns").join(name);
        assert!(!file.exists(), "{name} left behind");
    }
}
