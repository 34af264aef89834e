#!/usr/bin/env bash
# Benchmark: CPU per DNS query pair (one query to one server over one transport, as the `dns`
# probe makes them), against a local dnsmasq on loopback. One agent run per transport.
# Prints a table. Loopback only: dnsmasq answers from its own records and asks nobody.
#
#   bench/dns.sh [PROBES] [SECONDS]      (defaults: 200 probes/s per run, 20 s measured after 5 s warm-up)
set -euo pipefail
cd "$(dirname "$0")/.."
probes=${1:-200}
seconds=${2:-20}
warmup=5
dns=127.0.0.1:19853
listen=127.0.0.1:19739
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

command -v dnsmasq >/dev/null || { echo "dnsmasq not found (apt-get install dnsmasq-base)" >&2; exit 1; }
cargo build --release --quiet
bin=target/release/hybridprobe

dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --no-poll \
  --bind-interfaces --listen-address=127.0.0.1 --port=19853 --pid-file="$work/dnsmasq.pid" \
  --local=/corp.example/ --host-record=db.corp.example,198.19.10.5 --log-facility="$work/dnsmasq.log" &
sleep 1

metrics() { curl -s --noproxy '*' "http://$listen/metrics"; }
queries() { metrics | awk '/^hybridprobe_dns_query_duration_seconds_count\{/ {s += $2} END {printf "%d", s}'; }
failures() { metrics | awk '/^hybridprobe_probe_runs_total\{/ && !/result="success"/ {s += $2} END {printf "%d", s}'; }

hz=$(getconf CLK_TCK)
rows=()
for transport in udp tcp; do
  {
    echo "netns: { pod: {} }"
    echo "defaults: { interval: 1s, timeout: 500ms }"
    echo "probes:"
    for i in $(seq 1 "$probes"); do
      printf '  - { name: dns-%04d, dns: { query: db.corp.example, servers: ["%s"], transport: %s } }\n' \
        "$i" "$dns" "$transport"
    done
  } >"$work/$transport.yaml"
  "$bin" agent --config "$work/$transport.yaml" --listen "$listen" --log warn &
  agent=$!
  sleep "$warmup"
  q0=$(queries); cpu0=$(awk '{print $14 + $15}' "/proc/$agent/stat")
  sleep "$seconds"
  q1=$(queries); cpu1=$(awk '{print $14 + $15}' "/proc/$agent/stat")
  hwm_kb=$(awk '/VmHWM/ {print $2}' "/proc/$agent/status")
  fails=$(failures)
  kill "$agent"; wait "$agent" || true
  pairs=$((q1 - q0))
  cpu_s=$(echo "scale=3; ($cpu1 - $cpu0) / $hz" | bc)
  per_pair_us=$(echo "scale=1; ($cpu1 - $cpu0) * 1000000 / $hz / $pairs" | bc)
  rows+=("$(printf '| %d DNS %s pairs/s, %d s | %d (%d) | %d | %s | %s µs | %.1f MiB |' \
    "$probes" "$transport" "$seconds" "$pairs" "$((probes * seconds))" "$fails" "$cpu_s" \
    "$per_pair_us" "$(echo "$hwm_kb / 1024" | bc -l)")")
done

printf '\nmachine: %s cores, %s\n' "$(nproc)" "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
printf '| workload | query pairs (expected) | failed rounds | CPU s | CPU per pair | peak RSS |\n'
printf '|---|---|---|---|---|---|\n'
printf '%s\n' "${rows[@]}"
