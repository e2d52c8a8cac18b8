"""Load test of `cellscreen serve`: many concurrent clients on loopback, one cell per request.

    python bench/serve_load.py --requests 1000 --clients 16 [--model malaria]

Starts ``cellscreen serve MODEL`` on a free local port, waits for
``/healthz`` and sends 20 untimed warm-up requests, then ``--clients`` threads, each with its own keep-alive
connection, send ``POST /v1/predict`` with one real NIH cell per request until
``--requests`` have been sent.  Prints the errors (any answer but 200 with one
result), p50/p90/p99 latency, requests/s (= cells/s), and how many model
batches the server ran for them (``/v1/model``), as JSON and a Markdown row.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np


def _multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, path: str) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path)
    return json.loads(connection.getresponse().read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--model", default="malaria")
    parser.add_argument("--engine", default="auto")
    parser.add_argument("--data", default=None)
    args = parser.parse_args()

    from cellscreen.data.sources import get_profile, resolve_dataset_dir
    from cellscreen.serve.predict import list_inputs

    root = resolve_dataset_dir(get_profile("malaria-nih"), None, data=args.data)
    files = [path for path, reason in list_inputs([root]) if reason is None]
    cells = [(p.name, p.read_bytes()) for p in files[:: max(1, len(files) // 200)][:200]]
    port = _free_port()
    server = subprocess.Popen([str(Path(sys.executable).with_name("cellscreen")), "serve", args.model, "--port",
                               str(port), "--engine", args.engine, "-q"], env=os.environ)
    try:
        for _ in range(1200):
            try:
                if _get(port, "/healthz")["status"] == "ok":
                    break
            except OSError:
                time.sleep(0.1)
        warm = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for name, data in cells[:20]:  # first requests pay for lazy imports and allocations; not timed
            body, content_type = _multipart(name, data)
            warm.request("POST", "/v1/predict", body=body, headers={"Content-Type": content_type})
            warm.getresponse().read()
        before = _get(port, "/v1/model")["batching"]
        latencies, errors, lock, counter = [], [], threading.Lock(), iter(range(args.requests))

        def client() -> None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            while True:
                with lock:
                    k = next(counter, None)
                if k is None:
                    return
                name, data = cells[k % len(cells)]
                body, content_type = _multipart(name, data)
                start = time.perf_counter()
                try:
                    connection.request("POST", "/v1/predict", body=body, headers={"Content-Type": content_type})
                    answer = connection.getresponse()
                    payload = answer.read()
                    ok = answer.status == 200 and len(json.loads(payload)["results"]) == 1
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    ok, payload = False, repr(exc).encode()
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed)
                    if not ok:
                        errors.append(payload[:200])

        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - start
        after = _get(port, "/v1/model")
    finally:
        server.terminate()
        server.wait(timeout=30)
    batches = after["batching"]["batches"] - before["batches"]
    ms = np.array(latencies) * 1000
    row = {"requests": len(latencies), "clients": args.clients, "errors": len(errors), "engine": after["engine"],
           "p50_ms": round(float(np.percentile(ms, 50)), 1), "p90_ms": round(float(np.percentile(ms, 90)), 1),
           "p99_ms": round(float(np.percentile(ms, 99)), 1), "cells_per_s": round(len(latencies) / wall, 1),
           "model_batches": batches, "mean_batch": round(len(latencies) / max(batches, 1), 2)}
    print(json.dumps(row))
    if errors:
        print("first errors:", errors[:3], file=sys.stderr)
    print("\n| requests | clients | errors | p50 (ms) | p90 (ms) | p99 (ms) | cells/s | mean batch |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {row['requests']:,} | {row['clients']} | {row['errors']} | {row['p50_ms']} | {row['p90_ms']} | "
          f"{row['p99_ms']} | {row['cells_per_s']} | {row['mean_batch']} |")


if __name__ == "__main__":
    main()
