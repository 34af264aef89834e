#!/usr/bin/env bash
# The Helm chart (deploy/helm/hybridprobe), through helm-python-sdk (.ci/helm.py; no helm binary):
# lints it, renders it with its defaults, with each switch flipped and with all of them, and
# from its packaged archive (whose files/ must be the linked files' contents), then holds every
# render to what kustomize renders for the same parts (the same objects, names and namespaces;
# the same content but for labels, except the DaemonSet, which tests/deploy_e2e.rs compares
# field by field and runs in the lab), scans the variants with checkov (.ci/checks/scan.sh) and
# validates every render against the Kubernetes schemas as .ci/checks/manifests.sh does.
set -euo pipefail
cd "$(dirname "$0")/../.."

VERSIONS=(1.29 1.37)
CHART=deploy/helm/hybridprobe
# Each chart switch that adds objects and the kustomize component it stands for. The DaemonSet's
# own switches are compared with overlays below: hostChecks.enabled=false with
# no-host-privileges, proc1Host.enabled=true with proc-1-host (its component's overlay).
declare -A COMPONENT=(
  [prometheusOperator.enabled=true]=prometheus-operator
  [azureManagedPrometheus.enabled=true]=azure-managed-prometheus
  [grafanaDashboard.enabled=true]=grafana-dashboard
  [nodeProblemDetector.enabled=true]=node-problem-detector
  [networkPolicy.enabled=true]=network-policy
)

for tool in kubectl kubernetes-validate python3; do
  command -v "$tool" >/dev/null || { echo "helm: $tool not found (see .ci/requirements.txt)" >&2; exit 1; }
done

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mkdir -p "$out/chart" "$out/kustomize"

helm_py() { python3 .ci/helm.py "$@"; }

# A link under files/ that points nowhere would render as an empty file.
while read -r link; do
  [ -e "$link" ] || { echo "helm: $link links to nothing" >&2; exit 1; }
done < <(find "$CHART" -type l)

# A new kustomize component needs its chart switch too.
for dir in deploy/components/*/; do
  component=$(basename "$dir")
  [[ $component == proc-1-host || " ${COMPONENT[*]} " == *" $component "* ]] \
    || { echo "helm: the component $component has no chart switch" >&2; exit 1; }
done

all=()
for set in "${!COMPONENT[@]}"; do all+=(--set "$set"); done
helm_py lint "$CHART"
helm_py lint "$CHART" "${all[@]}" --set proc1Host.enabled=true
helm_py lint "$CHART" "${all[@]}" --set hostChecks.enabled=false

render() { # render NAME [--set K=V]...
  local name=$1
  shift
  helm_py template "$CHART" "$@" > "$out/chart/$name.yaml"
  echo "rendered $name: $(grep -c '^kind:' "$out/chart/$name.yaml") objects"
}
kustomize_with() { # kustomize_with NAME BASE [COMPONENT]...
  local name=$1 dir="$out/kustomize/$1.d" base=$2
  shift 2
  mkdir -p "$dir"
  {
    echo "apiVersion: kustomize.config.k8s.io/v1beta1"
    echo "kind: Kustomization"
    echo "resources: [$(realpath --relative-to="$dir" "$base")]"
    echo "components:"
    for c in "$@"; do echo "  - $(realpath --relative-to="$dir" "deploy/components/$c")"; done
  } > "$dir/kustomization.yaml"
  kubectl kustomize "$dir" > "$out/kustomize/$name.yaml"
}
same_objects() { # same_objects HELM KUSTOMIZE
  python3 - "$out/chart/$1.yaml" "$out/kustomize/$2.yaml" <<'PY'
import sys, yaml
def objects(path):
    return {(d["apiVersion"], d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d
            for d in yaml.safe_load_all(open(path)) if d}
helm, kust = objects(sys.argv[1]), objects(sys.argv[2])
# The chart leaves the namespace to `helm install --create-namespace`.
kust = {k: v for k, v in kust.items() if k[1] != "Namespace"}
assert helm.keys() == kust.keys(), f"{sys.argv[1]}: only the chart: {sorted(helm.keys() - kust.keys())}, only kustomize: {sorted(kust.keys() - helm.keys())}"
for key, k in kust.items():
    h = helm[key]
    missing = {l: v for l, v in k["metadata"].get("labels", {}).items() if h["metadata"].get("labels", {}).get(l) != v}
    assert not missing, f"{key}: the chart lacks kustomize's labels {missing}"
    if key[1] == "DaemonSet":
        continue  # tests/deploy_e2e.rs compares it field by field
    for part in (h, k):
        part["metadata"].pop("labels", None)
    assert h == k, f"{key}: the chart renders\n{yaml.safe_dump(h)}\nkustomize renders\n{yaml.safe_dump(k)}"
print(f"helm: {len(helm)} objects, as kustomize renders them")
PY
}

render default
kustomize_with base deploy/base
same_objects default base
render no-host --set hostChecks.enabled=false
kubectl kustomize deploy/overlays/no-host-privileges > "$out/kustomize/no-host.yaml"
# The overlay brings the prometheus-operator component along; compare the agent alone.
python3 -c '
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and not d["apiVersion"].startswith("monitoring.coreos.com")]
yaml.safe_dump_all(docs, open(sys.argv[1], "w"))
' "$out/kustomize/no-host.yaml"
same_objects no-host no-host
render proc-1-host --set proc1Host.enabled=true
kubectl kustomize deploy/overlays/proc-1-host > "$out/kustomize/proc-1-host.yaml"
same_objects proc-1-host proc-1-host
for set in "${!COMPONENT[@]}"; do
  name=${COMPONENT[$set]}
  render "$name" --set "$set"
  kustomize_with "$name" deploy/base "$name"
  same_objects "$name" "$name"
done
render all "${all[@]}"
kustomize_with all deploy/base "${COMPONENT[@]}"
same_objects all all
render no-priority-class --set priorityClassName=
! grep -q 'priorityClassName\|^kind: PriorityClass' "$out/chart/no-priority-class.yaml" \
  || { echo "helm: priorityClassName= still renders a priority class" >&2; exit 1; }

# The runbook base reaches every alert.
render runbooks --set prometheusOperator.enabled=true --set runbookBaseUrl=https://wiki.example.com/hybridprobe/runbooks.md
python3 - "$out/chart/runbooks.yaml" <<'PY'
import sys, yaml
rule = next(d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "PrometheusRule")
urls = [r["annotations"]["runbook_url"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
wrong = [u for u in urls if not u.startswith("https://wiki.example.com/hybridprobe/runbooks.md#")]
assert urls and not wrong, wrong
print(f"helm: runbookBaseUrl reaches all {len(urls)} alerts")
PY

# Packaged, the links become the files they point to: the archive renders the same.
archive=$(helm_py package "$CHART" --destination "$out/package")
helm_py template "$archive" "${all[@]}" > "$out/package/all.yaml"
diff -u "$out/chart/all.yaml" "$out/package/all.yaml" >&2 \
  || { echo "helm: $archive renders differently from $CHART" >&2; exit 1; }
echo "helm: the packaged chart $(basename "$archive") renders the same"

# The security scanner, as over the kustomize variants: each DaemonSet variant, and every
# other object (all switches on).
bash .ci/checks/scan.sh "$out"/chart/{default,no-host,proc-1-host,all}.yaml

helm_renders=("$out"/chart/*.yaml)
for version in "${VERSIONS[@]}"; do
  kubernetes-validate --strict --quiet --no-warn -k "$version" "${helm_renders[@]}"
  echo "valid against Kubernetes $version"
done
