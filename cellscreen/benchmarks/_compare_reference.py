"""``bench compare-reference``: cellscreen against the Keras reference (``keras_reference.py`` beside this
module) on the same split, fold and epochs, with ratios cellscreen / reference.

The reference script and its ``requirements-keras.txt`` ship inside the package, so the command works
from an installed wheel: the script is run by its path with the Keras environment's Python (which has
no cellscreen), never imported."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cellscreen.benchmarks._common import record, rounded, significant
from cellscreen.benchmarks._time_to_accuracy import epoch_log, first_reaching, time_to_accuracy, train_quietly
from cellscreen.errors import UserError

__all__ = ["KERAS_REQUIREMENTS", "KERAS_SETUP", "REFERENCE_SCRIPT", "compare_reference"]

REFERENCE_SCRIPT = Path(__file__).resolve().with_name("keras_reference.py")
KERAS_REQUIREMENTS = REFERENCE_SCRIPT.with_name("requirements-keras.txt")
KERAS_SETUP = f"python -m venv .venv-keras && .venv-keras/bin/pip install -r {shlex.quote(str(KERAS_REQUIREMENTS))}"


def _reference(python: str | None, script: str | Path | None) -> tuple[str, Path]:
    python = python or os.environ.get("CELLSCREEN_KERAS_PYTHON")
    how = (f"create it with `{KERAS_SETUP}` and pass --reference-python .venv-keras/bin/python "
           "or set CELLSCREEN_KERAS_PYTHON")
    if not python:
        raise UserError(f"compare-reference needs a Python with TensorFlow/Keras for the reference: {how}")
    found = shutil.which(python) or (python if Path(python).is_file() else None)
    if not found:
        raise UserError(f"the reference Python {python} does not exist: {how}")
    script = Path(script) if script else REFERENCE_SCRIPT
    if not script.is_file():
        raise UserError(f"the Keras reference script {script} is missing")
    return found, script


def _run_reference(python: str, script: Path, task: str, args: list[str]) -> tuple[dict, float]:
    """Run one task of the reference; its JSON line for that task and the whole process's wall seconds."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    start = time.perf_counter()
    done = subprocess.run([python, str(script), task, *args], check=False, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise UserError(f"the Keras reference's {task} failed (exit status {done.returncode}): {last}")
    for line in reversed(done.stdout.splitlines()):
        with contextlib.suppress(ValueError):
            result = json.loads(line)
            if isinstance(result, dict) and result.get("task") == task:
                return result, seconds
    raise UserError(f"the Keras reference's {task} printed no JSON line with \"task\": \"{task}\"")


def _test_folder(root: Path, rows: list[dict], limit: int | None, into: Path) -> int:
    """Copy the test cells (a spread of ``limit`` of them) into ``into``, keeping their class folders."""
    rows = sorted(rows, key=lambda r: r["path"])
    if limit:
        rows = rows[:: max(1, len(rows) // limit)][:limit]
    for row in rows:
        target = into / row["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / row["path"], target)
    return len(rows)


def _cellscreen_predict(inputs: Path, out: Path, engine: str = "auto") -> tuple[int, float]:
    """``cellscreen predict malaria INPUTS`` as a whole process: (cells predicted, wall seconds)."""
    if engine in ("auto", "onnx"):
        from cellscreen.serve.runtime import load_predictor  # keeps start-up fast

        load_predictor("malaria", engine="onnx")  # its ONNX export is cached once, as after a first use
    script = Path(sys.executable).with_name("cellscreen")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "cellscreen.cli"]
    start = time.perf_counter()
    done = subprocess.run(command + ["predict", "malaria", str(inputs), "--out", str(out), "--quiet",
                                     "--engine", engine],
                          check=False, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise UserError(f"cellscreen predict failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return int(json.loads(out.with_name(out.name + ".json").read_text())["predicted"]), seconds


def _ratio(a: float | None, b: float | None) -> float | None:
    """a / b to 4 significant digits (None if either is missing)."""
    return significant(a / b) if a is not None and b else None


def epoch_end_seconds(epoch_seconds: list[float], total: float | None) -> list[float]:
    """Seconds from the start of fitting to each epoch's end, whether ``epoch_seconds`` holds each epoch's
    duration or already the running total (the one whose last value is nearer ``total`` is taken)."""
    running = [float(t) for t in np.cumsum(epoch_seconds)]
    if total is not None and epoch_seconds and abs(epoch_seconds[-1] - total) < abs(running[-1] - total):
        return [float(t) for t in epoch_seconds]
    return running


def reference_seconds_to(result: dict, target: float) -> float | None:
    """When the reference's own epochs first reached ``target``, in seconds of fitting."""
    times = epoch_end_seconds(result.get("epoch_seconds") or [], result.get("seconds"))
    accuracies = result.get("epoch_val_accuracy") or []
    return first_reaching(times, accuracies, target)[1] if times and accuracies else None


def compare_reference(*, data: str | None = None, split: str | Path, fold: int | None = None, epochs: int = 5,
                      limit: int | None = None, dataset: str = "malaria-nih", size: int = 128,
                      batch_size: int = 16, reference_python: str | None = None,
                      reference_script: str | Path | None = None, predict_limit: int | None = None,
                      predict_engine: str = "auto", default_recipe: bool = False, progress: bool = False,
                      workers: int | None = None) -> dict:
    """cellscreen and the Keras reference on the same split, fold, epochs and training-cell limit.

    Training: cellscreen's ``seed_malaria_cnn`` preset (Adam, batch 16, early stopping on validation loss
    with patience 2, as the study and the reference do) against the reference's ``train`` (given
    ``--threads``: as many as torch uses here); cellscreen's images/s is training cells x epochs over the
    fitting time (TensorBoard, validation included, set-up not).  Prediction: the test fold's PNGs, copied
    to a temporary folder, through ``cellscreen predict malaria --engine predict_engine`` and the reference's
    ``predict``, each timed as a whole process (start-up included), each with its own default threads.  The
    reference gets ``--data`` as the folder holding the class folders, which the split's paths are
    relative to.  Ratios are cellscreen / reference.  The time to the reference's
    final validation accuracy is read from both training logs; with ``default_recipe`` cellscreen's default
    recipe is also trained to it (``time_to_accuracy``).
    """
    from cellscreen.config import load_config  # keeps start-up fast
    from cellscreen.data.sources import get_profile, resolve_dataset_dir
    from cellscreen.data.splits import read_manifest
    from cellscreen.engine.kinds import load_checkpoint
    from cellscreen.engine.data import subset_rows
    from cellscreen.engine.inference import logits_to_proba, predict_logits

    python, script = _reference(reference_python, reference_script)
    root = resolve_dataset_dir(get_profile(dataset), data).resolve()
    split = Path(split).resolve()
    test_rows = subset_rows(read_manifest(split), fold).get("test")
    if not test_rows:
        raise UserError(f"{split} has no test cells{f' in fold {fold}' if fold is not None else ''}")
    threads = torch.get_num_threads()
    common = ["--size", str(size)]
    train_args = ["--data", str(root), "--split", str(split), *(["--fold", str(fold)] if fold is not None else []),
                  "--epochs", str(epochs), *(["--limit", str(limit)] if limit else []), *common,
                  "--batch-size", str(batch_size), "--threads", str(threads)]
    with tempfile.TemporaryDirectory(prefix="cellscreen-bench-") as tmp:
        tmp = Path(tmp)
        test_cells = _test_folder(root, test_rows, predict_limit, tmp / "test")

        config = load_config("seed_malaria_cnn", {"dataset": dataset, "split": str(split), "fold": fold,
                                                  "epochs": epochs, "train_limit": limit, "input_size": size,
                                                  "batch_size": batch_size})
        result = train_quietly(config, out=tmp / "run", data=str(root), progress=progress, workers=workers)
        fit_start, validations = epoch_log(tmp / "run")
        times = [t - fit_start for t, _ in validations]
        accuracies = [a for _, a in validations]
        fit_seconds = times[-1]
        train_images = len(result.data.subsets["train"])
        test = result.data.subsets.get("test")
        net = load_checkpoint(result.checkpoint).model
        test_accuracy = None
        if test is not None and len(test):
            predicted = logits_to_proba(torch.from_numpy(predict_logits(net, test.images))).argmax(1)
            test_accuracy = float((predicted == test.targets).float().mean())
        ours_train = {"recipe": "seed_malaria_cnn preset", "size": size,
                      "batch_size": batch_size, "images": train_images, "epochs": len(validations),
                      "seconds": rounded(fit_seconds),
                      "images_per_s": rounded(train_images * len(validations) / fit_seconds, 1),
                      "val_accuracy": rounded(accuracies[-1], 4), "test_accuracy": rounded(test_accuracy, 4),
                      "epoch_seconds": [rounded(b - a) for a, b in zip([0.0, *times], times)],
                      "epoch_end_seconds": [rounded(t) for t in times],
                      "epoch_val_accuracy": [rounded(a, 4) for a in accuracies]}

        theirs_train, theirs_train_process = _run_reference(python, script, "train", train_args)
        ours_cells, ours_seconds = _cellscreen_predict(tmp / "test", tmp / "cellscreen.csv", predict_engine)
        theirs_predict, theirs_predict_process = _run_reference(python, script, "predict",
                                                                ["--inputs", str(tmp / "test"), *common])

    theirs_train = {k: v for k, v in theirs_train.items() if k not in ("tool", "task")}
    theirs_train["process_seconds"] = rounded(theirs_train_process)
    theirs_predict = {k: v for k, v in theirs_predict.items() if k not in ("tool", "task")}
    reference_cells = theirs_predict.get("cells", test_cells)
    theirs_predict.update(process_seconds=rounded(theirs_predict_process),
                          process_cells_per_s=rounded(reference_cells / theirs_predict_process, 1))
    ours_predict = {"model": "malaria (bundled)", "engine": predict_engine, "cells": ours_cells,
                    "process_seconds": rounded(ours_seconds),
                    "process_cells_per_s": rounded(ours_cells / ours_seconds, 1)}

    target = theirs_train.get("val_accuracy")
    # the reference rounds accuracies to 4 decimals: an accuracy within that rounding counts as reached
    reached_at = None if target is None else target - 5e-5
    reach: dict = {"target": target, "reference_seconds": None, "cellscreen_seed_recipe_seconds": None,
                   "cellscreen_default_recipe_seconds": None}
    if target is not None:
        reach["reference_seconds"] = rounded(reference_seconds_to(theirs_train, reached_at))
        reach["cellscreen_seed_recipe_seconds"] = rounded(first_reaching(times, accuracies, reached_at)[1])
        if default_recipe:
            default = time_to_accuracy(reached_at, overrides={"dataset": dataset, "split": str(split), "fold": fold,
                                                          "train_limit": limit}, data=str(root), progress=progress,
                                       workers=workers)
            reach["cellscreen_default_recipe_seconds"] = default["fit_seconds_to_target"]
            reach["cellscreen_default_recipe_epochs"] = default["per_epoch"]
        else:
            reach["note"] = ("cellscreen's default recipe is not trained here (pass --default-recipe, or run "
                             f"`cellscreen bench time-to-accuracy --target {target:.4f} --data {root} --split {split}"
                             f"{f' --fold {fold}' if fold is not None else ''}`)")
        reach["seconds_are"] = "fitting time from the first epoch (validation included, set-up not)"

    ratios = {
        "train_images_per_s": _ratio(ours_train["images_per_s"], theirs_train.get("images_per_s")),
        "train_seconds": _ratio(ours_train["seconds"], theirs_train.get("seconds")),
        "predict_process_seconds": _ratio(ours_seconds, theirs_predict_process),
        "predict_cells_per_s": _ratio(ours_predict["process_cells_per_s"], theirs_predict["process_cells_per_s"]),
        "time_to_reference_val_accuracy_seed_recipe": _ratio(reach["cellscreen_seed_recipe_seconds"],
                                                             reach["reference_seconds"]),
        "time_to_reference_val_accuracy_default_recipe": _ratio(reach["cellscreen_default_recipe_seconds"],
                                                                reach["reference_seconds"]),
    }
    return record("compare-reference", dataset=dataset, data=str(root), split=str(split), fold=fold, epochs=epochs,
                  limit=limit, test_cells=test_cells, ratios_are="cellscreen / reference", ratios=ratios,
                  cellscreen_train=ours_train, reference_train=theirs_train, cellscreen_predict=ours_predict,
                  reference_predict=theirs_predict, time_to_reference_val_accuracy=reach,
                  reference={"python": python, "script": str(script)})
