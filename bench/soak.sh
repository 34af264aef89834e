#!/usr/bin/env bash
# Soak: the agent in the lab with faults flapping every 30 s for MINUTES (default 30). Fails
# if resident memory grows by 2 MiB or more after the warm-up, open file descriptors pile up,
# the agent panics, or any check misses a round. CI runs the same test for 2 minutes.
#
#   bench/soak.sh [MINUTES]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

minutes="${1:-30}"
CI=true HYBRIDPROBE_SOAK_SECONDS=$((minutes * 60)) \
  cargo test --release "${shipped_target[@]}" --test soak_e2e -- --include-ignored --nocapture
