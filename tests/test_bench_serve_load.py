"""bench/serve_load.py against a real ``cellscreen serve`` of the bundled model, a few requests from a few
clients on synthetic cells: every request answered, and the latencies and batches accounted for."""

from __future__ import annotations

import os

from tests.benchscripts import bench, lines
from tests.conftest import make_malaria_like


def test_serve_load_sends_every_request_and_reports_latency_and_batches(tmp_path):
    make_malaria_like(tmp_path / "malaria", {"C1": {"Parasitized": 15, "Uninfected": 15}}, size=(20, 20))
    done = bench("serve_load.py", "--requests", 24, "--clients", 3, "--data", tmp_path / "malaria",
                 env={**os.environ, "OMP_NUM_THREADS": "1"})
    (row,) = lines(done)  # the server's own start-up line shares stdout
    assert (row["requests"], row["clients"], row["errors"]) == (24, 3, 0)
    assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] and row["cells_per_s"] > 0
    assert row["model_batches"] >= 1 and row["mean_batch"] == round(24 / row["model_batches"], 2)
    assert "| 24 | 3 | 0 |" in done.stdout  # the Markdown row
