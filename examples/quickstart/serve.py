"""Serves a pitch-frame model over HTTP (Python standard library only).

Slipway's local target starts one server per version with PORT, MODEL_URI and MODEL_VERSION set,
and routes traffic to them by weight.

  GET  /healthz                                       -> 200 "ok"
  GET  /predict?grass=0.7&lines=0.05&crowd=0.1&brightness=0.6
  POST /predict  {"grass": 0.7, "lines": 0.05, "crowd": 0.1, "brightness": 0.6}
       -> {"label": "open-play", "version": "8"}
"""
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from evaluate import predict

with open(os.environ["MODEL_URI"]) as f:
    MODEL = json.load(f)
VERSION = os.environ.get("MODEL_VERSION", "?")


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def classify(self, features):
        if MODEL.get("kind") != "nearest-centroid":
            # A model file this server cannot use: every prediction fails (health stays green).
            return self.reply(500, {"error": f"cannot use model kind {MODEL.get('kind')!r}", "version": VERSION})
        try:
            x = [float(features[k]) for k in MODEL["features"]]
        except (KeyError, ValueError) as e:
            return self.reply(400, {"error": f"need numeric {MODEL['features']}: {e}"})
        self.reply(200, {"label": predict(MODEL, x), "version": VERSION})

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/healthz":
            return self.reply(200, {"status": "ok", "version": VERSION})
        if url.path == "/predict":
            return self.classify({k: v[0] for k, v in parse_qs(url.query).items()})
        self.reply(404, {"error": "try /predict or /healthz"})

    def do_POST(self):
        if urlparse(self.path).path != "/predict":
            return self.reply(404, {"error": "try POST /predict"})
        length = int(self.headers.get("Content-Length", 0))
        try:
            features = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError as e:
            return self.reply(400, {"error": f"body is not JSON: {e}"})
        self.classify(features)


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
