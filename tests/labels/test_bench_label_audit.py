"""bench/label_audit.py as a user runs it, on fake slides whose "relabelling" the fake out-of-fold file knows."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from cellscreen.data.index import scan_dataset
from cellscreen.data.sources import get_profile
from tests.conftest import make_malaria_like
from tests.labels.helpers import fake_oof

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "label_audit.py"


def test_bench_scores_the_flagged_cells_against_the_relabelling(tmp_path):
    slides = {f"C{n}": {"Parasitized": 4, "Uninfected": 4} for n in range(1, 11)}
    images = make_malaria_like(tmp_path / "data" / "malaria-nih", slides)
    index = scan_dataset(images, get_profile("malaria-nih"), progress=False, remember=False)
    relabelled = [r for r in index.records][::16]  # 5 cells the "relabelling" disputes
    other = {"Parasitized": "Uninfected", "Uninfected": "Parasitized"}
    with (images.parent / "relabelled-fuhad2020.csv").open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["path", "label", "relabelled"])
        writer.writerows([(r.path, r.label, other[r.label]) for r in relabelled])
    truth = {r.path: other[r.label] if r in relabelled else r.label for r in index.records}
    oof = fake_oof(index, truth, tmp_path / "oof.csv")
    env = {**os.environ, "CELLSCREEN_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    made = subprocess.run([sys.executable, str(SCRIPT), "--data", str(tmp_path / "data"), "--out",
                           str(tmp_path / "audit"), "--oof", str(oof)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert made.returncode == 0, made.stderr
    result = json.loads(made.stdout)
    assert result["relabelled"] == 5 and result["cells"] == len(index.records)
    assert result["audit"] == {"flagged": 5, "hits": 5, "precision": 1.0, "recall": 1.0}
    assert result["baseline_disagreement"]["recall"] == 1.0
    assert result["top_n"]["300"]["recall"] == 1.0 and result["top_n"]["300"]["flagged"] == 80
