"""`cellscreen bench`: tiny, fast measurements (the numbers are not checked, their bookkeeping is)."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch

from cellscreen import benchmarks
from cellscreen.benchmarks._compare_reference import epoch_end_seconds, reference_seconds_to
from cellscreen.cli import main
from cellscreen.errors import UserError

MACHINE = ("threads", "cpu", "cellscreen")


def _common_fields(result: dict, name: str) -> None:
    assert result["bench"] == name
    assert result["threads"] == torch.get_num_threads() and result["cpu"] and result["cellscreen"]
    json.dumps(result)  # every record is plain JSON


def test_ceiling_measures_fp32_and_bf16_matmul_and_conv():
    result = benchmarks.ceiling(seconds=0.2, matmul_size=64, conv_batch=2, conv_channels=8, conv_size=8)
    _common_fields(result, "ceiling")
    for dtype in ("fp32", "bf16"):
        for op in ("matmul", "conv"):
            assert result[f"{dtype}_{op}_gflops_per_s"] > 0
    assert result["fp32_conv_onnxruntime_gflops_per_s"] > 0 and result["cpu_capability"]
    assert result["bf16_over_fp32_conv"] == pytest.approx(
        result["bf16_conv_gflops_per_s"] / result["fp32_conv_gflops_per_s"], rel=0.01)


def test_train_throughput_through_the_training_module():
    result = benchmarks.train_throughput("lenet5", size=32, batch_size=8, steps=3, warmup=1)
    _common_fields(result, "train")
    assert (result["model"], result["size"], result["batch_size"], result["steps"]) == ("lenet5", 32, 8, 3)
    assert result["images_per_s"] > 0 and result["forward_gflops_per_image"] > 0
    assert result["gflops_per_s"] == pytest.approx(3 * result["forward_gflops_per_image"] * result["images_per_s"],
                                                   rel=0.01)
    assert result["ceiling_source"].startswith("fp32 3x3 conv") and result["ceiling_gflops_per_s"] > 0
    assert result["fraction_of_ceiling"] == pytest.approx(result["gflops_per_s"] / result["ceiling_gflops_per_s"],
                                                          rel=0.02)
    given = benchmarks.train_throughput("lenet5", size=32, batch_size=8, steps=1, warmup=0, precision="bf16-mixed",
                                   channels_last=False, ceiling_gflops=100.0)
    assert given["precision"] == "bf16-mixed" and given["channels_last"] is False
    assert given["ceiling_source"] == "given" and given["ceiling_gflops_per_s"] == 100.0


def test_train_throughput_compiled_times_the_compilation_apart(monkeypatch):
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda net: compiled.append(net) or net)
    result = benchmarks.train_throughput("lenet5", size=32, batch_size=4, steps=1, warmup=0, compiled=True,
                                    ceiling_gflops=1.0)
    assert len(compiled) == 1 and result["compiled"] is True and result["compile_seconds"] > 0
    assert "compile_seconds" not in benchmarks.train_throughput("lenet5", size=32, batch_size=4, steps=1, warmup=0,
                                                           ceiling_gflops=1.0)


def test_infer_throughput_per_variant():
    results = benchmarks.infer_throughput("compact_cnn", size=16, batch_size=8, variants="eager,channels_last,onnx",
                                     seconds=0.1, ceiling_gflops=50.0)
    assert [r["variant"] for r in results] == ["eager", "channels_last", "onnx"]
    for r in results:
        _common_fields(r, "infer")
        assert "skipped" not in r, r
        assert r["cells_per_s"] > 0 and r["cells"] % 8 == 0 and r["size"] == 16
        assert r["fraction_of_ceiling"] == pytest.approx(r["gflops_per_s"] / 50.0, rel=0.02)
    assert results[2]["engine"] == "onnxruntime" and "export_seconds" in results[2]
    assert all("vs_eager" in r for r in results[1:])


def test_infer_reports_a_failing_variant_and_refuses_unknown_ones(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", broken)
    (result,) = benchmarks.infer_throughput("lenet5", size=32, batch_size=4, variants=["compile"], seconds=0.05,
                                       ceiling_gflops=10.0)
    assert result["variant"] == "compile" and "no C++ compiler" in result["skipped"]
    with pytest.raises(UserError, match="unknown variant"):
        benchmarks.infer_throughput("lenet5", variants="eager,tensorrt")


def test_cache_build_indexes_and_caches_into_a_temporary_folder(learnable_cells):
    before = sorted(p.name for p in learnable_cells.rglob("*"))
    result = benchmarks.cache_build("malaria-nih", data=str(learnable_cells), size=16, workers=0)
    _common_fields(result, "cache")
    assert result["files"] == 240 and 0 < result["images"] <= 240
    assert result["images_per_s"] > 0 and result["seconds"] == pytest.approx(
        result["index_seconds"] + result["cache_seconds"], abs=0.002)
    limited = benchmarks.cache_build("malaria-nih", data=str(learnable_cells), size=16, limit=20, workers=0)
    assert limited["files"] == 20 and limited["limit"] == 20
    assert sorted(p.name for p in learnable_cells.rglob("*")) == before  # nothing written into the data


TINY = {"dataset": "malaria-nih", "epochs": 2, "input_size": 16, "batch_size": 16, "lr": 0.01}


def test_time_to_accuracy_reached(learnable_cells, tmp_path):
    result = benchmarks.time_to_accuracy(0.5, overrides=TINY, data=str(learnable_cells), out=tmp_path / "run")
    _common_fields(result, "time-to-accuracy")
    assert result["reached"] and result["epoch_reached"] in (1, 2)
    assert 0 < result["fit_seconds_to_target"] <= result["seconds_to_target"] <= result["total_seconds"]
    assert [e["epoch"] for e in result["per_epoch"]] == [1, 2] and result["epochs_run"] == 2
    first = result["per_epoch"][result["epoch_reached"] - 1]
    assert first["val_acc"] >= 0.5 and first["seconds"] == result["seconds_to_target"]
    assert (tmp_path / "run" / "model.json").is_file()


def test_time_to_accuracy_never_reached_is_null(learnable_cells):
    result = benchmarks.time_to_accuracy(1.01, overrides=TINY, data=str(learnable_cells))
    assert result["reached"] is False
    assert result["seconds_to_target"] is None and result["fit_seconds_to_target"] is None
    assert result["epoch_reached"] is None and len(result["per_epoch"]) == 2 and result["run"] is None


FAKE_REFERENCE = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    task, args = sys.argv[1], sys.argv[2:]
    with open(Path(__file__).with_name("calls.txt"), "a") as log:
        log.write(json.dumps([task] + args) + "\\n")
    print("TensorFlow says hello")  # noise before the JSON line
    if task == "train":
        print(json.dumps({"tool": "keras-reference", "task": "train", "images_per_s": 50.0, "seconds": 4.0,
                          "epochs": 2, "images": 100, "val_accuracy": 0.5, "test_accuracy": 0.5,
                          "epoch_seconds": [1.5, 4.0], "epoch_val_accuracy": [0.4, 0.5]}))
    else:
        print(json.dumps({"tool": "keras-reference", "task": "predict", "cells": 10, "seconds": 1.0,
                          "cells_per_s": 10.0}))
""")


