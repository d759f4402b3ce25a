"""A scikit-learn model server for ml-operator: Python's standard library and Debian's scikit-learn.

It loads the model that the ml-operator fetcher unpacked into MODEL_PATH (metadata.json naming the
estimator's file, model.joblib) and serves it on PORT (both set by the controller):

    GET  /healthz, GET /    200 {"status": "ready", ...} once the model is loaded; 503 before, and
                            from SIGTERM on (the readiness probe: readinessPath /healthz)
    GET  /livez             200 while the process serves
    POST /predict           {"instances": [[5.1, 3.5, 1.4, 0.2], ...]} ->
                            {"predictions": [0, ...], "labels": ["setosa", ...], "model": "iris/1.0.0", "pod": ...}
    GET  /predict           the same answer for the model's example rows (metadata.json "examples"):
                            the request the gateway load tools send, so that they exercise the model

Environment: MODEL_PATH (default /opt/ml/model), PORT (8080), HOST (0.0.0.0), MAX_INSTANCES (1000),
DRAIN_SECONDS (10: how long requests in flight may finish after SIGTERM). It writes nothing to disk:
it runs with a read-only root filesystem, as any user. On SIGTERM (or SIGINT) it stops accepting
connections, lets the requests in flight finish, and exits 0.

The model file is a pickle: loading it runs code from the artifact. Serve only artifacts you trust
(pin them with the model's artifactSha256).
"""
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1 << 20


def log(msg, **fields):
    print(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "msg": msg, **fields}), flush=True)


class Model:
    """The loaded estimator and its metadata; `error` when loading failed."""

    def __init__(self, path):
        self.path = path
        self.ready = threading.Event()
        self.estimator = None
        self.metadata = {}
        self.artifact = None

    def load(self):
        started = time.monotonic()
        with open(os.path.join(self.path, "metadata.json"), encoding="utf-8") as f:
            metadata = json.load(f)
        for key in ("name", "version", "file", "features", "classes"):
            if key not in metadata:
                raise ValueError(f"metadata.json has no {key!r}")
        import joblib  # scikit-learn and numpy load with it: about a second

        estimator = joblib.load(os.path.join(self.path, metadata["file"]))
        if getattr(estimator, "n_features_in_", len(metadata["features"])) != len(metadata["features"]):
            raise ValueError(f"the estimator takes {estimator.n_features_in_} features, metadata.json names {len(metadata['features'])}")
        try:
            # Written by the ml-operator fetcher: the artifact's URI and digest.
            with open(os.path.join(self.path, ".ml-operator-artifact"), encoding="utf-8") as f:
                marker = json.load(f)
            self.artifact = {"uri": marker.get("uri"), "sha256": marker.get("sha256")}
        except (OSError, ValueError):
            pass
        self.estimator, self.metadata = estimator, metadata
        self.ready.set()
        log("model loaded", model=self.id(), algorithm=metadata.get("algorithm"), seconds=round(time.monotonic() - started, 3))

    def id(self):
        return f"{self.metadata.get('name')}/{self.metadata.get('version')}"

    def predict(self, instances):
        predictions = [int(p) for p in self.estimator.predict(instances)]
        classes = self.metadata["classes"]
        return {"predictions": predictions, "labels": [classes[p] if 0 <= p < len(classes) else None for p in predictions]}


