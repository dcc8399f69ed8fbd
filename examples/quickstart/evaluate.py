"""Evaluates a pitch-frame model on the hold-out frames and writes Slipway's results file.

Slipway sets SLIPWAY_MODEL_URI (the model file), SLIPWAY_DATASET_URI (the labelled frames) and
SLIPWAY_RESULTS (where to write {"metrics": …, "samples": […]}).
"""
import csv
import json
import os
import time


def load(path):
    with open(path) as f:
        return json.load(f)


def predict(model, x):
    best, best_d = None, None
    for label, centroids in model["centroids"].items():
        for c in centroids:
            d = sum((a - b) ** 2 for a, b in zip(x, c))
            if best_d is None or d < best_d:
                best, best_d = label, d
    return best


def main():
    model = load(os.environ["SLIPWAY_MODEL_URI"])
    with open(os.environ["SLIPWAY_DATASET_URI"].removeprefix("file://")) as f:
        rows = list(csv.DictReader(f))
    latencies, predictions = [], []
    for r in rows:
        x = [float(r[k]) for k in model["features"]]
        start = time.perf_counter()
        predictions.append(predict(model, x))
        latencies.append((time.perf_counter() - start) * 1000)
    labels = sorted({r["label"] for r in rows})
    f1s = []
    for c in labels:
        tp = sum(1 for r, p in zip(rows, predictions) if p == c and r["label"] == c)
        fp = sum(1 for r, p in zip(rows, predictions) if p == c and r["label"] != c)
        fn = sum(1 for r, p in zip(rows, predictions) if p != c and r["label"] == c)
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    latencies.sort()
    metrics = {
        "accuracy": round(sum(1 for r, p in zip(rows, predictions) if p == r["label"]) / len(rows), 4),
        "macro_f1": round(sum(f1s) / len(f1s), 4),
        # In microseconds: a prediction takes a few, which milliseconds would show as 0.
        "p95_latency_us": round(max(latencies[int(0.95 * len(latencies)) - 1], 0.001) * 1000, 1),
    }
    # A few frames from each half of the hold-out set, day and night.
    picked = rows[:4] + rows[len(rows) // 2: len(rows) // 2 + 4]
    samples = [{"input": r["frame"], "expected": r["label"], "prediction": predictions[rows.index(r)]} for r in picked]
    with open(os.environ["SLIPWAY_RESULTS"], "w") as f:
        json.dump({"metrics": metrics, "samples": samples}, f)
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
