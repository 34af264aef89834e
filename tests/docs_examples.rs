//! Every agent-config example in README.md and docs/*.md passes `hybridprobe validate`.
//!
//! The docs are read at run time (every `docs/*.md`, so a new page is covered without touching
//! this file). Each fenced `yaml` block is classified by its top-level content:
//!
//! - a config: it has a `netns`, `defaults` or `probes` key; validated as written;
//! - a list of probes (it starts with `- `): wrapped into `probes:`;
//! - one probe kind's settings (a single key naming a kind, e.g. `dns:`): wrapped into one probe;
//! - not an agent config: it has a key of a Kubernetes object (`apiVersion`, `kind`), a
//!   ConfigMap's `data`, a kustomize `patches` list, or a Prometheus rules file's `groups`,
//!   `rule_files` or `tests`; skipped.
//!
//! Any other yaml block fails the test, so a new kind of example is classified on purpose rather
//! than skipped by accident.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_hybridprobe");

/// The agent-config blocks the docs hold today (README 1, configuration 1, probe-kinds 2): a
/// restructure that hides them from this test (another fence language, a lost file) fails it.
const MIN_CONFIG_BLOCKS: usize = 4;

const CONFIG_KEYS: [&str; 3] = ["netns", "defaults", "probes"];
const PROBE_KINDS: [&str; 10] = [
    "tcp",
    "icmp",
    "source_ip",
    "dns",
    "route",
    "path_mtu",
    "traceroute",
    "http",
    "resolv_conf",
    "conntrack",
];
const FOREIGN_KEYS: [&str; 7] = [
    "apiVersion",
    "kind",
    "data",
    "patches",
    "groups",
    "rule_files",
    "tests",
];

/// The downward-API variables configs may reference (`${HOST_IP}`), with lab addresses. The
/// binary runs with only these in its environment, so the result does not depend on the shell.
const ENV: [(&str, &str); 3] = [
    ("NODE_NAME", "aks-nodepool1-0"),
    ("POD_IP", "198.18.2.10"),
    ("HOST_IP", "198.18.1.4"),
];

struct Block {
    file: String,
    /// 1-based line of the opening fence.
    line: usize,
    text: String,
}

enum Class {
    Config,
    ProbeList,
    KindFragment,
    Foreign,
    Unknown(Vec<String>),
}

fn doc_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("read docs/")
        .map(|entry| entry.expect("read docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    let mut files = vec![root.join("README.md")];
    files.extend(docs);
    files
}

/// The fenced code blocks whose language is `yaml` (or `yml`), with the fence's indentation
/// removed from their lines (fences inside list items are indented).
fn yaml_blocks(file: &str, doc: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut lines = doc.lines().enumerate();
    while let Some((index, line)) = lines.next() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let rest = &line[indent..];
        let Some(fence_char) = rest.chars().next().filter(|c| *c == '`' || *c == '~') else {
            continue;
        };
        let fence_len = rest.len() - rest.trim_start_matches(fence_char).len();
        if fence_len < 3 {
            continue;
        }
        let lang = rest[fence_len..].split_whitespace().next().unwrap_or("");
        let mut text = String::new();
        let mut closed = false;
        for (_, body) in lines.by_ref() {
            let trimmed = body.trim();
            if trimmed.len() >= fence_len && trimmed.chars().all(|c| c == fence_char) {
                closed = true;
                break;
            }
            let strip = (body.len() - body.trim_start_matches(' ').len()).min(indent);
            text.push_str(&body[strip..]);
            text.push('\n');
        }
        assert!(closed, "{file}:{}: code block is never closed", index + 1);
        if lang == "yaml" || lang == "yml" {
            blocks.push(Block {
                file: file.to_string(),
                line: index + 1,
                text,
            });
        }
    }
    blocks
}

/// The keys at column 0, ignoring comments and blank lines; `None` if the block is a sequence.
fn top_level_keys(text: &str) -> Option<Vec<String>> {
    let mut keys = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with([' ', '\t', '#']) {
            continue;
        }
        if line.starts_with("- ") || line == "-" {
            return None;
        }
        let key = line.split(':').next().unwrap_or(line).trim();
        keys.push(key.trim_matches(['"', '\'']).to_string());
    }
    Some(keys)
}

fn classify(text: &str) -> Class {
    let Some(keys) = top_level_keys(text) else {
        return Class::ProbeList;
    };
    let has = |set: &[&str]| keys.iter().any(|key| set.contains(&key.as_str()));
    if has(&CONFIG_KEYS) {
        Class::Config
    } else if has(&FOREIGN_KEYS) {
        Class::Foreign
    } else if keys.len() == 1 && has(&PROBE_KINDS) {
        Class::KindFragment
    } else {
        Class::Unknown(keys)
    }
}

fn indented(text: &str, by: &str) -> String {
    text.lines()
        .map(|line| {
            if line.is_empty() {
                "\n".to_string()
            } else {
                format!("{by}{line}\n")
            }
        })
        .collect()
}

/// Removes the temp directory however the test ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn documented_config_examples_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = TempDir(std::env::temp_dir().join(format!("hp-docex-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();

    let mut per_file: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    for path in doc_files() {
        let file = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {file}: {e}"));
        let counts = per_file.entry(file.clone()).or_default();
        for block in yaml_blocks(&file, &doc) {
            let config = match classify(&block.text) {
                Class::Config => block.text.clone(),
                Class::ProbeList => format!("probes:\n{}", indented(&block.text, "  ")),
                Class::KindFragment => format!(
                    "probes:\n  - name: doc-example\n{}",
                    indented(&block.text, "    ")
                ),
                Class::Foreign => {
                    counts.1 += 1;
                    continue;
                }
                Class::Unknown(keys) => {
                    failures.push(format!(
                        "{}:{}: a yaml block with top-level keys {keys:?} is neither an agent \
                         config, a list of probes, one probe kind's settings, nor a known \
                         non-agent document; classify it in tests/docs_examples.rs",
                        block.file, block.line
                    ));
                    continue;
                }
            };
            counts.0 += 1;
            let config_path = dir.0.join(format!(
                "{}-{}.yaml",
                block.file.replace(['/', '.'], "_"),
                block.line
            ));
            std::fs::write(&config_path, &config).unwrap();
            let out = Command::new(BIN)
                .args(["validate", "--config"])
                .arg(&config_path)
                .env_clear()
                .envs(ENV)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            println!("{}:{}: {}", block.file, block.line, stdout.trim_end());
            if out.status.code() != Some(0) || !stdout.contains(": ok (") {
                failures.push(format!(
                    "{}:{}: the yaml example does not validate ({}):\n{}{}--- as validated:\n{}",
                    block.file,
                    block.line,
                    out.status,
                    stdout,
                    String::from_utf8_lossy(&out.stderr),
                    config
                ));
            }
        }
    }

    let summary: Vec<String> = per_file
        .iter()
        .filter(|(_, (configs, foreign))| configs + foreign > 0)
        .map(|(file, (configs, foreign))| {
            format!("{file}: {configs} config, {foreign} not agent config")
        })
        .collect();
    println!("{}", summary.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    let configs: usize = per_file.values().map(|(configs, _)| configs).sum();
    assert!(
        configs >= MIN_CONFIG_BLOCKS,
        "found {configs} agent-config yaml blocks, expected at least {MIN_CONFIG_BLOCKS}:\n{}",
        summary.join("\n")
    );
}
