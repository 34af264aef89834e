#!/usr/bin/env bash
# RSS over time of one running process, anonymous and file-backed apart (a statically linked
# binary's code pages are file-backed and count in RSS), from /proc/PID/status once a second.
# Run it beside a benchmark, e.g. `bench/rss.sh "$(pgrep -n -x hybridprobe)" 60`.
#
#   bench/rss.sh PID [SECONDS]
set -euo pipefail
pid=${1:?usage: bench/rss.sh PID [SECONDS]}
seconds=${2:-60}
echo "| time | RSS | anonymous | file-backed | peak (VmHWM) |"
echo "|---|---|---|---|---|"
for ((t = 0; t <= seconds; t++)); do
  status=$(cat "/proc/$pid/status" 2>/dev/null) || break
  awk -v t="$t" '{ kib[$1] = $2 }
    END { printf "| %d s | %.1f MiB | %.1f MiB | %.1f MiB | %.1f MiB |\n", t,
      kib["VmRSS:"] / 1024, kib["RssAnon:"] / 1024, kib["RssFile:"] / 1024, kib["VmHWM:"] / 1024 }' \
    <<<"$status"
  sleep 1
done
