//! `hybridprobe node-condition` as node-problem-detector runs it: installed by the init
//! container's own command from NPD's DaemonSet patch, run with the shipped plugin monitor
//! config's path and arguments, the agent's URL from the environment, from another network
//! namespace than the agent's (the lab's node), against a real agent: down, green, red with a
//! dead tunnel, and silent.

mod deploy;
mod lab;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use deploy::Manifests;
use lab::{Host, Lab, ONPREM_IP, POD_IP};
use serde_json::Value;
use support::{codes, pod_and_host_config, Agent, Resolv, BIN, PORT};

/// NPD's default `max_output_length`, which the shipped config keeps.
const NPD_MAX_OUTPUT: usize = 80;

/// The exit code and the output of one run, as NPD's plugin runner would see them.
struct Answer {
    code: Option<i32>,
    stdout: String,
}

/// Runs the plugin the way the shipped monitor config says, in the lab's node namespace, with
/// the environment NPD's DaemonSet patch gives it; `plugin` is where the config's path lies here.
fn run_plugin(lab: &Lab, monitor: &Value, plugin: &str) -> Answer {
    let rule = &monitor["rules"][0];
    let args: Vec<&str> = rule["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("a string argument"))
        .collect();
    let script = format!(
        "HYBRIDPROBE_AGENT_URL=http://{POD_IP}:{PORT} exec {plugin} {}",
        args.join(" ")
    );
    let out = lab.sh(Host::Node, &script);
    Answer {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

fn assert_npd_message(answer: &Answer) {
    let line = answer.stdout.trim_end_matches('\n');
    assert!(!line.contains('\n'), "one line: {:?}", answer.stdout);
    assert!(line.len() <= NPD_MAX_OUTPUT, "{} bytes: {line}", line.len());
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn node_condition_answers_npd_from_a_live_agent() {
    let Some(lab) = Lab::new("npd-plugin") else {
        return;
    };
    let monitor: Value = serde_json::from_str(
        &std::fs::read_to_string(deploy::repo_path(
            "deploy/components/node-problem-detector/hybridprobe-monitor.json",
        ))
        .unwrap(),
    )
    .expect("the plugin monitor config is JSON");
    let rule = &monitor["rules"][0];
    assert_eq!(rule["condition"], "HybridConnectivityProblem");
    assert_eq!(monitor["pluginConfig"]["max_output_length"], NPD_MAX_OUTPUT);
    assert!(
        deploy::str_of(&rule["path"]).ends_with("/hybridprobe"),
        "{rule}"
    );
    // NPD kills a plugin at the rule's timeout and reports that as unknown without a message:
    // the plugin's own (5 s by default) must end first, saying why.
    let rule_timeout = humantime::parse_duration(deploy::str_of(&rule["timeout"])).unwrap();
    assert!(rule_timeout > Duration::from_secs(5), "{rule}");
    // The DaemonSet patch hands the plugin the agent's URL; it must be where the node-local
    // Service answers.
    let patch = Manifests::file("deploy/components/node-problem-detector/npd-daemonset-patch.yaml");
    let env = &patch.one("DaemonSet")["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        env.as_array().is_some_and(
            |env| env.iter().any(|e| e["name"] == "HYBRIDPROBE_AGENT_URL"
                && deploy::str_of(&e["value"]).ends_with(&format!(":{PORT}")))
        ),
        "{env}"
    );

    // The init container's own command puts the binary where the config runs it from: the
    // shared volume's mount path, here a folder of the lab's.
    let spec = &patch.one("DaemonSet")["spec"]["template"]["spec"];
    let init = &spec["initContainers"][0];
    let mount = deploy::str_of(&init["volumeMounts"][0]["mountPath"]);
    let volume = lab.tmpdir().join("npd-plugin-volume");
    std::fs::create_dir_all(&volume).unwrap();
    let here = |path: &str| {
        let rest = path
            .strip_prefix(mount)
            .unwrap_or_else(|| panic!("{path} is not on the volume at {mount}"));
        format!("{}{rest}", volume.display())
    };
    let mut install: Vec<String> = vec![BIN.to_owned()];
    for arg in init["args"].as_array().expect("args") {
        let arg = deploy::str_of(arg);
        install.push(if arg.starts_with(mount) {
            here(arg)
        } else {
            arg.to_owned()
        });
    }
    let out = lab.exec(
        Host::Node,
        &install[0],
        &install[1..].iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(out.status.success(), "{out:?}");
    let plugin = here(deploy::str_of(&rule["path"]));
    assert!(
        std::path::Path::new(&plugin).is_file(),
        "{plugin} not installed"
    );

    // No agent yet: NPD must hear "unknown", never "OK".
    let down = run_plugin(&lab, &monitor, &plugin);
    assert_eq!(down.code, Some(2), "{}", down.stdout);
    assert!(
        down.stdout
            .starts_with(&format!("unknown: http://{POD_IP}:{PORT}: connect: ")),
        "{}",
        down.stdout
    );
    assert_npd_message(&down);

    lab.serve_tcp(Host::Onprem, SocketAddr::from((ONPREM_IP, 389)));
    let config = pod_and_host_config(
        &lab,
        Resolv::Own,
        "{ interval: 1s, timeout: 800ms }",
        &format!(
            "  - name: dc1-ldap\n    tcp: {{ target: \"{ONPREM_IP}:389\" }}\n  \
             - name: dc1-ping\n    icmp: {{ target: {ONPREM_IP}, count: 2 }}\n"
        ),
    );
    let agent = Agent::start(&lab, &config);
    agent.wait_ready();
    lab.wait_until("every check green", Duration::from_secs(15), || {
        agent.healthz().0 == 200
    });
    let green = run_plugin(&lab, &monitor, &plugin);
    assert_eq!(green.code, Some(0), "{}", green.stdout);
    assert_eq!(green.stdout, "ok: all 4 checks pass\n");

    // A dead tunnel: the agent diagnoses it, and the plugin names the code first.
    lab.tunnel_drop(true);
    lab.wait_until(
        "onprem_unreachable diagnosed",
        Duration::from_secs(20),
        || {
            let (_, verdict) = agent.healthz_json();
            codes(&verdict).first().map(String::as_str) == Some("onprem_unreachable")
        },
    );
    let red = run_plugin(&lab, &monitor, &plugin);
    assert_eq!(red.code, Some(1), "{}", red.stdout);
    assert!(
        red.stdout
            .starts_with("onprem_unreachable: no on-prem target answers from pod and host"),
        "{}",
        red.stdout
    );
    assert_npd_message(&red);

    // An agent that does not answer (its port silently dropped): unknown once the plugin's own
    // timeout passes, well before NPD's rule timeout would kill it.
    lab.pod_input_drop(PORT, true);
    let silent = run_plugin(&lab, &monitor, &plugin);
    assert_eq!(silent.code, Some(2), "{}", silent.stdout);
    assert_eq!(
        silent.stdout,
        format!("unknown: http://{POD_IP}:{PORT}: no answer within 5s\n")
    );
    lab.pod_input_drop(PORT, false);

    // The agent gone again: unknown, not the last answer.
    lab.stop(agent.handle);
    let gone = run_plugin(&lab, &monitor, &plugin);
    assert_eq!(gone.code, Some(2), "{}", gone.stdout);
    assert_npd_message(&gone);
}
