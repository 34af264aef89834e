#!/usr/bin/env python3
"""The PrometheusRule as Azure Monitor Prometheus rule groups: an ARM template.

Reads deploy/components/prometheus-operator/prometheusrule.yaml and writes
prometheus-rule-groups.json beside this script (or to stdout with `-`). One
Microsoft.AlertsManagement/prometheusRuleGroups resource per rule group, each rule's expression,
labels and annotations unchanged; `for` becomes an ISO 8601 duration, the `severity` label also
Azure's numeric severity, and the runbook base a template parameter. `--check` (run by
.ci/checks/alerts.sh) fails when the committed template differs from what this writes, or when
its rules, read back as Prometheus rules, differ from the PrometheusRule's.

    python3 deploy/components/azure-managed-prometheus/rule-groups.py [--check | -]
"""
import json
import re
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE.parent / "prometheus-operator" / "prometheusrule.yaml"
OUT = HERE / "prometheus-rule-groups.json"
# The base every runbook_url starts with in the PrometheusRule.
RUNBOOK_BASE = "https://hybridprobe.example/docs/runbooks.md"
# Azure Monitor's alert severities: 0 critical, 1 error, 2 warning, 3 informational, 4 verbose.
SEVERITY = {"critical": 0, "warning": 2, "info": 3}
API_VERSION = "2023-03-01"


def iso_duration(text):
    """`5m`, `1h30m`, `90s` as ISO 8601 (`PT5M`, `PT1H30M`, `PT90S`)."""
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    if not text or not parts:
        sys.exit(f"rule-groups: cannot convert the duration {text!r}")
    h, m, s = parts.groups()
    return "PT" + "".join(f"{v}{u}" for v, u in ((h, "H"), (m, "M"), (s, "S")) if v)


def arm_string(text):
    """A literal ARM string: one starting with `[` would be read as an expression."""
    return "[" + text if text.startswith("[") else text


def runbook(url):
    if not url.startswith(RUNBOOK_BASE + "#"):
        sys.exit(f"rule-groups: runbook_url {url!r} does not start with {RUNBOOK_BASE}#")
    anchor = url[len(RUNBOOK_BASE):].replace("'", "''")
    return f"[concat(parameters('runbookBase'), '{anchor}')]"


def azure_rule(rule):
    if "record" in rule:
        out = {"record": rule["record"], "expression": rule["expr"]}
        if rule.get("labels"):
            out["labels"] = rule["labels"]
        return out
    labels = rule.get("labels", {})
    annotations = {k: arm_string(v) for k, v in rule.get("annotations", {}).items()}
    if "runbook_url" in annotations:
        annotations["runbook_url"] = runbook(rule["annotations"]["runbook_url"])
    out = {
        "alert": rule["alert"],
        "expression": rule["expr"],
        "labels": labels,
        "annotations": annotations,
        "enabled": True,
        "resolveConfiguration": {"autoResolved": True, "timeToResolve": "PT10M"},
        "actions": "[variables('actions')]",
    }
    if "for" in rule:
        out["for"] = iso_duration(rule["for"])
    if labels.get("severity") in SEVERITY:
        out["severity"] = SEVERITY[labels["severity"]]
    return out


def template(spec):
    resources = []
    for group in spec["groups"]:
        resources.append({
            "type": "Microsoft.AlertsManagement/prometheusRuleGroups",
            "apiVersion": API_VERSION,
            "name": f"[concat(parameters('namePrefix'), '{group['name']}')]",
            "location": "[parameters('location')]",
            "properties": {
                "description": f"hybridprobe: {group['name']} (generated from the PrometheusRule)",
                "scopes": ["[parameters('azureMonitorWorkspaceId')]"],
                "clusterName": "[parameters('clusterName')]",
                "enabled": True,
                "interval": "PT1M",
                "rules": [azure_rule(r) for r in group["rules"]],
            },
        })
    return {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "metadata": {"generator": "deploy/components/azure-managed-prometheus/rule-groups.py"},
        "parameters": {
            "azureMonitorWorkspaceId": {"type": "string", "metadata": {"description": "resource ID of the Azure Monitor workspace the cluster's metrics go to"}},
            "clusterName": {"type": "string", "metadata": {"description": "the AKS cluster's name: the rules see only its series"}},
            "location": {"type": "string", "defaultValue": "[resourceGroup().location]"},
            "namePrefix": {"type": "string", "defaultValue": "[concat(parameters('clusterName'), '-')]"},
            "actionGroupId": {"type": "string", "defaultValue": "", "metadata": {"description": "resource ID of the action group to notify; empty for none"}},
            "runbookBase": {"type": "string", "defaultValue": RUNBOOK_BASE, "metadata": {"description": "where docs/runbooks.md is published; each alert's runbook_url is this plus #anchor"}},
        },
        "variables": {
            "actions": "[if(empty(parameters('actionGroupId')), createArray(), createArray(createObject('actionGroupId', parameters('actionGroupId'))))]",
        },
        "resources": resources,
    }


def prometheus_duration(iso):
    parts = re.fullmatch(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?", iso)
    h, m, s = parts.groups()
    return "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (s, "s")) if v)


def read_back(arm):
    """The template's rules as a Prometheus rules file, with the default runbook base."""
    groups = []
    for resource in arm["resources"]:
        name = re.fullmatch(r"\[concat\(parameters\('namePrefix'\), '(.*)'\)\]", resource["name"])[1]
        rules = []
        for r in resource["properties"]["rules"]:
            key = "record" if "record" in r else "alert"
            rule = {key: r[key], "expr": r["expression"]}
            if "for" in r:
                rule["for"] = prometheus_duration(r["for"])
            for field in ("labels", "annotations"):
                if r.get(field):
                    rule[field] = dict(r[field])
            notes = rule.get("annotations", {})
            for k, v in notes.items():
                notes[k] = v[1:] if v.startswith("[[") else v
            if "runbook_url" in notes:
                anchor = re.fullmatch(r"\[concat\(parameters\('runbookBase'\), '(.*)'\)\]", notes["runbook_url"])[1]
                notes["runbook_url"] = RUNBOOK_BASE + anchor.replace("''", "'")
            rules.append(rule)
        groups.append({"name": name, "rules": rules})
    return {"groups": groups}


def main():
    spec = yaml.safe_load(RULES.read_text())["spec"]
    text = json.dumps(template(spec), indent=2) + "\n"
    if sys.argv[1:] == ["-"]:
        sys.stdout.write(text)
    elif sys.argv[1:] == ["--check"]:
        if OUT.read_text() != text:
            sys.exit(f"rule-groups: {OUT} is stale: run python3 {Path(__file__).relative_to(Path.cwd())}")
        if read_back(json.loads(OUT.read_text())) != spec:
            sys.exit(f"rule-groups: the rules in {OUT} differ from {RULES}")
        count = sum(len(g["rules"]) for g in spec["groups"])
        print(f"rule-groups: {OUT.name} holds the PrometheusRule's {count} rules")
    else:
        OUT.write_text(text)


if __name__ == "__main__":
    main()
