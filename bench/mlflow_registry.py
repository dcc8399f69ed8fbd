"""The peer of `bench/reconcile.sh`: registers the synthetic registry's models, versions and
aliases in MLflow's model registry (SQLite backend, the Python client in-process), the way a
script that syncs a registry into MLflow would. Prints one line: seconds, counts.

    python mlflow_registry.py DB_PATH REGISTRY_DIR
"""
import os
import re
import sys
import time

import mlflow
from mlflow import MlflowClient

db, registry = sys.argv[1], sys.argv[2]
uri = f"sqlite:///{db}"
mlflow.set_tracking_uri(uri)
mlflow.set_registry_uri(uri)
client = MlflowClient()


def field(text, name):
    m = re.search(rf"^\s*{name}:\s*\"?([^\"\n]+)\"?", text, re.M)
    return m.group(1).strip()


def documents(kind):
    folder = os.path.join(registry, kind)
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name)) as f:
            yield f.read()


# Parsing the YAML files is not timed: only the registry writes are.
models = [field(t, "name") for t in documents("models")]
versions = [(field(t, "model"), field(t, "version"), field(t, "uri")) for t in documents("versions")]
aliases = [(field(t, "model"), field(t, "alias"), field(t, "version")) for t in documents("aliases")]
# MLflow numbers versions itself, in creation order: create them in version order.
versions.sort(key=lambda v: (v[0], int(v[1])))

client.search_registered_models()  # creates the tables before the clock starts
started = time.perf_counter()
for m in models:
    client.create_registered_model(m)
for model, version, uri in versions:
    client.create_model_version(model, uri)
for model, alias, version in aliases:
    client.set_registered_model_alias(model, alias, version)
seconds = time.perf_counter() - started
print(f"{seconds:.2f} s: {len(models)} models, {len(versions)} versions, {len(aliases)} aliases")
