//! The command line without a network: help, validate, and config errors with exit codes.

// For `support`'s helpers: nothing here starts the lab.
mod lab;
mod support;

use std::process::{Command, Output};

use support::{assert_success, BIN};

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
    let stdout = assert_success(&run(&[
        "validate",
        "--config",
        "deploy/examples/onprem.yaml",
    ]));
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

/// The entries of a help section (`Commands:`, `Options:`), one string each: an entry starts on
/// a line indented less than the descriptions (which clap indents by ten) and takes in the
/// description lines under it.
fn help_entries(help: &str, section: &str) -> Vec<String> {
    let mut entries: Vec<String> = Vec::new();
    let body = help
        .lines()
        .skip_while(|l| *l != section)
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '));
    for line in body {
        let indent = line.len() - line.trim_start().len();
        match entries.last_mut() {
            Some(entry) if line.trim().is_empty() || indent >= 10 => {
                entry.push(' ');
                entry.push_str(line.trim());
            }
            _ => entries.push(line.trim().to_owned()),
        }
    }
    assert!(!entries.is_empty(), "no {section} section in:\n{help}");
    entries
}

fn help(args: &[&str]) -> String {
    let out = run(args);
    assert_eq!(out.status.code(), Some(0), "{args:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Each subcommand and a phrase of its own description, as `--help` lists them.
const COMMANDS: [(&str, &str); 6] = [
    ("agent", "probe on schedule and serve /metrics"),
    ("check", "Run every probe once, print a table"),
    ("validate", "Parse and check a config file"),
    ("reflect", "Run the on-prem reflector"),
    ("smoke", "Ask every agent behind a name"),
    ("node-condition", "node-problem-detector's custom plugin"),
];

/// Each subcommand's options and the environment variable that can set them instead.
const ENV_VARS: [(&str, &[(&str, &str)]); 6] = [
    (
        "agent",
        &[
            ("--config", "HYBRIDPROBE_CONFIG"),
            ("--host-netns", "HYBRIDPROBE_HOST_NETNS"),
            ("--host-resolv-conf", "HYBRIDPROBE_HOST_RESOLV_CONF"),
            ("--node", "HYBRIDPROBE_NODE"),
            ("--listen", "HYBRIDPROBE_LISTEN"),
        ],
    ),
    (
        "check",
        &[
            ("--config", "HYBRIDPROBE_CONFIG"),
            ("--host-netns", "HYBRIDPROBE_HOST_NETNS"),
            ("--host-resolv-conf", "HYBRIDPROBE_HOST_RESOLV_CONF"),
            ("--node", "HYBRIDPROBE_NODE"),
            ("--format", "HYBRIDPROBE_FORMAT"),
            ("--color", "HYBRIDPROBE_COLOR"),
            ("--explain", "HYBRIDPROBE_EXPLAIN"),
        ],
    ),
    ("validate", &[("--config", "HYBRIDPROBE_CONFIG")]),
    (
        "reflect",
        &[
            ("--listen", "HYBRIDPROBE_REFLECT_LISTEN"),
            ("--http", "HYBRIDPROBE_REFLECT_HTTP"),
            ("--allow", "HYBRIDPROBE_REFLECT_ALLOW"),
            ("--rate", "HYBRIDPROBE_REFLECT_RATE"),
            ("--burst", "HYBRIDPROBE_REFLECT_BURST"),
        ],
    ),
    (
        "smoke",
        &[
            ("--agents", "HYBRIDPROBE_AGENTS"),
            ("--expect-nodes", "HYBRIDPROBE_EXPECT_NODES"),
            ("--timeout", "HYBRIDPROBE_TIMEOUT"),
        ],
    ),
    (
        "node-condition",
        &[
            ("--agent", "HYBRIDPROBE_AGENT_URL"),
            ("--timeout", "HYBRIDPROBE_TIMEOUT"),
        ],
    ),
];

/// Options every command takes.
const GLOBAL_ENV_VARS: [(&str, &str); 2] = [
    ("--log", "HYBRIDPROBE_LOG"),
    ("--log-format", "HYBRIDPROBE_LOG_FORMAT"),
];

/// The help entry of `flag`: the one whose leading flags (`-c, --config`) include it.
fn option_entry<'e>(entries: &'e [String], flag: &str, help: &str) -> &'e str {
    entries
        .iter()
        .find(|e| {
            e.split_whitespace()
                .take_while(|w| w.starts_with('-'))
                .any(|w| w.trim_end_matches(',') == flag)
        })
        .unwrap_or_else(|| panic!("no {flag} entry in:\n{help}"))
}

