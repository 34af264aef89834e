//! Live config reload in the lab: probes added, changed and removed without a restart, a bad
//! config rejected while the last good one keeps running, and flap damping holding a check
//! green through a single failed round.

mod lab;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use lab::{Host, Lab, ONPREM_IP};
use support::{check, metric, write_config, Agent, PORT};

fn config(probes: &str) -> String {
    format!("netns: {{pod: {{}}}}\ndefaults: {{interval: 1s, timeout: 500ms}}\nprobes:\n{probes}")
}

fn tcp(name: &str, port: u16) -> String {
    format!("  - {{name: {name}, tcp: {{target: \"{ONPREM_IP}:{port}\"}}}}\n")
}

/// Swaps the config the way the kubelet updates a ConfigMap volume: the file is a symlink
/// through `..data` to a timestamped directory, and `..data` is replaced atomically.
fn publish(lab: &Lab, version: u32, text: &str) {
    let root = lab.tmpdir().join("configmap");
    let dir = root.join(format!("..v{version}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.yaml"), text).unwrap();
    let staged = root.join("..data_tmp");
    let _ = std::fs::remove_file(&staged);
    std::os::unix::fs::symlink(format!("..v{version}"), &staged).unwrap();
    std::fs::rename(&staged, root.join("..data")).unwrap();
    let link = root.join("config.yaml");
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink("..data/config.yaml", &link).unwrap();
    }
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn probes_change_without_a_restart_and_bad_configs_are_kept_out() {
    let Some(lab) = Lab::new("reload") else {
        return;
    };
    for port in [389, 636] {
        lab.serve_tcp(Host::Onprem, SocketAddr::from((ONPREM_IP, port)));
    }
    publish(&lab, 1, &config(&(tcp("ldap", 389) + &tcp("legacy", 636))));
    let path = lab.tmpdir().join("configmap/config.yaml");
    let listen = format!("{}:{PORT}", lab::POD_IP);
    let agent = Agent::start_args(
        &lab,
        &[
            "agent",
            "--config",
            path.to_str().unwrap(),
            "--listen",
            &listen,
        ],
        &[],
    );
    agent.wait_ready();
    lab.wait_until("both checks green", Duration::from_secs(10), || {
        agent.healthz().0 == 200
    });
    let pid = lab.pid(agent.handle);

    // Remove `legacy`, add `kerberos`, point `ldap` at a closed port.
    publish(&lab, 2, &config(&(tcp("ldap", 9) + &tcp("kerberos", 389))));
    agent.wait_check("ldap", "pod", "refused", Duration::from_secs(10));
    agent.wait_check("kerberos", "pod", "success", Duration::from_secs(10));
    let metrics = agent.metrics();
    assert!(
        !metrics.contains(r#"probe="legacy""#),
        "removed probe's series remain:\n{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "hybridprobe_probe_success",
            &[("probe", "kerberos")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&metrics, "hybridprobe_config_last_reload_successful", &[]),
        Some(1.0)
    );
    let (_, verdict) = agent.healthz_json();
    let probes: Vec<&str> = verdict["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["probe"].as_str().unwrap())
        .collect();
    assert_eq!(probes, vec!["ldap", "kerberos"], "{verdict}");
    assert_eq!(lab.pid(agent.handle), pid, "no restart");

    // A bad config is rejected; the running one carries on and /healthz says why.
    publish(
        &lab,
        3,
        &config("  - {name: broken, tcp: {target: \"198.19.10.300:80\"}}\n"),
    );
    lab.wait_until("the rejection", Duration::from_secs(10), || {
        metric(
            &agent.metrics(),
            "hybridprobe_config_last_reload_successful",
            &[],
        ) == Some(0.0)
    });
    let (code, verdict) = agent.healthz_json();
    assert_eq!(code, 503);
    let diagnosis = &verdict["diagnoses"][0];
    assert_eq!(diagnosis["code"], "config_reload_failed", "{verdict}");
    assert!(
        diagnosis["summary"]
            .as_str()
            .unwrap()
            .contains(r#"probes[0].tcp.target: "198.19.10.300:80" is not a valid address"#),
        "{diagnosis}"
    );
    assert_eq!(
        check(&verdict, "kerberos", "pod")["ok"],
        true,
        "the last good config runs on"
    );
    let (_, text) = agent.healthz();
    assert!(text.contains("diagnosis config_reload_failed"), "{text}");

    // SIGHUP makes the agent read the file again although it did not change, which the poller
    // never does: the bad config is rejected once more. It must never end the process.
    let rejections = || lab.logs(agent.handle).matches(REJECTED).count();
    let before = rejections();
    assert!(before >= 1, "{}", lab.logs(agent.handle));
    hang_up(&lab, pid);
    lab.wait_until(
        "SIGHUP to reject the file again",
        Duration::from_secs(5),
        || rejections() > before,
    );
    assert_eq!(agent.get("/livez").0, 200);

    // Fixing the file clears the error.
    publish(&lab, 4, &config(&tcp("kerberos", 389)));
    lab.wait_until("the fix to load", Duration::from_secs(10), || {
        agent.healthz().0 == 200
    });
    let metrics = agent.metrics();
    assert_eq!(
        metric(&metrics, "hybridprobe_config_last_reload_successful", &[]),
        Some(1.0)
    );
    assert!(!metrics.contains(r#"probe="ldap""#), "{metrics}");

    // And SIGHUP with a good, unchanged file loads it again: the time of the last successful
    // reload moves, though nothing else does.
    let reloaded_at =
        || metric(&agent.metrics(), RELOADED_AT, &[]).unwrap_or_else(|| panic!("no {RELOADED_AT}"));
    let before = reloaded_at();
    hang_up(&lab, pid);
    lab.wait_until("SIGHUP to reload the file", Duration::from_secs(5), || {
        reloaded_at() > before
    });
    assert_eq!(agent.healthz().0, 200);
    assert_eq!(lab.pid(agent.handle), pid, "no restart");
    assert_eq!(
        lab.try_status(agent.handle),
        None,
        "{}",
        lab.logs(agent.handle)
    );
}

/// What the agent logs each time it rejects a config.
const REJECTED: &str = "config rejected; the last good config keeps running";
const RELOADED_AT: &str = "hybridprobe_config_last_reload_success_timestamp_seconds";

fn hang_up(lab: &Lab, pid: u32) {
    lab.must(Host::Pod, "kill", &["-HUP", &pid.to_string()]);
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn flap_damping_keeps_one_lost_round_from_turning_the_node_red() {
    let Some(lab) = Lab::new("flap") else { return };
    lab.serve_tcp(Host::Onprem, SocketAddr::from((ONPREM_IP, 389)));
    let text = format!(
        "netns: {{pod: {{}}}}\ndefaults: {{interval: 1s, timeout: 400ms, fail_after: 3, recover_after: 2}}\nprobes:\n{}",
        tcp("ldap", 389)
    );
    let path = write_config(&lab, "flap.yaml", &text);
    let listen = format!("{}:{PORT}", lab::POD_IP);
    let agent = Agent::start_args(
        &lab,
        &["agent", "--config", &path, "--listen", &listen],
        &[],
    );
    agent.wait_check("ldap", "pod", "success", Duration::from_secs(10));

    // One or two failed rounds: the last result says timeout, the check stays ok.
    lab.tunnel_drop(true);
    agent.wait_check("ldap", "pod", "timeout", Duration::from_secs(5));
    let (code, verdict) = agent.healthz_json();
    lab.tunnel_drop(false);
    assert_eq!(code, 200, "{verdict}");
    assert_eq!(check(&verdict, "ldap", "pod")["ok"], true);
    agent.wait_check("ldap", "pod", "success", Duration::from_secs(5));
    let metrics = agent.metrics();
    let labels = [("probe", "ldap")];
    assert_eq!(
        metric(&metrics, "hybridprobe_probe_state_changes_total", &labels),
        Some(0.0)
    );

    // A real outage: red after three rounds, green after two, one outage observed.
    lab.tunnel_drop(true);
    lab.wait_until("the check to fail", Duration::from_secs(10), || {
        agent.healthz().0 == 503
    });
    lab.tunnel_drop(false);
    lab.wait_until("the check to recover", Duration::from_secs(10), || {
        agent.healthz().0 == 200
    });
    let metrics = agent.metrics();
    assert_eq!(
        metric(&metrics, "hybridprobe_probe_state_changes_total", &labels),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &metrics,
            "hybridprobe_outage_duration_seconds_count",
            &labels
        ),
        Some(1.0)
    );
}
