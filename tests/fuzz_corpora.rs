//! Every fuzz target's kept corpus replayed on stable Rust through the target's own properties
//! (`hybridprobe::fuzzing::holds`): the inputs that once found a bug, or reached new code, keep
//! passing whether or not a nightly toolchain is there to fuzz. `.ci/checks/fuzz.sh` explores
//! new inputs; this only replays the kept ones.

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

use hybridprobe::fuzzing::holds;

/// A target's properties: panics when one fails for the input.
type Holds = fn(&[u8]);

/// One entry per file in `fuzz/fuzz_targets/`, named as the file.
const TARGETS: &[(&str, Holds)] = &[
    ("config_parse", holds::config_parse),
    ("conntrack_reply", holds::conntrack_reply),
    ("conntrack_stat", holds::conntrack_stat),
    ("dns_response", holds::dns_response),
    ("http_response", holds::http_response),
    ("icmp_parse", holds::icmp_parse),
    ("proxy_reply", holds::proxy_reply),
    ("resolv_conf", holds::resolv_conf),
    ("stun_decode", holds::stun_decode),
];

fn fuzz_dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(sub)
}

fn file_stems(dir: &Path, ext: &str) -> Vec<String> {
    let mut stems: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == ext))
        .filter_map(|path| Some(path.file_stem()?.to_str()?.to_owned()))
        .collect();
    stems.sort();
    stems
}

#[test]
fn every_fuzz_target_is_replayed() {
    let listed: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        file_stems(&fuzz_dir("fuzz_targets"), "rs"),
        listed,
        "fuzz/fuzz_targets and this test's TARGETS must name the same targets"
    );
}

#[test]
fn every_kept_input_holds() {
    let mut failed = Vec::new();
    for (target, holds) in TARGETS {
        let corpus = fuzz_dir("corpus").join(target);
        let inputs: Vec<PathBuf> = fs::read_dir(&corpus)
            .unwrap_or_else(|e| panic!("{}: {e}", corpus.display()))
            .map(|entry| entry.expect("a directory entry").path())
            .collect();
        assert!(!inputs.is_empty(), "{} is empty", corpus.display());
        for input in inputs {
            let data = fs::read(&input).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
            if panic::catch_unwind(|| holds(&data)).is_err() {
                failed.push(input.display().to_string());
            }
        }
    }
    assert!(
        failed.is_empty(),
        "inputs that broke a property: {failed:#?}"
    );
}
