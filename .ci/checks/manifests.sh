#!/usr/bin/env bash
# Renders the kustomize base, every overlay, and the base with every combination of the
# components in deploy/components, and validates each core object (and the smoke Job, and
# node-problem-detector's DaemonSet with the NPD component's patches) against the Kubernetes
# OpenAPI schemas, strictly: an unknown or misspelt field fails. The monitoring CRDs' objects
# (monitoring.coreos.com, azmonitoring.coreos.com) have no schema here; the alerts check
# (promtool) and the dashboard test (a live Prometheus using the PodMonitor's relabelings)
# cover them instead.
set -euo pipefail
cd "$(dirname "$0")/../.."

# The oldest and newest Kubernetes minors the manifests must be valid for.
VERSIONS=(1.29 1.37)

for tool in kubectl kubernetes-validate python3; do
  command -v "$tool" >/dev/null || { echo "manifests: $tool not found (see .ci/requirements.txt)" >&2; exit 1; }
done

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

rendered=0
render() { # render DIR NAME
  kubectl kustomize "$1" > "$out/$2.yaml"
  rendered=$((rendered + 1))
  echo "rendered $2: $(grep -c '^kind:' "$out/$2.yaml") objects"
}

for dir in deploy/base deploy/overlays/*/; do
  dir=${dir%/}
  render "$dir" "$(echo "$dir" | tr / -)"
done
[ "$rendered" -ge 4 ] || { echo "manifests: expected the base and 3 overlays, rendered $rendered" >&2; exit 1; }

# Every subset of the components on the base, each through a kustomization of its own: a
# component that only works beside another, or two that clash, fails here.
mapfile -t components < <(find deploy/components -mindepth 1 -maxdepth 1 -type d | sort)
[ "${#components[@]}" -ge 5 ] || { echo "manifests: expected 5 components, found ${#components[@]}" >&2; exit 1; }
combos=0
for ((mask = 1; mask < (1 << ${#components[@]}); mask++)); do
  dir="$out/combo-$mask"
  mkdir -p "$dir"
  {
    echo "apiVersion: kustomize.config.k8s.io/v1beta1"
    echo "kind: Kustomization"
    echo "resources: [$(realpath --relative-to="$dir" deploy/base)]"
    echo "components:"
    for i in "${!components[@]}"; do
      if (( mask & (1 << i) )); then echo "  - $(realpath --relative-to="$dir" "${components[$i]}")"; fi
    done
  } > "$dir/kustomization.yaml"
  kubectl kustomize "$dir" > "$out/combo-$mask.yaml" \
    || { echo "manifests: the base with these components fails to render:" >&2; cat "$dir/kustomization.yaml" >&2; exit 1; }
  combos=$((combos + 1))
done
echo "rendered the base with each of $combos combinations of ${#components[@]} components"

# The runbook base, set again by an overlay of one's own: the example in docs/runbooks.md,
# rendered on the azure-cni overlay, must rewrite every alert's runbook_url.
prod="$out/overlays/prod"
mkdir -p "$prod"
awk '/^# deploy\/overlays\/prod\/kustomization.yaml$/ { f = 1 } f && /^```$/ { exit } f' docs/runbooks.md \
  | sed "s|^  - ../azure-cni\$|  - $(realpath --relative-to="$prod" deploy/overlays/azure-cni)|" > "$prod/kustomization.yaml"
kubectl kustomize "$prod" | python3 -c '
import sys, yaml
docs = list(yaml.safe_load_all(sys.stdin))
rule = next(d for d in docs if d and d["kind"] == "PrometheusRule")
urls = [r["annotations"]["runbook_url"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
wrong = [u for u in urls if not u.startswith("https://wiki.example.com/hybridprobe/runbooks.md#")]
assert urls and not wrong, wrong
assert not any(d["kind"] == "ConfigMap" and d["metadata"]["name"] == "hybridprobe-runbooks" for d in docs if d)
print(f"manifests: the documented runbook base reaches all {len(urls)} alerts, and its ConfigMap stays local")
'

# node-problem-detector's DaemonSet (the shape of the upstream manifest) with the NPD
# component's two patches, as docs/deploy.md applies them.
npd=deploy/components/node-problem-detector
cat > "$out/npd-upstream.yaml" <<'NPD'
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: node-problem-detector
  namespace: kube-system
  labels: { app: node-problem-detector }
spec:
  selector:
    matchLabels: { app: node-problem-detector }
  template:
    metadata:
      labels: { app: node-problem-detector }
    spec:
      serviceAccountName: node-problem-detector
      containers:
        - name: node-problem-detector
          image: registry.k8s.io/node-problem-detector/node-problem-detector:v0.8.19
          command: [/node-problem-detector, --logtostderr, --config.system-log-monitor=/config/kernel-monitor.json]
          env:
            - name: NODE_NAME
              valueFrom: { fieldRef: { fieldPath: spec.nodeName } }
          volumeMounts:
            - { name: config, mountPath: /config, readOnly: true }
      volumes:
        - name: config
          configMap: { name: node-problem-detector-config }
NPD
kubectl patch --local -f "$out/npd-upstream.yaml" --type strategic --patch-file "$npd/npd-daemonset-patch.yaml" -o yaml \
  | kubectl patch --local -f - --type json --patch-file "$npd/npd-command-patch.yaml" -o yaml > "$out/npd-patched.yaml"
python3 - "$out/npd-patched.yaml" "$npd/hybridprobe-monitor.json" <<'PY'
import json, sys, yaml
ds = yaml.safe_load(open(sys.argv[1]))
monitor = json.load(open(sys.argv[2]))
spec = ds["spec"]["template"]["spec"]
npd = spec["containers"][0]
mounts = {m["name"]: m["mountPath"] for m in npd["volumeMounts"]}
flag = [a for a in npd["command"] if a.startswith("--config.custom-plugin-monitor=")]
assert len(flag) == 1, npd["command"]
config_path = flag[0].split("=", 1)[1]
assert config_path == mounts["hybridprobe-monitor"] + "/hybridprobe-monitor.json", (config_path, mounts)
plugin = monitor["rules"][0]["path"]
assert plugin.rsplit("/", 1)[0] == mounts["hybridprobe-plugin"], (plugin, mounts)
init = spec["initContainers"][0]
assert init["args"][-1] == plugin, (init["args"], plugin)
assert any(e["name"] == "HYBRIDPROBE_AGENT_URL" for e in npd["env"]), npd["env"]
print("manifests: the NPD patches mount the plugin and its config where the config says")
PY

for version in "${VERSIONS[@]}"; do
  # One run for every file (a run per file costs a second each); --no-warn hides only the "no
  # schema for ...coreos.com" notes, errors still fail.
  kubernetes-validate --strict --quiet --no-warn -k "$version" "$out"/*.yaml deploy/smoke/job.yaml
  echo "valid against Kubernetes $version"
done
