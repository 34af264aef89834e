#!/usr/bin/env bash
# Fuzzes the STUN decoder (src/stun.rs) for a bounded time, starting from the kept corpus in
# fuzz/corpus/stun_decode. New inputs go to a scratch directory, so the kept corpus only changes
# on purpose. Any crash fails the check; the reproducer is left in fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${FUZZ_SECONDS:-30}"

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz-stun: the nightly toolchain is required (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz-stun: installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cargo +nightly fuzz run stun_decode "$scratch" fuzz/corpus/stun_decode -- \
  -max_total_time="$seconds" -max_len=1400 -print_final_stats=1