#[test]
fn help_explains_each_command_and_its_env_vars() {
    let top = help(&["--help"]);
    let commands = help_entries(&top, "Commands:");
    for (command, says) in COMMANDS {
        let entry = commands
            .iter()
            .find(|e| e.split_whitespace().next() == Some(command))
            .unwrap_or_else(|| panic!("no line for {command} in the command list:\n{top}"));
        let description = entry[command.len()..].trim_start();
        assert!(
            description.contains(says),
            "{command}'s line does not say {says:?}: {entry}"
        );
    }
    let options = help_entries(&top, "Options:");
    for (flag, var) in GLOBAL_ENV_VARS {
        let entry = option_entry(&options, flag, &top);
        assert!(entry.contains(&format!("[env: {var}=]")), "{entry}");
    }

    assert_eq!(ENV_VARS.map(|(c, _)| c), COMMANDS.map(|(c, _)| c));
    for (command, vars) in ENV_VARS {
        let text = help(&[command, "--help"]);
        let options = help_entries(&text, "Options:");
        for (flag, var) in vars.iter().chain(&GLOBAL_ENV_VARS) {
            let entry = option_entry(&options, flag, &text);
            assert!(
                entry.contains(&format!("[env: {var}=]")),
                "{command} {flag} does not say it is also read from {var}: {entry}"
            );
        }
    }
    let agent = help(&["agent", "--help"]);
    let config = option_entry(&help_entries(&agent, "Options:"), "--config", &agent).to_owned();
    assert!(config.contains("built-in profile"), "{config}");
}

#[test]
fn a_bad_flag_value_is_a_usage_error() {
    let out = run(&["check", "--format", "yaml"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a bad flag value is a usage error"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid value 'yaml' for '--format <FORMAT>'"),
        "{stderr}"
    );
    assert!(
        stderr.contains("[possible values: table, json]"),
        "{stderr}"
    );
}

#[test]
fn config_is_also_taken_from_the_environment() {
    let out = Command::new(BIN)
        .args(["validate"])
        .env("HYBRIDPROBE_CONFIG", "deploy/examples/onprem.yaml")
        .output()
        .unwrap();
    assert_success(&out);
}

/// A config whose only namespace cannot be entered: `check` fails every check at once without
/// sending a packet, which is all the output tests below need.
/// Written once: tests run in parallel, and rewriting the file could hand one a torn read.
fn unreachable_config() -> &'static std::path::Path {
    static PATH: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        temp_config(
            "no-netns.yaml",
            "netns: {host: {path: /nonexistent/hybridprobe-netns}}\nprobes:\n  - {name: dc1-ldap, tcp: {target: '198.19.10.1:389'}}\n",
        )
    })
}

