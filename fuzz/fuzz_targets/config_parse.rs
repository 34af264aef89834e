//! Fuzzes the config parser with any UTF-8 text, as `validate`, the agent and a reload read a
//! ConfigMap: it must never panic, its errors must render, and a config it accepts must hold the
//! invariants the scheduler and the probes rely on.
#![no_main]

use std::collections::BTreeSet;
use std::time::Instant;

use hybridprobe::config::{Config, MAX_INTERVAL};
use libfuzzer_sys::fuzz_target;

fn env(name: &str) -> Option<String> {
    match name {
        "HOST_IP" => Some("198.18.1.4".into()),
        "POD_IP" => Some("198.18.2.10".into()),
        "NODE_NAME" => Some("aks-nodepool1-0".into()),
        _ => None,
    }
}

fuzz_target!(|text: &str| {
    let config = match Config::parse(text, &env) {
        Ok(config) => config,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    assert!(!config.namespaces.is_empty() && !config.probes.is_empty());
    let configured: BTreeSet<_> = config.namespaces.iter().map(|n| n.id).collect();
    assert_eq!(
        configured.len(),
        config.namespaces.len(),
        "a namespace twice"
    );
    let mut names = BTreeSet::new();
    let now = Instant::now();
    for probe in &config.probes {
        assert!(names.insert(&probe.name), "{:?} twice", probe.name);
        let netns: BTreeSet<_> = probe.netns.iter().collect();
        assert_eq!(
            netns.len(),
            probe.netns.len(),
            "{:?}: a namespace twice",
            probe.name
        );
        assert!(!netns.is_empty() && netns.iter().all(|id| configured.contains(id)));
        assert!(!probe.timeout.is_zero() && probe.timeout <= probe.interval);
        // Deadlines are the clock plus these.
        assert!(probe.interval <= MAX_INTERVAL && now.checked_add(probe.interval).is_some());
        assert!((1..=100).contains(&probe.fail_after) && (1..=100).contains(&probe.recover_after));
        let _ = probe.kind.describe();
    }
});
