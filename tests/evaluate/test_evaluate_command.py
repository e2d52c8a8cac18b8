import csv
import json

from tests.clitools import run, run_here
from tests.conftest import softened_copy


def test_evaluate_a_folder_with_group_intervals(trained_run, learnable_cells, tmp_path):
    out = tmp_path / "eval"
    result = run("evaluate", str(trained_run.run), str(learnable_cells), "--out", str(out), "--bootstrap", "50",
                 "--split", str(trained_run.run / "split.csv"), "--subset", "test", "-q")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    expected = {"accuracy", "balanced_accuracy", "sensitivity", "specificity", "precision", "f1", "weighted_f1",
                "mcc", "roc_auc", "pr_auc", "confusion_matrix"}
    assert expected <= set(metrics["metrics"]) and set(metrics["intervals"]) == expected - {"confusion_matrix"}
    n_test = sum(1 for line in (trained_run.run / "split.csv").read_text().splitlines() if line.endswith(",test"))
    assert metrics["metrics"]["n"] == n_test and metrics["dataset"] == "malaria-nih"  # taken from the checkpoint
    assert {g["group"] for g in metrics["per_group"]} <= {f"C{n}" for n in range(1, 11)}
    assert (out / "roc.png").stat().st_size > 1000 and (out / "reliability.png").stat().st_size > 1000
    assert "| accuracy |" in (out / "report.md").read_text()
    m = metrics["metrics"]  # calibration, with and without the run's temperature
    assert 0 <= m["ece"] <= 1 and 0 <= m["brier"] <= 2
    assert m["temperature"] == json.loads((trained_run.run / "model.json").read_text())["temperature"]
    assert {"ece_uncalibrated", "brier_uncalibrated"} <= set(m) and "ECE" in (out / "report.md").read_text()
    assert sum(b["n"] for b in metrics["reliability"]) == m["n"]
    rows = (out / "predictions.csv").read_text().splitlines()
    assert rows[0] == "path,group,label,predicted,p_Uninfected,p_Parasitized" and len(rows) - 1 == n_test


def test_evaluate_in_bf16_on_pytorch_only(trained_run, learnable_cells, tmp_path):
    run = softened_copy(trained_run.run, tmp_path / "run", 500)  # probabilities that show how they were computed
    made, probabilities = {}, {}
    for precision in ("32", "bf16"):
        result = run_here("evaluate", str(run), str(learnable_cells), "-d", "malaria-nih", "--out",
                          str(tmp_path / precision), "--bootstrap", "0", "--precision", precision, "-q")
        assert result.returncode == 0, result.stderr
        made[precision] = json.loads((tmp_path / precision / "metrics.json").read_text())
        with (tmp_path / precision / "predictions.csv").open() as handle:
            probabilities[precision] = [float(row["p_Parasitized"]) for row in csv.DictReader(handle)]
    assert made["bf16"]["precision"] == "bf16" and made["32"]["precision"] == "32"
    assert made["bf16"]["metrics"]["n"] == made["32"]["metrics"]["n"]
    assert abs(made["bf16"]["metrics"]["accuracy"] - made["32"]["metrics"]["accuracy"]) <= 0.02
    assert 0 < max(abs(a - b) for a, b in zip(probabilities["32"], probabilities["bf16"])) < 0.05
    refused = run_here("evaluate", str(trained_run.run), str(learnable_cells), "--out", str(tmp_path / "no"),
                       "--engine", "onnx", "--precision", "bf16", "-q")
    assert refused.returncode == 2 and "--engine torch" in refused.stderr and not (tmp_path / "no").exists()


def test_evaluate_refuses_classes_the_model_does_not_know(trained_run, tmp_path):
    from tests.conftest import write_cell

    for label in ("blast", "normal"):
        write_cell(tmp_path / "cells" / label / "x.png", seed=len(label))
    result = run("evaluate", str(trained_run.run), str(tmp_path / "cells"), "-d", "folder", "--out",
                 str(tmp_path / "e"), "-q")
    assert result.returncode == 2 and "does not know" in result.stderr


def test_evaluate_on_the_onnx_and_int8_graphs(trained_run, learnable_cells, tmp_path):
    import shutil

    from cellscreen.serve.export import export_model

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run.run, run_dir)
    export_model(run_dir, run_dir / "model.int8.onnx", fmt="onnx-int8", check_data=learnable_cells)
    results = {}
    for engine in ("torch", "onnx", "int8"):  # one as a whole process, the others inside this one (faster)
        out = tmp_path / engine
        made = (run if engine == "int8" else run_here)("evaluate", str(run_dir), str(learnable_cells), "--out",
                                                       str(out), "--bootstrap", "0", "--engine", engine, "-q")
        assert made.returncode == 0, made.stderr
        results[engine] = json.loads((out / "metrics.json").read_text())
    torch_m, onnx_m, int8_m = (results[e]["metrics"] for e in ("torch", "onnx", "int8"))
    assert results["int8"]["engine"] == "int8" and "onnx-int8 graph" in " ".join(results["int8"]["notes"])
    assert results["int8"]["precision"] is None and results["torch"]["precision"] == "32"  # a graph keeps its own
    assert abs(onnx_m["roc_auc"] - torch_m["roc_auc"]) < 1e-6 and onnx_m["accuracy"] == torch_m["accuracy"]
    assert abs(int8_m["accuracy"] - torch_m["accuracy"]) <= 0.02 and int8_m["n"] == torch_m["n"]

    # The 8-bit file on its own, away from the checkpoint it came from: the same probabilities, no weights needed.
    alone = tmp_path / "alone"
    alone.mkdir()
    for name in ("model.int8.onnx", "model.int8.onnx.json"):
        shutil.copy(run_dir / name, alone / name)
    made = run_here("evaluate", str(alone / "model.int8.onnx"), str(learnable_cells), "--out",
                    str(tmp_path / "file"), "--bootstrap", "0", "-q")
    assert made.returncode == 0, made.stderr
    from_file = json.loads((tmp_path / "file" / "metrics.json").read_text())
    assert from_file["engine"] == "onnx" and from_file["dataset"] == "malaria-nih"
    assert from_file["metrics"] == int8_m
    assert (tmp_path / "file" / "predictions.csv").read_text() == (tmp_path / "int8" / "predictions.csv").read_text()
    refused = run_here("evaluate", str(alone / "model.int8.onnx"), str(learnable_cells), "--out",
                       str(tmp_path / "no"), "--engine", "torch", "-q")
    assert refused.returncode == 2 and "use --engine onnx" in refused.stderr and not (tmp_path / "no").exists()
    # An fp32 export on its own gives what the checkpoint gives on onnxruntime, and is not taken for an 8-bit one.
    export_model(run_dir, alone / "model.onnx", fmt="onnx", check_data=learnable_cells)
    made = run_here("evaluate", str(alone / "model.onnx"), str(learnable_cells), "--out", str(tmp_path / "fp32"),
                    "--bootstrap", "0", "-q")
    assert made.returncode == 0, made.stderr
    fp32_m = json.loads((tmp_path / "fp32" / "metrics.json").read_text())["metrics"]
    assert fp32_m["accuracy"] == onnx_m["accuracy"] and abs(fp32_m["roc_auc"] - onnx_m["roc_auc"]) < 1e-6
    refused = run_here("evaluate", str(alone / "model.onnx"), str(learnable_cells), "--out", str(tmp_path / "no"),
                       "--engine", "int8", "-q")
    assert refused.returncode == 2 and "not an 8-bit graph" in refused.stderr and not (tmp_path / "no").exists()
