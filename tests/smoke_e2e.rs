//! `hybridprobe smoke` as the rendered Job in deploy/smoke runs it: several agents behind one
//! name (resolved through the lab node namespace's own /etc/hosts), one green, one red, one
//! unreachable.

mod deploy;
mod lab;
mod support;

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use deploy::{EtcOverlay, Manifests, PodRun};
use lab::{Host, Lab, ONPREM_IP, POD_IP};
use support::{write_config, BIN, PORT};

const RED_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 11);
/// An address that answers, with no agent behind it.
const DOWN_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 12);
const CLOSED_PORT: u16 = 636;

fn agent_config(extra_probe: &str) -> String {
    format!(
        "netns: {{pod: {{}}}}\ndefaults: {{interval: 1s, timeout: 800ms}}\nprobes:\n  \
         - {{name: dc1-ldap, tcp: {{target: \"{ONPREM_IP}:389\"}}}}\n{extra_probe}"
    )
}

fn start_agent(lab: &Lab, node: &str, ip: Ipv4Addr, config: &str) {
    let path = write_config(lab, &format!("{node}.yaml"), config);
    let listen = format!("{ip}:{PORT}");
    lab.spawn(
        Host::Pod,
        BIN,
        &["agent", "--config", &path, "--listen", &listen],
        &[("HYBRIDPROBE_NODE", node)],
    );
    lab.wait_until(
        &format!("{node}'s first round"),
        Duration::from_secs(15),
        || {
            lab.http_get(Host::Pod, &format!("http://{listen}/readyz"), false)
                .0
                == 200
        },
    );
}

fn hosts(name: &str, ips: &[Ipv4Addr]) -> String {
    let mut text = "127.0.0.1 localhost\n".to_owned();
    for ip in ips {
        text.push_str(&format!("{ip} {name}\n"));
    }
    text
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn smoke_job_reports_each_agent_and_fails_on_red_or_missing() {
    let Some(lab) = Lab::new("smoke-job") else {
        return;
    };
    lab.serve_tcp(Host::Onprem, SocketAddr::from((ONPREM_IP, 389)));
    for ip in [RED_IP, DOWN_IP] {
        lab.must(
            Host::Pod,
            "ip",
            &["addr", "add", &format!("{ip}/24"), "dev", "eth0"],
        );
    }
    start_agent(&lab, "lab-green", POD_IP, &agent_config(""));
    let red = agent_config(&format!(
        "  - {{name: closed, tcp: {{target: \"{ONPREM_IP}:{CLOSED_PORT}\"}}}}\n"
    ));
    start_agent(&lab, "lab-red", RED_IP, &red);

    let job = Manifests::file("deploy/smoke/job.yaml");
    let mut run = PodRun::prepare(&lab, &job, job.pod_spec("Job"));
    let (name, _port) = run.arg("--agents").rsplit_once(':').expect("NAME:PORT");
    let name = name.to_owned();
    // The lab node namespace resolves the Service name from files only: no query leaves the lab.
    let etc = EtcOverlay::new(&lab, Host::Node);
    etc.write("nsswitch.conf", "hosts: files\n");
    etc.write("hosts", &hosts(&name, &[POD_IP, RED_IP, DOWN_IP]));
    run.set_env("HYBRIDPROBE_EXPECT_NODES", "3");

    let out = run.run(&lab, Host::Node);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    let cells = |line: &str| {
        line.split_whitespace()
            .take(3)
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        cells(lines[0]),
        ["ok", "lab-green", &format!("{POD_IP}:{PORT}")],
        "{stdout}"
    );
    assert!(lines[0].ends_with("all 1 checks pass"), "{stdout}");
    assert_eq!(
        cells(lines[1]),
        ["FAIL", "lab-red", &format!("{RED_IP}:{PORT}")],
        "{stdout}"
    );
    assert!(
        lines[1].ends_with("1 of 2 checks fail: closed/pod refused"),
        "{stdout}"
    );
    assert_eq!(
        cells(lines[2]),
        ["DOWN", "-", &format!("{DOWN_IP}:{PORT}")],
        "{stdout}"
    );
    assert!(lines[2].contains("connect: Connection refused"), "{stdout}");
    assert_eq!(
        lines[3],
        "smoke FAIL: 2 of 3 agents answered (3 expected), 1 green, 1 red, 1 unreachable"
    );

    explained_and_junit(&lab, &mut run);

    // The red agent's port opens and the dead address leaves the Service: green, but only if
    // no more agents were expected than answer.
    lab.serve_tcp(Host::Onprem, SocketAddr::from((ONPREM_IP, CLOSED_PORT)));
    lab.wait_until("lab-red to turn green", Duration::from_secs(10), || {
        lab.http_get(Host::Pod, &format!("http://{RED_IP}:{PORT}/healthz"), false)
            .0
            == 200
    });
    etc.write("hosts", &hosts(&name, &[POD_IP, RED_IP]));
    let out = run.run(&lab, Host::Node);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "3 expected, 2 answer:\n{stdout}"
    );
    assert!(
        stdout.ends_with(
            "smoke FAIL: 2 of 2 agents answered (3 expected), 2 green, 0 red, 0 unreachable\n"
        ),
        "{stdout}"
    );
    run.set_env("HYBRIDPROBE_EXPECT_NODES", "2");
    let out = run.run(&lab, Host::Node);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.ends_with(
            "smoke ok: 2 of 2 agents answered (2 expected), 2 green, 0 red, 0 unreachable\n"
        ),
        "{stdout}"
    );

    // A name that does not resolve fails the check and says so.
    let out = run.run_with(
        &lab,
        Host::Node,
        &["smoke", "--agents", "nosuch.lab:9739"],
        &run.privileges,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("smoke FAIL: cannot resolve nosuch.lab:9739"),
        "{stderr}"
    );
}

