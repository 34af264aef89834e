#!/usr/bin/env bash
# Side by side: hybridprobe, the kernel floor (bench/floor.rs: the same socket calls, no prober
# around them) and Debian's prometheus-blackbox-exporter probing the same 100 TCP, 100 ICMP and
# 20 DNS targets (and --http N plain-HTTP ones of an nginx, none by default) once a second from
# the lab's pod namespace, runs alternating. Prints user and kernel CPU per probe and peak RSS of
# each, and the ratios. See bench/vs_blackbox.rs.
#
#   bench/vs-blackbox.sh [--seconds 60] [--warmup 10] [--rounds 3] [--tcp 100] [--icmp 100] [--dns 20]
#                        [--http 0] [--by-kind 0]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

if ! command -v prometheus-blackbox-exporter >/dev/null; then
  need prometheus-blackbox-exporter prometheus-blackbox-exporter
  # The package starts its own service where systemd runs; the benchmark starts one in the lab.
  if [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus-blackbox-exporter || true
  fi
fi
# nginx answers the --http targets (bench/common.rs); installed whether or not they are asked for.
need nginx-light nginx
# The floor first: vs_blackbox runs the floor binary Cargo puts beside it.
cargo bench "${shipped_target[@]}" --bench floor --bench vs_blackbox --no-run
cargo bench "${shipped_target[@]}" --bench vs_blackbox -- "$@"
