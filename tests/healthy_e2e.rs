//! End to end: a long healthy run raises nothing. The base DaemonSet runs its own config (every
//! probe kind, flap damping at its defaults) against the lab's servers for several minutes: no
//! round may fail, no check may change state, no diagnosis may come up, and every check's state
//! over its recent rounds ends `pass`.

mod deploy;
mod lab;
mod support;

use std::time::{Duration, Instant};

use deploy::{configured_checks, ConfigTargets, Manifests, PodRun};
use lab::{Host, Lab, POD_IP};
use serde_json::Value;
use support::{metric, metric_sum};

/// Long enough for 18 rounds of every check at the base config's 10 s interval.
const RUN: Duration = Duration::from_secs(180);
const INTERVAL: Duration = Duration::from_secs(10);
const CONFIG_MAP: &str = "hybridprobe-config";

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn a_healthy_lab_raises_nothing_for_minutes() {
    let Some(lab) = Lab::new("healthy") else {
        return;
    };
    let Some(manifests) = Manifests::render("deploy/base") else {
        return;
    };
    let Some(_targets) = ConfigTargets::start(&lab, "healthy", false) else {
        return;
    };
    let config = manifests.config_map_file(CONFIG_MAP, "config.yaml");
    let checks = configured_checks(&config);
    let run = PodRun::prepare(&lab, &manifests, manifests.pod_spec("DaemonSet"));
    run.spawn(&lab, Host::Pod);
    let port = run.port(&Value::from("http"));
    let url = |path: &str| format!("http://{POD_IP}:{port}{path}");
    lab.wait_until("the agent ready", Duration::from_secs(60), || {
        lab.http_get(Host::Pod, &url("/readyz"), false).0 == 200
    });

    let started = Instant::now();
    let mut looks = 0;
    while started.elapsed() < RUN {
        std::thread::sleep(INTERVAL);
        looks += 1;
        let (code, verdict) = lab.http_get(Host::Pod, &url("/healthz?format=json"), false);
        assert_eq!(code, 200, "after {:?}: {verdict}", started.elapsed());
        let verdict: Value = serde_json::from_str(&verdict).expect("a JSON verdict");
        assert_eq!(verdict["diagnoses"], Value::Array(vec![]), "{verdict}");
        let (_, metrics) = lab.http_get(Host::Pod, &url("/metrics"), false);
        let all = metric_sum(&metrics, "hybridprobe_probe_runs_total", &[]);
        let passed = metric_sum(
            &metrics,
            "hybridprobe_probe_runs_total",
            &[("result", "success")],
        );
        assert_eq!(
            all, passed,
            "a failed round after {looks} looks:\n{metrics}"
        );
        let changes = metric_sum(&metrics, "hybridprobe_probe_state_changes_total", &[]);
        assert_eq!(changes, 0.0, "a state change:\n{metrics}");
        let diagnosed = metric_sum(&metrics, "hybridprobe_diagnosis", &[]);
        assert_eq!(diagnosed, 0.0, "a diagnosis series set:\n{metrics}");
    }

    let (_, metrics) = lab.http_get(Host::Pod, &url("/metrics"), false);
    let least = (RUN.as_secs() / INTERVAL.as_secs() - 2) as f64;
    for (probe, netns) in &checks {
        let labels = [("probe", probe.as_str()), ("netns", netns.as_str())];
        let rounds = metric_sum(&metrics, "hybridprobe_probe_runs_total", &labels);
        assert!(rounds >= least, "{probe}/{netns}: {rounds} rounds");
        let pass = [labels[0], labels[1], ("state", "pass")];
        assert_eq!(
            metric(&metrics, "hybridprobe_probe_state", &pass),
            Some(1.0),
            "{probe}/{netns} state"
        );
    }
}
