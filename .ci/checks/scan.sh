#!/usr/bin/env bash
# A Kubernetes security scanner (checkov) over every rendered variant and the smoke Job: no
# finding may remain, and each one skipped must be real. A skip is an annotation on the object,
# `checkov.io/skipN: CKV_K8S_xx=why it is inherent`; a second scan with the skips stripped must
# fail exactly the skipped checks, so a skip that no longer applies (an overlay that dropped the
# privilege) fails here too.
#
#   .ci/checks/scan.sh [FILE...]    (default: the kustomize variants and the smoke Job;
#                                    .ci/checks/helm.sh passes the chart's renders)
set -euo pipefail
cd "$(dirname "$0")/../.."

for tool in kubectl checkov python3; do
  command -v "$tool" >/dev/null || { echo "scan: $tool not found (see .ci/requirements.txt)" >&2; exit 1; }
done

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# --skip-download: the scanner's own checks only, no calls to its vendor's platform.
scan() {
  checkov --compact --skip-download --framework kubernetes --output json -f "$1" \
    > "$2" || true
}

if [ "$#" -gt 0 ]; then
  for file in "$@"; do cp "$file" "$out/$(basename "$file")"; done
  scanned="$# rendered files"
else
  variants=(deploy/base deploy/overlays/*/)
  for dir in "${variants[@]}"; do
    dir=${dir%/}
    kubectl kustomize "$dir" > "$out/$(echo "$dir" | tr / -).yaml"
  done
  cp deploy/smoke/job.yaml "$out/deploy-smoke-job.yaml"
  scanned="${#variants[@]} variants and the smoke Job"
fi

failed=0
for file in "$out"/*.yaml; do
  [[ $file == *.stripped.yaml ]] && continue
  name=$(basename "$file" .yaml)
  scan "$file" "$out/$name.json"
  python3 .ci/checks/scan_skips.py strip "$file" > "$out/$name.stripped.yaml"
  scan "$out/$name.stripped.yaml" "$out/$name.stripped.json"
  if ! python3 .ci/checks/scan_skips.py judge "$name" "$file" "$out/$name.json" "$out/$name.stripped.json"; then
    failed=1
  fi
done
[ "$failed" = 0 ] || { echo "scan: findings above" >&2; exit 1; }
echo "scan: $scanned clean, every skip justified and needed"
