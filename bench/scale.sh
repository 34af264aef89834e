#!/usr/bin/env bash
# Scale: 1,000 probes a second (600 TCP, 300 ICMP, 100 DNS) from an agent pinned to core 0 in
# the lab: CPU, peak RSS, rounds, scheduler lag; then /metrics latency with about 5,000 series
# under 20 concurrent scrapers (Prometheus-like, and wrk back to back); then the RSS over time
# with the 1,000 checks while 20 scrapers read /metrics. See bench/scale.rs.
#
#   bench/scale.sh [--seconds 60] [--warmup 10] [--scrape-seconds 30] [--memory-seconds 60]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

need wrk wrk
cargo bench "${shipped_target[@]}" --bench scale -- "$@"
