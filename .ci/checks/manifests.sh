#!/usr/bin/env bash
# Renders the kustomize base and every overlay, and validates each core object (and the smoke
# Job) against the Kubernetes OpenAPI schemas, strictly: an unknown or misspelt field fails.
# The Prometheus-operator objects have no schema here; the alerts check (promtool) and the
# dashboard test (a live Prometheus using the PodMonitor's relabelings) cover them instead.
set -euo pipefail
cd "$(dirname "$0")/../.."

# The oldest and newest Kubernetes minors the manifests must be valid for.
VERSIONS=(1.29 1.37)

for tool in kubectl kubernetes-validate; do
  command -v "$tool" >/dev/null || { echo "manifests: $tool not found (see .ci/requirements.txt)" >&2; exit 1; }
done

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

rendered=0
for dir in deploy/base deploy/overlays/*/; do
  dir=${dir%/}
  name=$(echo "$dir" | tr / -)
  kubectl kustomize "$dir" > "$out/$name.yaml"
  rendered=$((rendered + 1))
  echo "rendered $dir: $(grep -c '^kind:' "$out/$name.yaml") objects"
done
[ "$rendered" -ge 4 ] || { echo "manifests: expected the base and 3 overlays, rendered $rendered" >&2; exit 1; }

for version in "${VERSIONS[@]}"; do
  for file in "$out"/*.yaml deploy/smoke/job.yaml; do
    # --no-warn hides only the "no schema for monitoring.coreos.com" notes; errors still fail.
    kubernetes-validate --strict --quiet --no-warn -k "$version" "$file"
  done
  echo "valid against Kubernetes $version"
done
