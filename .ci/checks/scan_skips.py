"""checkov skips for scan.sh: strip them from rendered manifests, and judge a scan against them.

`strip FILE` prints FILE without its `checkov.io/skip*` annotations. `judge NAME FILE SCAN
STRIPPED` fails on any finding in SCAN, on a skip without a reason, and on a skip whose check
passes once the skips are stripped (a skip that no longer applies).
"""
import json
import sys

import yaml

SKIP = "checkov.io/skip"


def documents(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def skips(doc):
    """{check id: reason} from an object's annotations."""
    found = {}
    for key, value in (doc.get("metadata", {}).get("annotations") or {}).items():
        if key.startswith(SKIP):
            check, _, reason = str(value).partition("=")
            found[check.strip()] = reason.strip()
    return found


def strip(path):
    docs = documents(path)
    for doc in docs:
        annotations = doc.get("metadata", {}).get("annotations") or {}
        for key in [k for k in annotations if k.startswith(SKIP)]:
            del annotations[key]
    yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)


def results(path, kind):
    with open(path) as f:
        report = json.load(f)
    # One framework gives an object, several a list; an empty scan gives a summary only.
    reports = report if isinstance(report, list) else [report]
    return [r for rep in reports for r in rep.get("results", {}).get(kind, [])]


def judge(name, path, scan, stripped):
    problems = []
    for r in results(scan, "failed_checks"):
        problems.append(f"{r['check_id']} ({r['check_name']}) on {r['resource']}")
    wanted = {}
    for doc in documents(path):
        for check, reason in skips(doc).items():
            if not reason:
                problems.append(f"skip of {check} on {doc['kind']} without a reason")
            wanted[check] = doc["kind"]
    failing = {r["check_id"] for r in results(stripped, "failed_checks")}
    for check, kind in sorted(wanted.items()):
        if check not in failing:
            problems.append(f"skip of {check} on {kind} is not needed: it passes without it")
    for p in problems:
        print(f"scan {name}: {p}", file=sys.stderr)
    print(f"scan {name}: {len(results(scan, 'passed_checks'))} passed, {len(wanted)} skipped")
    return not problems


if __name__ == "__main__":
    if sys.argv[1] == "strip":
        strip(sys.argv[2])
    else:
        sys.exit(0 if judge(*sys.argv[2:6]) else 1)