def test_compare_reference_with_a_fake_reference(learnable_cells, tmp_path):
    from cellscreen.data.index import scan_dataset
    from cellscreen.data.sources import get_profile
    from cellscreen.data.splits import make_split

    split = tmp_path / "folds.csv"
    make_split(scan_dataset(learnable_cells, get_profile("malaria-nih"), workers=0, progress=False),
               method="kfold", folds=3).write(split)
    script = tmp_path / "fake_reference.py"
    script.write_text(FAKE_REFERENCE)
    result = benchmarks.compare_reference(data=str(learnable_cells), split=split, fold=1, epochs=2, limit=60, size=16,
                                     reference_python=sys.executable, reference_script=script, predict_limit=10,
                                     predict_engine="torch",  # no ONNX export: keeps the test short
                                     default_recipe=True)
    _common_fields(result, "compare-reference")
    calls = [json.loads(line) for line in (tmp_path / "calls.txt").read_text().splitlines()]
    assert [c[0] for c in calls] == ["train", "predict"]
    train_args = dict(zip(calls[0][1::2], calls[0][2::2]))
    assert train_args == {"--data": str(learnable_cells.resolve()), "--split": str(split.resolve()), "--fold": "1",
                          "--epochs": "2", "--limit": "60", "--size": "16", "--batch-size": "16",
                          "--threads": str(torch.get_num_threads())}
    assert calls[1][1] == "--inputs" and calls[1][3:] == ["--size", "16"]

    ours, theirs = result["cellscreen_train"], result["reference_train"]
    assert 1 <= ours["epochs"] <= 2 and ours["images"] == 60 and ours["images_per_s"] > 0
    assert len(ours["epoch_seconds"]) == len(ours["epoch_val_accuracy"]) == ours["epochs"]
    assert ours["epoch_end_seconds"][-1] == pytest.approx(ours["seconds"], abs=0.01)
    assert 0 <= ours["test_accuracy"] <= 1 and theirs["images_per_s"] == 50.0 and "tool" not in theirs
    assert result["test_cells"] == 10 and result["cellscreen_predict"]["cells"] == 10
    ratios = result["ratios"]
    assert ratios["train_images_per_s"] == pytest.approx(ours["images_per_s"] / 50.0, rel=0.01)
    assert ratios["train_seconds"] == pytest.approx(ours["seconds"] / 4.0, rel=0.01)
    # the ratio comes from the unrounded times, the fields are rounded to 1 ms: the fake reference's process
    # takes some 30 ms, so the ratio is checked against the range the rounded fields allow
    ours_s, theirs_s = result["cellscreen_predict"]["process_seconds"], result["reference_predict"]["process_seconds"]
    assert (ours_s - 5e-4) / (theirs_s + 5e-4) * 0.999 <= ratios["predict_process_seconds"] \
        <= (ours_s + 5e-4) / (theirs_s - 5e-4) * 1.001
    reach = result["time_to_reference_val_accuracy"]
    assert reach["target"] == 0.5 and reach["reference_seconds"] == 4.0  # its second epoch reached 0.5
    default = reach["cellscreen_default_recipe_seconds"]  # the default recipe trained towards 0.5 too
    assert len(reach["cellscreen_default_recipe_epochs"]) == 10 and "note" not in reach
    if default is None:
        assert ratios["time_to_reference_val_accuracy_default_recipe"] is None
    else:
        assert ratios["time_to_reference_val_accuracy_default_recipe"] == pytest.approx(default / 4.0, rel=0.01)


