#!/usr/bin/env python3
"""Helm without a helm binary: lints or renders a chart through helm-python-sdk (the Helm library
itself, .ci/requirements.txt), for .ci/checks/helm.sh and the deploy tests.

    .ci/helm.py lint CHART [--set K=V]...
    .ci/helm.py template CHART [--set K=V]... [--namespace NS] [--name RELEASE]
    .ci/helm.py package CHART --destination DIR

CHART is a chart directory or a packaged .tgz; `--set` takes what `helm --set` takes. `template`
prints the rendered objects as one YAML stream, in template order, as `helm template` does.
Exit status: 0 fine, 1 lint findings or a render error (printed), 2 bad usage, 3 the SDK is not
installed (so callers can tell a missing tool from a broken chart).
"""

import argparse
import contextlib
import os
import sys
import tempfile

MISSING_SDK = 3
# Lint severities: 1 info, 2 warning, 3 error. Warnings fail, as `helm lint --strict`.
WARNING = 2
# What the Go library logs for every file under files/ (links into deploy/, by design).
SYMLINK_NOTE = "found symbolic link in path"


@contextlib.contextmanager
def quiet_symlink_notes():
    """The library logs to fd 2 directly, bypassing Python; keep all but the link notes."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            log.seek(0)
            for line in log.read().decode(errors="replace").splitlines():
                if SYMLINK_NOTE not in line:
                    print(line, file=sys.stderr)


def load_sdk():
    try:
        import helm_python
    except ImportError as e:
        print(f"helm.py: helm-python-sdk is not installed ({e}); see .ci/requirements.txt", file=sys.stderr)
        sys.exit(MISSING_SDK)
    helm_python.disable_logging()
    return helm_python


def merged_sets(helm, expressions):
    """The --set expressions in order, later ones winning, as helm merges them."""
    values = {}
    for expression in expressions:
        deep_merge(values, helm.parse_set_string(expression))
    return values


def deep_merge(into, update):
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            deep_merge(into[key], value)
        else:
            into[key] = value


def lint(helm, args, values):
    with quiet_symlink_notes():
        report = helm.lint(args.chart, values, strict=True, namespace=args.namespace)
    messages = report.get("messages") or []
    for message in messages:
        print(f"helm lint: [{message.get('severity')}] {message.get('path')}: {message.get('error')}", file=sys.stderr)
    errors = report.get("errors") or []
    for error in errors:
        print(f"helm lint: {error}", file=sys.stderr)
    if errors or any(m.get("severity", 0) >= WARNING for m in messages):
        return 1
    print(f"helm lint: {args.chart}: {report.get('total_charts_linted', 0)} chart(s), no warnings", file=sys.stderr)
    return 0


def template(helm, args, values):
    with quiet_symlink_notes(), helm.Chart.load(args.chart) as chart:
        rendered = chart.render(values, name=args.name, namespace=args.namespace, is_install=True)
    documents = []
    for path in sorted(rendered):
        if path.endswith("NOTES.txt"):
            continue
        for document in rendered[path].split("\n---"):
            body = "\n".join(line for line in document.strip("\n").splitlines() if line.strip())
            if body and not all(line.lstrip().startswith("#") for line in body.splitlines()):
                documents.append(f"# Source: {path}\n{document.strip(chr(10))}\n")
    sys.stdout.write("---\n".join(documents))
    return 0


def package(helm, args, _values):
    with quiet_symlink_notes():
        print(helm.package(args.chart, destination=args.destination))
    return 0


def main():
    parser = argparse.ArgumentParser(description="helm lint / helm template through helm-python-sdk")
    parser.add_argument("command", choices=["lint", "template", "package"])
    parser.add_argument("chart")
    parser.add_argument("--set", action="append", default=[], metavar="K=V")
    parser.add_argument("--namespace", default="hybridprobe")
    parser.add_argument("--name", default="hybridprobe")
    parser.add_argument("--destination", default=".")
    args = parser.parse_args()
    helm = load_sdk()
    try:
        values = merged_sets(helm, args.set)
        return {"lint": lint, "template": template, "package": package}[args.command](helm, args, values)
    except helm.HelmError as e:
        print(f"helm.py {args.command} {args.chart}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