fn check_output(extra: &[&str], envs: &[(&str, &str)]) -> Output {
    let config = unreachable_config();
    let mut args = vec![
        "check",
        "--node",
        "cli-node",
        "--config",
        config.to_str().unwrap(),
    ];
    args.extend(extra);
    let out = Command::new(BIN)
        .args(args)
        .env_remove("NO_COLOR")
        .env_remove("HYBRIDPROBE_COLOR")
        .envs(envs.iter().copied())
        .output()
        .expect("run hybridprobe");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

const ESC: char = '\x1b';

/// What two runs of the same check share: the round's duration and the "(since …)" timestamp
/// differ from run to run (and the duration sets the column's width), so both are left out.
fn run_independent(table: &str) -> String {
    let is_duration = |word: &str| {
        let number = word.strip_suffix("ms").or_else(|| word.strip_suffix('s'));
        number.is_some_and(|n| n.parse::<f64>().is_ok())
    };
    table
        .lines()
        .map(|line| {
            let line = line.split(" (since ").next().unwrap_or(line);
            line.split_whitespace()
                .filter(|word| !is_duration(word))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn check_table_is_plain_when_piped_and_colored_on_request() {
    let piped = String::from_utf8(check_output(&[], &[]).stdout).unwrap();
    assert!(!piped.contains(ESC), "{piped:?}");
    assert!(
        piped.starts_with("FAIL on cli-node: 1 of 1 checks fail\n"),
        "{piped}"
    );
    let never = String::from_utf8(check_output(&["--color", "never"], &[]).stdout).unwrap();
    assert_eq!(run_independent(&never), run_independent(&piped));

    let always = String::from_utf8(check_output(&["--color", "always"], &[]).stdout).unwrap();
    assert!(
        always.starts_with("\x1b[1;31mFAIL\x1b[0m \x1b[1mon cli-node: 1 of 1 checks fail\x1b[0m\n"),
        "{always:?}"
    );
    assert!(
        always.contains("\n\x1b[1;31mFAIL\x1b[0m  dc1-ldap"),
        "{always:?}"
    );
    let from_env = check_output(&[], &[("HYBRIDPROBE_COLOR", "always"), ("NO_COLOR", "1")]);
    assert_eq!(
        run_independent(&String::from_utf8(from_env.stdout).unwrap()),
        run_independent(&always),
        "an explicit choice beats NO_COLOR"
    );
}

/// Runs `check` on a pseudo-terminal with `script`, stdout and stderr both on it.
fn check_on_a_terminal(envs: &[(&str, &str)]) -> String {
    let config = unreachable_config();
    let command = format!(
        "'{BIN}' check --node cli-node --config '{}'",
        config.display()
    );
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_remove("NO_COLOR")
        .env_remove("HYBRIDPROBE_COLOR")
        .env("TERM", "xterm-256color")
        .envs(envs.iter().copied())
        .output()
        .expect("run script(1) from bsdutils");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn check_colors_a_terminal_unless_no_color_is_set() {
    let colored = check_on_a_terminal(&[]);
    assert!(colored.contains("\x1b[1;31mFAIL\x1b[0m"), "{colored:?}");
    let plain = check_on_a_terminal(&[("NO_COLOR", "1")]);
    assert!(
        plain.contains("FAIL on cli-node: 1 of 1 checks fail"),
        "{plain:?}"
    );
    assert!(
        !plain.contains(ESC),
        "NO_COLOR covers the logs too: {plain:?}"
    );
}

#[test]
fn log_format_json_writes_one_object_per_line_and_text_stays_plain_when_piped() {
    let json = check_output(&["--log-format", "json"], &[]);
    let stderr = String::from_utf8(json.stderr).unwrap();
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let unavailable = lines
        .iter()
        .find(|l| l["fields"]["message"] == "namespace unavailable")
        .unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(unavailable["level"], "WARN");
    assert_eq!(unavailable["fields"]["netns"], "host");
    assert!(unavailable["timestamp"].is_string(), "{unavailable}");

    let text = check_output(&["--log-format", "text"], &[]);
    let stderr = String::from_utf8(text.stderr).unwrap();
    assert!(stderr.contains(" WARN "), "{stderr}");
    assert!(
        stderr.contains("namespace unavailable netns=host"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(ESC),
        "no escape codes in a log file: {stderr:?}"
    );
}
