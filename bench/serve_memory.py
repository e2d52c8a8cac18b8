"""Memory of `cellscreen serve` under the worst uploads its limits let through: start, peak and idle RSS.

    python bench/serve_memory.py [--clients 16 --files 256 --side 4000 --kinds gray16 rgb16 rgba16]

Starts ``cellscreen serve MODEL`` on a free port of 127.0.0.1, waits for ``/healthz``, sends one small cell
(the first request pays for lazy imports) and reads the server's resident memory: the start.  Then
``--clients`` threads each send ``--requests`` requests of ``--files`` PNGs of ``--side`` x ``--side`` pixels
(16 megapixels by default, the service's limit), 16 bits per channel, cycling through ``--kinds`` (gray,
RGB, RGBA).  Constant pixels compress well, so 256 of them fit the 32 MB upload limit while each needs
its full size to decode.  A client that has no answer after ``--give-up`` seconds hangs up (the server
then drops the rest of its work).  The server's RSS is sampled every 0.1 s (psutil if installed, else
``/proc/PID/status``); the kernel's own high-water mark (VmHWM) is read too.  After the last client, the
server is left idle for ``--idle`` seconds and its RSS read again.  Prints one JSON line and a Markdown row.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
import zlib
from pathlib import Path

MB = 2**20
KINDS = {"gray16": 0, "rgb16": 2, "rgba16": 6}  # PNG colour types, all at 16 bits per channel


def constant_png(side: int, colour_type: int) -> bytes:
    """A 16-bit PNG of ``side`` x ``side`` pixels of one colour, written directly (Pillow writes no 16-bit
    colour PNG): kilobytes on disk, ``side**2`` x 2 x channels bytes once decoded."""
    channels = {0: 1, 2: 3, 6: 4}[colour_type]
    row = b"\0" + b"\x9c\x40" * channels * side
    packer = zlib.compressobj(9)
    pixels = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", side, side, 16, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = io.BytesIO()
    for name, data in files:
        body.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
                   "Content-Type: image/png\r\n\r\n".encode())
        body.write(data)
        body.write(b"\r\n")
    body.write(f"--{boundary}--\r\n".encode())
    return body.getvalue(), f"multipart/form-data; boundary={boundary}"


def memory_of(pid: int) -> tuple[int, int]:
    """``(resident, high-water mark)`` bytes of process ``pid``."""
    try:
        import psutil  # optional: only to read memory on systems without /proc
    except ImportError:
        psutil = None
    if psutil is not None and not Path(f"/proc/{pid}/status").exists():
        info = psutil.Process(pid).memory_info()
        return info.rss, getattr(info, "peak_wset", info.rss)
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields["VmRSS"], fields["VmHWM"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, body: bytes, content_type: str, timeout: float) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", "/v1/predict", body=body, headers={"Content-Type": content_type})
        answer = connection.getresponse()
        answer.read()
        return answer.status
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="malaria")
    parser.add_argument("--engine", default="auto")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=1, help="per client")
    parser.add_argument("--files", type=int, default=256, help="per request (the service's limit)")
    parser.add_argument("--side", type=int, default=4000, help="pixels: 4000 x 4000 is the 16-megapixel limit")
    parser.add_argument("--kinds", nargs="+", choices=sorted(KINDS), default=["gray16", "rgb16", "rgba16"])
    parser.add_argument("--give-up", type=float, default=120.0, help="seconds a client waits for its answer")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds the server is left idle afterwards")
    parser.add_argument("--serve-args", nargs=argparse.REMAINDER, default=[],
                        help="anything more for cellscreen serve (last), e.g. --decode-budget-mb 512")
    args = parser.parse_args()

    pictures = {kind: constant_png(args.side, KINDS[kind]) for kind in args.kinds}
    files = [(f"cell{k}-{args.kinds[k % len(args.kinds)]}.png", pictures[args.kinds[k % len(args.kinds)]])
             for k in range(args.files)]
    body, content_type = multipart(files)
    port = _free_port()
    command = [str(Path(sys.executable).with_name("cellscreen")), "serve", args.model, "--port", str(port),
               "--engine", args.engine, "-q", *args.serve_args]
    server = subprocess.Popen(command, env=os.environ)
    samples, stop = [], threading.Event()
    try:
        for _ in range(3000):
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/healthz")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                assert server.poll() is None, "the server stopped"
                time.sleep(0.1)
        small, small_type = multipart([("small.png", constant_png(64, 2))])
        assert _post(port, small, small_type, 60) == 200
        start, _ = memory_of(server.pid)

        def sample():
            while not stop.is_set():
                samples.append(memory_of(server.pid)[0])
                time.sleep(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        statuses, lock = [], threading.Lock()

        def client():
            for _ in range(args.requests):
                try:
                    status = _post(port, body, content_type, args.give_up)
                except OSError as exc:  # socket.timeout included: the client gave up
                    status = type(exc).__name__
                with lock:
                    statuses.append(status)

        began = time.monotonic()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        burst = time.monotonic() - began
        time.sleep(args.idle)
        stop.set()
        sampler.join()
        idle, high_water = memory_of(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=60)
    counts = {str(status): statuses.count(status) for status in sorted(set(statuses), key=str)}
    figures = {"clients": args.clients, "requests_per_client": args.requests, "files_per_request": args.files,
               "side": args.side, "kinds": args.kinds, "request_mb": round(len(body) / MB, 1),
               "answers": counts, "burst_s": round(burst, 1), "start_rss_mb": round(start / MB),
               "peak_rss_mb": round(max(samples + [idle]) / MB), "peak_hwm_mb": round(high_water / MB),
               "idle_rss_mb": round(idle / MB), "serve_args": args.serve_args}
    figures["idle_minus_start_mb"] = figures["idle_rss_mb"] - figures["start_rss_mb"]
    print(json.dumps(figures))
    print("| clients x files | request | answers | start RSS | peak RSS (VmHWM) | idle RSS after "
          f"{args.idle:g} s |\n|---|---|---|---|---|---|\n| {args.clients} x {args.files} of {args.side}x{args.side} "
          f"{'/'.join(args.kinds)} | {figures['request_mb']} MB | {counts} | {figures['start_rss_mb']} MB | "
          f"{figures['peak_rss_mb']} MB ({figures['peak_hwm_mb']} MB) | {figures['idle_rss_mb']} MB |")


if __name__ == "__main__":
    main()
