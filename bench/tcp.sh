#!/usr/bin/env bash
# Benchmark: 1,000 TCP probes a second against loopback listeners, in the agent's own namespace.
# Prints CPU time per probe round and peak RSS. Loopback only: nothing leaves this machine.
#
#   bench/tcp.sh [PROBES] [SECONDS]      (defaults: 1000 probes, 30 s measured after 5 s warm-up)
set -euo pipefail
cd "$(dirname "$0")/.."
probes=${1:-1000}
seconds=${2:-30}
warmup=5
ports=(19801 19802 19803 19804 19805 19806 19807 19808 19809 19810)
listen=127.0.0.1:19739
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release --quiet
bin=target/release/hybridprobe

# Listeners that accept and close: their cost is not measured.
python3 - "${ports[@]}" >"$work/listener.log" 2>&1 <<'PY' &
import asyncio, sys
async def main():
    async def handle(r, w):
        w.close()
    for p in sys.argv[1:]:
        await asyncio.start_server(handle, "127.0.0.1", int(p), backlog=4096)
    await asyncio.Event().wait()
asyncio.run(main())
PY
sleep 1

{
  echo "netns: { pod: {} }"
  echo "defaults: { interval: 1s, timeout: 500ms }"
  echo "probes:"
  for i in $(seq 1 "$probes"); do
    port=${ports[$((i % ${#ports[@]}))]}
    printf '  - { name: tcp-%04d, tcp: { target: "127.0.0.1:%s" } }\n' "$i" "$port"
  done
} >"$work/config.yaml"

"$bin" agent --config "$work/config.yaml" --listen "$listen" --log warn &
agent=$!

runs() { curl -s "http://$listen/metrics" | awk '/^hybridprobe_probe_runs_total\{/ {s += $2} END {printf "%d", s}'; }
failures() { curl -s "http://$listen/metrics" | awk '/^hybridprobe_probe_runs_total\{/ && !/result="success"/ {s += $2} END {printf "%d", s}'; }
# utime and stime in clock ticks: the prober's own CPU, kernel work on its sockets included.
cpu_ticks() { awk '{print $14, $15}' "/proc/$agent/stat"; }

sleep "$warmup"
runs0=$(runs); read -r user0 sys0 < <(cpu_ticks)
sleep "$seconds"
runs1=$(runs); read -r user1 sys1 < <(cpu_ticks)
hwm_kb=$(awk '/VmHWM/ {print $2}' "/proc/$agent/status")
fails=$(failures)
kill "$agent"; wait "$agent" || true

hz=$(getconf CLK_TCK)
rounds=$((runs1 - runs0))
ticks=$((user1 - user0 + sys1 - sys0))
us_per() { echo "scale=1; $1 * 1000000 / $hz / $rounds" | bc; }
printf '\nmachine: %s cores, %s\n' "$(nproc)" "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
printf '| workload | rounds (expected) | failed | CPU s | CPU per probe (user + system) | peak RSS |\n'
printf '|---|---|---|---|---|---|\n'
printf '| %d TCP probes/s for %d s | %d (%d) | %d | %s | %s µs (%s + %s) | %.1f MiB |\n' \
  "$probes" "$seconds" "$rounds" "$((probes * seconds))" "$fails" \
  "$(echo "scale=2; $ticks / $hz" | bc)" "$(us_per $ticks)" \
  "$(us_per $((user1 - user0)))" "$(us_per $((sys1 - sys0)))" \
  "$(echo "$hwm_kb / 1024" | bc -l)"
