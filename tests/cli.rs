//! The command line without a network: help, validate, and config errors with exit codes.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_hybridprobe");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("HYBRIDPROBE_CONFIG")
        .output()
        .expect("run hybridprobe")
}

fn temp_config(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hp-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn example_config_validates() {
    let out = run(&["validate", "--config", "deploy/examples/onprem.yaml"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ok (3 probes, 6 checks)"), "{stdout}");
}

#[test]
fn validate_names_every_problem_and_exits_2() {
    let path = temp_config(
        "bad.yaml",
        "probes:\n  - {name: a, tcp: {target: '198.19.10.300:80'}}\n",
    );
    let out = run(&["validate", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"probes[0].tcp.target: "198.19.10.300:80" is not a valid address"#),
        "{stderr}"
    );

    let path = temp_config(
        "semantic.yaml",
        "probes:\n  - {name: a, interval: 1s, timeout: 5s, tcp: {target: 'x:1'}}\n  - {name: a, tcp: {target: 'x:1'}}\n",
    );
    let out = run(&["validate", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("probes[0].timeout: 5s is longer than the interval 1s"),
        "{stderr}"
    );
    assert!(
        stderr.contains(r#"probes[1].name: "a" is used by an earlier probe"#),
        "{stderr}"
    );
}

#[test]
fn a_missing_config_file_is_a_usage_error_for_every_command() {
    for command in ["validate", "check", "agent"] {
        let out = run(&[command, "--config", "/nonexistent/hybridprobe.yaml"]);
        assert_eq!(out.status.code(), Some(2), "{command}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("cannot read config /nonexistent/hybridprobe.yaml"),
            "{stderr}"
        );
    }
}

#[test]
fn help_explains_each_command_and_its_env_vars() {
    let out = run(&["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["agent", "check", "validate"] {
        assert!(help.contains(word), "{help}");
    }
    let out = run(&["agent", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for word in [
        "--config",
        "HYBRIDPROBE_CONFIG",
        "--listen",
        "HYBRIDPROBE_LISTEN",
        "built-in profile",
    ] {
        assert!(help.contains(word), "agent --help lacks {word}:\n{help}");
    }
    let out = run(&["check", "--format", "yaml"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a bad flag value is a usage error"
    );
}

#[test]
fn config_is_also_taken_from_the_environment() {
    let out = Command::new(BIN)
        .args(["validate"])
        .env("HYBRIDPROBE_CONFIG", "deploy/examples/onprem.yaml")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