def test_reference_epoch_seconds_may_be_durations_or_running_totals():
    assert epoch_end_seconds([1.5, 4.0], 4.0) == [1.5, 4.0]
    assert epoch_end_seconds([2.0, 2.0], 4.0) == [2.0, 4.0]
    assert reference_seconds_to({"epoch_seconds": [2.0, 2.0, 2.0], "seconds": 6.0,
                                        "epoch_val_accuracy": [0.8, 0.9, 0.95]}, 0.9) == 4.0


def test_compare_reference_without_the_keras_python_says_how_to_make_it(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("CELLSCREEN_KERAS_PYTHON", raising=False)
    assert main(["bench", "compare-reference", "--split", str(tmp_path / "folds.csv"), "--fold", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert benchmarks.KERAS_SETUP in err and str(benchmarks.KERAS_REQUIREMENTS) in err
    assert benchmarks.KERAS_REQUIREMENTS.is_file() and benchmarks.REFERENCE_SCRIPT.is_file()
    assert main(["bench", "compare-reference", "--split", "x.csv", "--reference-python",
                 str(tmp_path / "nowhere" / "python")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_prints_one_json_object_per_line(capsys):
    assert main(["bench", "ceiling", "--seconds", "0.05", "--matmul-size", "32", "--conv-batch", "1",
                 "--conv-channels", "4", "--conv-size", "8"]) == 0
    assert main(["bench", "train", "--model", "lenet5", "--size", "32", "--batch-size", "4", "--steps", "1",
                 "--warmup", "0", "--ceiling", "20"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["bench"] for r in records] == ["ceiling", "train"]
    assert records[1]["ceiling_source"] == "given" and records[1]["batch_size"] == 4
