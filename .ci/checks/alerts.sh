#!/usr/bin/env bash
# Extracts the alerting and recording rules from the PrometheusRule of every overlay (so a
# patched rule is checked too), runs `promtool check rules` on each, runs the unit tests in
# deploy/alerts/tests.yaml against the prometheus-operator component's rules, checks that the
# Azure Monitor rule groups are generated from those rules, that every alert links an absolute
# runbook_url, and that every alert and every diagnosis code has a runbook in docs/runbooks.md.
set -euo pipefail
cd "$(dirname "$0")/../.."

for tool in kubectl promtool python3; do
  command -v "$tool" >/dev/null || { echo "alerts: $tool not found (see .ci/packages.txt, .ci/requirements.txt)" >&2; exit 1; }
done

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# The `spec` of the one PrometheusRule in a rendered kustomization is a plain rules file. An
# overlay without the prometheus-operator component (proc-1-host) renders none: exit 3, so the
# loop below can tell "nothing to check" from a broken render.
extract_rules() {
  kubectl kustomize "$1" | python3 -c '
import sys, yaml
rules = [d for d in yaml.safe_load_all(sys.stdin) if d and d.get("kind") == "PrometheusRule"]
if not rules:
    sys.exit(3)
if len(rules) != 1:
    sys.exit(f"expected one PrometheusRule, found {len(rules)}")
yaml.safe_dump(rules[0]["spec"], sys.stdout, sort_keys=False)
'
}

RULES=deploy/components/prometheus-operator/prometheusrule.yaml

checked=0
for dir in deploy/overlays/*/; do
  dir=${dir%/}
  name=$(echo "$dir" | tr / -)
  rc=0
  extract_rules "$dir" > "$out/$name.rules.yaml" || rc=$?
  if [ "$rc" -eq 3 ]; then
    echo "alerts: $dir renders no PrometheusRule (no prometheus-operator component): nothing to check"
    continue
  fi
  [ "$rc" -eq 0 ] || exit "$rc"
  promtool check rules "$out/$name.rules.yaml"
  checked=$((checked + 1))
done
# azure-cni, kubenet and no-host-privileges carry the component: losing it from all is a bug.
[ "$checked" -ge 3 ] || { echo "alerts: only $checked overlays render a PrometheusRule, expected 3 or more" >&2; exit 1; }

# The tests name their rule file `rules.yaml`, relative to the test file.
python3 -c 'import sys, yaml; yaml.safe_dump(yaml.safe_load(open(sys.argv[1]))["spec"], sys.stdout, sort_keys=False)' \
  "$RULES" > "$out/rules.yaml"
cp deploy/alerts/tests.yaml "$out/tests.yaml"
promtool test rules "$out/tests.yaml"
python3 deploy/components/azure-managed-prometheus/rule-groups.py --check

# Alertmanager templates and Grafana link `runbook_url`, which must be absolute: a relative
# path leads nowhere from a notification.
python3 - "$out/rules.yaml" <<'PY'
import sys, yaml
for group in yaml.safe_load(open(sys.argv[1]))["groups"]:
    for rule in group["rules"]:
        if "alert" not in rule:
            continue
        notes = rule.get("annotations", {})
        url = notes.get("runbook_url", "")
        if not url.startswith("https://") or "#" not in url or "runbook" in notes:
            sys.exit(f"alerts: {rule['alert']} needs an absolute runbook_url with an #anchor (and no relative runbook), has {notes}")
PY

# Every alert in the file has at least one unit test, and a runbook section in docs/runbooks.md.
for alert in $(grep -o 'alert: [A-Za-z]*' "$out/rules.yaml" | cut -d' ' -f2 | sort -u); do
  grep -q "alertname: $alert\$" deploy/alerts/tests.yaml || { echo "alerts: $alert has no unit test" >&2; exit 1; }
  grep -q "^### $alert\$" docs/runbooks.md || { echo "alerts: $alert has no runbook section (### $alert) in docs/runbooks.md" >&2; exit 1; }
done
# The diagnosis alerts link each code to its own runbook (`#### \`code\`` under
# HybridprobeDiagnosis): every code the rules name needs one.
codes=$(grep -o 'code[=!]~\?"[a-z_|]*"' "$RULES" | cut -d'"' -f2 | tr '|' '\n' | sort -u)
[ -n "$codes" ] || { echo "alerts: no diagnosis codes found in the rules" >&2; exit 1; }
for code in $codes; do
  grep -q "^#### \`$code\`\$" docs/runbooks.md || { echo "alerts: diagnosis code $code has no runbook section (#### \`$code\`) in docs/runbooks.md" >&2; exit 1; }
done
echo "alerts: every alert is tested and has a runbook, and so does every diagnosis code ($(echo $codes | wc -w))"