class BadRequest(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def check_instances(body, width, limit):
    if not isinstance(body, dict) or "instances" not in body:
        raise BadRequest(400, 'expected a JSON object {"instances": [[...], ...]}')
    instances = body["instances"]
    if not isinstance(instances, list) or not instances:
        raise BadRequest(400, '"instances" must be a non-empty list of rows')
    if len(instances) > limit:
        raise BadRequest(413, f'{len(instances)} instances: at most {limit} per request')
    for i, row in enumerate(instances):
        if not isinstance(row, list) or len(row) != width:
            raise BadRequest(400, f"instance {i}: expected a list of {width} numbers")
        for v in row:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (float("inf"), float("-inf")):
                raise BadRequest(400, f"instance {i}: {json.dumps(v)} is not a finite number")
    return instances


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 drops the connections a gateway opens at once beyond it
    # (each then waits for the client's SYN retransmit, a second or more).
    request_queue_size = 128

    def __init__(self, address, model, max_instances):
        super().__init__(address, Handler)
        self.model = model
        self.max_instances = max_instances
        self.draining = threading.Event()
        self.pod = socket.gethostname()
        self.inflight = 0
        self.idle = threading.Condition()

    def wait_idle(self, seconds):
        deadline = time.monotonic() + seconds
        with self.idle:
            while self.inflight and time.monotonic() < deadline:
                self.idle.wait(deadline - time.monotonic())
            return self.inflight


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The headers and the body go out in two writes: with Nagle's algorithm the body waits for the
    # peer's (delayed, up to 40 ms) acknowledgement of the headers on a busy keep-alive connection.
    disable_nagle_algorithm = True
    server_version = "ml-operator-sklearn-server/1.0"
    # An idle keep-alive connection is closed after this many seconds.
    timeout = 30

    def log_message(self, format, *args):
        pass

    def send_json(self, status, body):
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.server.draining.is_set():
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def tracked(self, handle):
        """Runs `handle` counted as a request in flight (an idle keep-alive connection is not one)."""
        with self.server.idle:
            self.server.inflight += 1
        try:
            handle()
        finally:
            with self.server.idle:
                self.server.inflight -= 1
                self.server.idle.notify_all()

    def do_GET(self):
        self.tracked(self.get)

    def do_POST(self):
        self.tracked(self.post)

    def path_only(self):
        return self.path.split("?", 1)[0]

    def get(self):
        path, model = self.path_only(), self.server.model
        if path == "/livez":
            return self.send_json(200, {"status": "alive"})
        if path in ("/healthz", "/"):
            if self.server.draining.is_set():
                return self.send_json(503, {"status": "shutting down"})
            if not model.ready.is_set():
                return self.send_json(503, {"status": "loading"})
            m = model.metadata
            info = {"status": "ready", "model": model.id(), "algorithm": m.get("algorithm"), "framework": m.get("framework"), "features": m["features"], "classes": m["classes"], "pod": self.server.pod}
            return self.send_json(200, {**info, **({"artifact": model.artifact} if model.artifact else {})})
        if path == "/predict":
            examples = model.metadata.get("examples") if model.ready.is_set() else None
            if not examples:
                return self.send_json(503 if not model.ready.is_set() else 405, {"error": "POST /predict with {\"instances\": [[...], ...]}"})
            return self.answer(examples)
        self.send_json(404, {"error": f"no route GET {path}"})

    def post(self):
        path = self.path_only()
        if path != "/predict":
            return self.send_json(404, {"error": f"no route POST {path}"})
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            length = -1
        if length < 0 or self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            return self.send_json(411, {"error": "a body with Content-Length is required"})
        if length > MAX_BODY:
            self.close_connection = True
            return self.send_json(413, {"error": f"body of {length} bytes: at most {MAX_BODY}"})
        raw = self.rfile.read(length)
        if not self.server.model.ready.is_set():
            return self.send_json(503, {"error": "the model is loading"})
        try:
            body = json.loads(raw or b"null")
        except ValueError as e:
            return self.send_json(400, {"error": f"not JSON: {e}"})
        try:
            instances = check_instances(body, len(self.server.model.metadata["features"]), self.server.max_instances)
        except BadRequest as e:
            return self.send_json(e.status, {"error": str(e)})
        self.answer(instances)

    def answer(self, instances):
        model = self.server.model
        try:
            result = model.predict(instances)
        except Exception as e:  # the estimator's own refusal of an input
            return self.send_json(400, {"error": f"{type(e).__name__}: {e}"})
        self.send_json(200, {**result, "model": model.id(), "pod": self.server.pod})


def main():
    model_path = os.environ.get("MODEL_PATH", "/opt/ml/model")
    host = os.environ.get("HOST", "0.0.0.0")
    port = int(os.environ.get("PORT", "8080"))
    drain = float(os.environ.get("DRAIN_SECONDS", "10"))
    model = Model(model_path)
    server = Server((host, port), model, int(os.environ.get("MAX_INSTANCES", "1000")))
    stop = threading.Event()
    failed = []

    def on_signal(signum, _frame):
        log("shutting down", signal=signal.Signals(signum).name)
        server.draining.set()
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def load():
        try:
            model.load()
        except Exception as e:
            log("cannot load the model", path=model_path, error=f"{type(e).__name__}: {e}")
            failed.append(e)
            stop.set()

    # Listening before the model loads: the readiness route answers 503 meanwhile.
    serving = threading.Thread(target=server.serve_forever, name="serve", daemon=True)
    serving.start()
    log("listening", address=f"{host}:{port}", modelPath=model_path)
    threading.Thread(target=load, name="load", daemon=True).start()
    while not stop.wait(3600):
        pass
    server.shutdown()
    server.server_close()
    left = server.wait_idle(drain)
    if left:
        log("requests still in flight at exit", requests=left)
    log("stopped")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
