"""Distributed data-parallel training on Lightning: two CPU processes (gloo) match one process."""

import csv
import subprocess
import sys
from pathlib import Path

from cellscreen.engine.curves import read_epoch_metrics


def _train(cells, out, *extra):
    script = Path(sys.executable).with_name("cellscreen")
    args = [str(script), "train", str(cells), "-d", "malaria-nih", "--out", str(out), "--epochs", "4",
            "--input-size", "16", "--batch-size", "16", "--set", "val=0.2", "--set", "test=0.2", "-q",
            "--bootstrap", "0", *extra]
    done = subprocess.run(args, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done


def test_ddp_on_two_cpu_processes_matches_one_process(learnable_cells, tmp_path):
    _train(learnable_cells, tmp_path / "single")
    made = _train(learnable_cells, tmp_path / "ddp", "--devices", "2", "--strategy", "ddp")
    assert made.stdout.count("checkpoint:") == 1  # only the first process reports
    single = read_epoch_metrics(tmp_path / "single" / "logs" / "csv")
    ddp = read_epoch_metrics(tmp_path / "ddp" / "logs" / "csv")
    assert sorted(ddp["val_acc"]) == [0, 1, 2, 3]
    # the same number of optimiser steps: --batch-size is the global batch, split over the processes
    steps = [max(int(row["step"]) for row in csv.DictReader((run / "logs/csv/version_0/metrics.csv").open()))
             for run in (tmp_path / "single", tmp_path / "ddp")]
    assert steps[0] == steps[1]
    # tolerance: half a point of validation accuracy (the target set for real data, see BENCHMARKS.md)
    assert abs(ddp["val_acc"][3] - single["val_acc"][3]) <= 0.005
    assert ddp["val_acc"][3] >= 0.95
    assert (tmp_path / "ddp" / "model.json").is_file() and (tmp_path / "ddp" / "test" / "metrics.json").is_file()
