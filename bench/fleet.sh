#!/usr/bin/env bash
# Fleet: NODES agents (default 100), each in its own pod on its own node behind the lab's one
# tunnel, running the azure-cni overlay's config, scraped by one Prometheus with the shipped
# PodMonitor's labels and PrometheusRule: series, scrape and rule-evaluation time, Prometheus's
# memory, the agents' CPU and memory; then the tunnel down for every node and for three nodes,
# and the alerts Prometheus raised. `--fast` shortens the scrape and rule intervals, every
# `for:` and the agents' interval (the tables say so). See bench/fleet.rs.
#
#   bench/fleet.sh [--nodes 100] [--fast] [--seconds 120]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

need prometheus prometheus
need nginx-light nginx
need coturn turnserver
need conntrack conntrack
need openssl openssl
args=()
for arg in "$@"; do
  if [ "$arg" = --fast ]; then args+=(--fast 1); else args+=("$arg"); fi
done
# Debian's package starts its own service where systemd runs; the benchmark starts one in the lab.
if [ -d /run/systemd/system ] && systemctl is-active --quiet prometheus; then
  systemctl disable --now prometheus || true
fi
cargo bench "${shipped_target[@]}" --bench fleet -- "${args[@]}"
