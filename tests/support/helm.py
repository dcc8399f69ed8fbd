"""Renders and lints the Helm chart with a real Helm engine (PyPI helm-python-sdk, Helm v4 as a
library), for the tests. `scripts/helm-python.sh` provides the interpreter.

    helm.py render CHART RELEASE NAMESPACE VALUES_JSON   -> the manifests, one YAML stream
    helm.py lint CHART                                   -> the findings as JSON; exit 1 on errors
"""
import json
import sys

import helm_python

command, chart = sys.argv[1], sys.argv[2]
if command == "render":
    release, namespace, values = sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
    try:
        rendered = helm_python.Chart.load(chart).render(values, name=release, namespace=namespace)
    except Exception as e:  # Helm's own error text (e.g. from `required` or `fail`)
        print(e, file=sys.stderr)
        sys.exit(1)
    for path in sorted(rendered):
        if path.endswith(".yaml") and rendered[path].strip():
            print(f"# Source: {path}\n{rendered[path].strip()}\n---")
elif command == "lint":
    result = helm_python.lint(chart)
    print(json.dumps(result))
    sys.exit(1 if result.get("errors") else 0)
else:
    sys.exit(f"unknown command {command}")
