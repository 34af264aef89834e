#!/usr/bin/env bash
# Fuzzes every parser of outside input (fuzz/fuzz_targets/*.rs) for a bounded time each, starting
# from the kept corpora in fuzz/corpus/<target>. All targets are built once with sanitizers, then
# run one after the other for FUZZ_SECONDS (default 20). New inputs go to scratch directories,
# so the kept corpora only change on purpose. Any crash fails the check; the reproducer is left
# in fuzz/artifacts/<target>/ (rerun it with `cargo +nightly fuzz run <target> <file>`). The
# properties each target checks live in src/fuzzing/holds.rs; tests/fuzz_corpora.rs replays the
# kept corpora through them on stable as part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${FUZZ_SECONDS:-20}"

# libFuzzer needs nightly (sanitizer flags). Without it, and when rustup cannot install it, the
# kept corpora are still replayed through every target's properties on stable: no new inputs are
# explored then, and the log says so.
if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz: no nightly toolchain; installing it"
  if ! timeout 600 rustup toolchain install nightly --profile minimal; then
    echo "fuzz: NOT FUZZING: nightly is not installable here; replaying the kept corpora on stable instead"
    cargo test --locked --test fuzz_corpora
    echo "fuzz: every kept input holds on stable; no new inputs were explored"
    exit 0
  fi
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi

targets=$(cargo +nightly fuzz list)
if [ -z "$targets" ]; then
  echo "fuzz: no targets found in fuzz/" >&2
  exit 1
fi
echo "fuzz: building $(echo "$targets" | wc -l) targets"
cargo +nightly fuzz build

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for target in $targets; do
  corpus="fuzz/corpus/$target"
  if [ ! -d "$corpus" ] || [ -z "$(ls -A "$corpus")" ]; then
    echo "fuzz: $target has no kept corpus in $corpus" >&2
    exit 1
  fi
  options=(-max_total_time="$seconds" -max_len=4096 -print_final_stats=1)
  if [ -f "fuzz/dicts/$target.dict" ]; then
    options+=(-dict="fuzz/dicts/$target.dict")
  fi
  mkdir "$scratch/$target"
  echo "== fuzz $target for ${seconds}s"
  cargo +nightly fuzz run "$target" "$scratch/$target" "$corpus" -- "${options[@]}"
done
echo "fuzz: every target ran ${seconds}s without a crash"