/// The same run, with `--explain` and as JUnit: the red agent says why, in both.
fn explained_and_junit(lab: &Lab, run: &mut PodRun) {
    run.set_env("HYBRIDPROBE_EXPLAIN", "true");
    let out = run.run(lab, Host::Node);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit code as without --explain:\n{stdout}"
    );
    let why = stdout
        .split_once(&format!("\nwhy lab-red ({RED_IP}:{PORT}) is red:\n"))
        .map(|(_, why)| why)
        .unwrap_or_else(|| panic!("no explanation of lab-red:\n{stdout}"));
    let lines: Vec<&str> = why.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("  check closed/pod refused: "))
        .unwrap_or_else(|| panic!("the failing check is not named:\n{stdout}"));
    assert!(
        lines[..at]
            .iter()
            .any(|l| l.starts_with("  diagnosis ") || *l == "  no diagnosis"),
        "the diagnoses come first:\n{stdout}"
    );
    assert!(
        lines[at + 1] == "    no evidence captured"
            || lines[at + 1].starts_with("    evidence taken "),
        "{stdout}"
    );
    assert!(
        !stdout.contains("why lab-green"),
        "only red agents explain:\n{stdout}"
    );
    assert!(
        stdout.ends_with(
            "\n\nsmoke FAIL: 2 of 3 agents answered (3 expected), 1 green, 1 red, 1 unreachable\n"
        ),
        "{stdout}"
    );

    run.set_env("HYBRIDPROBE_SMOKE_FORMAT", "junit");
    let out = run.run(lab, Host::Node);
    assert_eq!(out.status.code(), Some(1), "exit code as in text");
    let cases = junit_cases(&out.stdout);
    let expected = [
        (format!("lab-green ({POD_IP}:{PORT})"), None),
        (format!("lab-red ({RED_IP}:{PORT})"), Some("red".to_owned())),
        (format!("{DOWN_IP}:{PORT}"), Some("unreachable".to_owned())),
        (
            "at least 3 agents answer".to_owned(),
            Some("too_few".to_owned()),
        ),
    ];
    let names: Vec<(String, Option<String>)> = cases
        .iter()
        .map(|(n, f, _)| (n.clone(), f.clone()))
        .collect();
    assert_eq!(names, expected);
    assert!(
        cases[1].2.contains("check closed/pod refused: "),
        "the red case's failure says why: {:?}",
        cases[1].2
    );
    run.set_env("HYBRIDPROBE_SMOKE_FORMAT", "text");
    run.set_env("HYBRIDPROBE_EXPLAIN", "false");
}

/// Each test case of a JUnit report, read by Python's XML parser: its name, its failure's type
/// and its failure's text. The parser also checks the report is well-formed and that the suite's
/// counts match its cases.
fn junit_cases(xml: &[u8]) -> Vec<(String, Option<String>, String)> {
    const READ: &str = r#"
import json, sys, xml.etree.ElementTree as ET
root = ET.fromstring(sys.stdin.buffer.read())
assert root.tag == "testsuites", root.tag
suites = root.findall("testsuite")
assert len(suites) == 1, suites
cases = suites[0].findall("testcase")
failures = [c for c in cases if c.find("failure") is not None]
for element in (root, suites[0]):
    assert int(element.get("tests")) == len(cases), element.attrib
    assert int(element.get("failures")) == len(failures), element.attrib
out = []
for c in cases:
    f = c.find("failure")
    out.append([c.get("name"), None if f is None else f.get("type"), "" if f is None else (f.text or "")])
print(json.dumps(out))
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", READ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");

    child.stdin.take().unwrap().write_all(xml).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "not a valid JUnit report: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(xml)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// An agent that accepts connections but never answers is reported within the timeout.
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn smoke_gives_up_on_a_silent_agent_after_the_timeout() {
    let Some(lab) = Lab::new("smoke-silent") else {
        return;
    };
    // A listener that never accepts: the kernel completes the handshake, then nothing is said.
    let _silent = lab.tcp_listen(Host::Pod, SocketAddr::from((POD_IP, PORT)));
    let target = format!("{POD_IP}:{PORT}");
    let out = lab.exec(
        Host::Node,
        BIN,
        &[
            "smoke",
            "--agents",
            &target,
            "--timeout",
            "1s",
            "--expect-nodes",
            "1",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.starts_with(&format!("DOWN  -  {target}  no answer within 1s\n")),
        "{stdout}"
    );
}
