import csv
import json

import pytest

from tests.badfiles import write_all
from tests.clitools import run
from tests.conftest import softened_copy


def test_one_row_per_input_with_reasons(trained_run, learnable_cells, tmp_path):
    bad = write_all(tmp_path / "odd")
    (tmp_path / "dangling.png").symlink_to(tmp_path / "nowhere.png")  # named, but cannot be read: a row
    inputs = [str(learnable_cells / "Parasitized"), str(tmp_path / "odd"), str(tmp_path / "dangling.png")]
    out = tmp_path / "preds.csv"
    result = run("predict", str(trained_run.run), *inputs, "--out", str(out), "--batch-size", "7", "-q")
    assert result.returncode == 0, result.stderr
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    n_cells = len(list((learnable_cells / "Parasitized").iterdir()))
    assert len(rows) == n_cells + len(bad) + 1
    by_name = {row["path"].rsplit("/", 1)[-1]: row for row in rows}
    for name, (_, expected) in bad.items():
        status = by_name[name]["status"]
        assert status == "ok" if expected is None else expected in status, (name, status)
    assert by_name["dangling.png"]["status"].startswith("skipped: broken symbolic link")
    cells = [row for row in rows if "/Parasitized/" in row["path"]]
    assert all(abs(float(r["p_Uninfected"]) + float(r["p_Parasitized"]) - 1) < 1e-5 for r in cells)
    assert sum(r["predicted"] == "Parasitized" for r in cells) >= 0.9 * len(cells)
    again = run("predict", str(trained_run.run), *inputs, "--out", str(out), "-q")
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_tta_predictions_are_rotation_invariant(trained_run, learnable_cells):
    import numpy as np

    from cellscreen.data.images import load_prepared
    from cellscreen.engine.checkpoint import load_checkpoint
    from cellscreen.engine.inference import predict_proba

    checkpoint = load_checkpoint(trained_run.run)
    path = next((learnable_cells / "Parasitized").iterdir())
    image = load_prepared(path, size=16)[None]
    rotated = np.rot90(image, 1, axes=(1, 2)).copy()
    a = predict_proba(checkpoint.model, image, tta=True)
    b = predict_proba(checkpoint.model, rotated, tta=True)
    assert np.allclose(a, b, atol=1e-5)


def test_bundled_malaria_model_predicts_real_cells(real_data, tmp_path):
    """`cellscreen predict malaria ...` works straight after install."""
    cells = real_data / "malaria-nih" / "cell_images"
    picked = sorted((cells / "Parasitized").iterdir())[:40] + sorted((cells / "Uninfected").iterdir())[:40]
    out = tmp_path / "preds.csv"
    result = run("predict", "malaria", *map(str, picked), "--out", str(out), "-q")
    assert result.returncode == 0, result.stderr
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    correct = sum(row["predicted"] == row["path"].split("/")[-2] for row in rows)
    assert len(rows) == 80 and correct >= 68  # these slides were in its training data: a sanity check only


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_onnx_and_torch_engines_agree(trained_run, learnable_cells, tmp_path):
    for engine in ("torch", "onnx"):
        made = run("predict", str(trained_run.run), str(learnable_cells), "--out", str(tmp_path / f"{engine}.csv"),
                   "--engine", engine, "-q")
        assert made.returncode == 0, made.stderr
    torch_rows, onnx_rows = _rows(tmp_path / "torch.csv"), _rows(tmp_path / "onnx.csv")
    assert [r["path"] for r in torch_rows] == [r["path"] for r in onnx_rows] and len(torch_rows) == 240
    assert max(abs(float(a["p_Parasitized"]) - float(b["p_Parasitized"]))
               for a, b in zip(torch_rows, onnx_rows)) < 1e-4


def test_an_interrupted_run_resumes_without_repeating_or_losing_rows(trained_run, learnable_cells, tmp_path,
                                                                    monkeypatch):
    from cellscreen.errors import UserError
    from cellscreen.serve import predict as module
    from cellscreen.serve.runtime import load_predictor

    inputs = [str(learnable_cells / "Parasitized"), str(learnable_cells / "Uninfected")]
    full = tmp_path / "full.csv"
    module.predict_files(trained_run.run, inputs, full, engine="torch", workers=0, progress=False)

    monkeypatch.setattr(module, "_TASK", 8)
    monkeypatch.setattr(module, "_CHUNK", 40)
    predictor = load_predictor(trained_run.run, engine="torch")
    real_predict, calls = predictor.predict, []

    def crash_on_fourth_batch(images, tta=False):
        calls.append(len(images))
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_predict(images, tta=tta)

    predictor.predict = crash_on_fourth_batch
    out = tmp_path / "cut.csv"
    with pytest.raises(KeyboardInterrupt):
        module.predict_files(predictor, inputs, out, workers=2, progress=False)
    journal = tmp_path / "cut.csv.partial.csv"
    assert not out.exists() and len(_rows(journal)) == 120
    with journal.open("a") as handle:
        handle.write("/a/torn/line.png,Parasi")  # the crash cut a row in half
    with pytest.raises(UserError, match="--resume"):
        module.predict_files(trained_run.run, inputs, out, progress=False)
    with pytest.raises(UserError, match="other inputs"):
        module.predict_files(trained_run.run, inputs[:1], out, resume=True, progress=False)
    settings = tmp_path / "cut.csv.partial.csv.json"
    recorded = settings.read_text()
    assert '"interpolation": "reduce-bicubic"' in recorded
    settings.write_text(recorded.replace('"reduce-bicubic"', '"bicubic"'))  # begun by a model resized otherwise
    with pytest.raises(UserError, match="other inputs or settings"):
        module.predict_files(trained_run.run, inputs, out, resume=True, progress=False)
    settings.write_text(recorded)
    with pytest.raises(UserError, match="other inputs or settings"):  # begun in fp32: not finished in bf16
        module.predict_files(trained_run.run, inputs, out, resume=True, precision="bf16", progress=False)
    counts = module.predict_files(predictor, inputs, out, resume=True, workers=0, progress=False)
    assert counts["resumed"] == 120 and counts["predicted"] + counts["skipped"] == 120
    assert len(calls) == 7  # three batches before the crash, three after, none repeated
    cut, whole = _rows(out), _rows(full)
    assert [r["path"] for r in cut] == [r["path"] for r in whole]
    assert all(abs(float(a["p_Parasitized"]) - float(b["p_Parasitized"])) < 1e-5 for a, b in zip(cut, whole)
               if a["status"] == "ok")
    assert len(cut) == 240 and not journal.exists()


def test_bf16_runs_the_model_in_pytorch_and_is_refused_where_onnxruntime_runs_it(trained_run, learnable_cells,
                                                                                   tmp_path):
    from cellscreen.errors import UserError
    from cellscreen.serve.predict import predict_files
    from cellscreen.serve.runtime import load_predictor

    run = softened_copy(trained_run.run, tmp_path / "run", 500)
    inputs = [str(learnable_cells)]
    fp32, bf16 = tmp_path / "fp32.csv", tmp_path / "bf16.csv"
    predict_files(run, inputs, fp32, engine="torch", workers=0, progress=False)
    predict_files(run, inputs, bf16, precision="bf16", workers=0, progress=False)  # engine auto
    record = json.loads((tmp_path / "bf16.csv.json").read_text())
    assert (record["engine"], record["precision"]) == ("torch", "bf16")
    assert json.loads((tmp_path / "fp32.csv.json").read_text())["precision"] == "32"
    predict_files(run, inputs, tmp_path / "graph.csv", engine="onnx", workers=0, progress=False)
    assert json.loads((tmp_path / "graph.csv.json").read_text())["precision"] is None  # the graph's own
    a, b = _rows(fp32), _rows(bf16)
    assert [r["path"] for r in a] == [r["path"] for r in b] and all(r["status"] == "ok" for r in b)
    differences = [abs(float(x["p_Parasitized"]) - float(y["p_Parasitized"])) for x, y in zip(a, b)]
    assert 0.05 < min(float(r["p_Parasitized"]) for r in a) and max(float(r["p_Parasitized"]) for r in a) < 0.95
    assert 0 < max(differences) < 0.05  # computed in bf16, and close to fp32
    assert sum(x["predicted"] == y["predicted"] for x, y in zip(a, b)) >= 0.95 * len(a)

    for engine in ("onnx", "int8"):
        with pytest.raises(UserError, match="--precision bf16 is for models run in PyTorch"):
            load_predictor("malaria", engine=engine, precision="bf16")
    with pytest.raises(UserError, match="an ONNX file runs on onnxruntime"):
        load_predictor("cellscreen/weights/malaria/model.onnx", precision="bf16")
    with pytest.raises(UserError, match="--engine ray runs the ONNX graph"):
        predict_files(trained_run.run, inputs, tmp_path / "ray.csv", engine="ray", precision="bf16", progress=False)
    with pytest.raises(UserError, match="unknown precision 'fp16'"):
        load_predictor(trained_run.run, precision="fp16")
    assert not (tmp_path / "ray.csv").exists()


def test_shards_merge_into_exactly_one_row_per_input(trained_run, learnable_cells, tmp_path):
    import pyarrow.parquet as pq

    bad = write_all(tmp_path / "odd")
    inputs = [str(learnable_cells), str(tmp_path / "odd")]
    parts = []
    for i in range(3):
        part = tmp_path / f"part{i}.csv"
        made = run("predict", str(trained_run.run), *inputs, "--out", str(part), "--shard", f"{i}/3", "-q")
        assert made.returncode == 0, made.stderr
        parts.append(str(part))
    sizes = [len(_rows(p)) for p in parts]
    assert all(sizes) and sum(sizes) == 240 + len(bad)
    missing = run("merge", *parts[:2], "--out", str(tmp_path / "all.csv"))
    assert missing.returncode == 2 and "missing [2]" in missing.stderr
    merged = run("merge", *parts, "--out", str(tmp_path / "all.parquet"))
    assert merged.returncode == 0, merged.stderr
    table = pq.read_table(tmp_path / "all.parquet").to_pylist()
    paths = [row["path"] for row in table]
    assert len(paths) == len(set(paths)) == 240 + len(bad)
    single = tmp_path / "single.csv"
    assert run("predict", str(trained_run.run), *inputs, "--out", str(single), "-q").returncode == 0
    assert set(paths) == {row["path"] for row in _rows(single)}
    wrong = run("predict", str(trained_run.run), *inputs, "--out", str(tmp_path / "x.csv"), "--shard", "3/3")
    assert wrong.returncode == 2 and "0 <= i < N" in wrong.stderr


def test_parquet_output_has_typed_columns(trained_run, learnable_cells, tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "preds.parquet"
    made = run("predict", str(trained_run.run), str(learnable_cells / "Uninfected"), "--out", str(out), "-q")
    assert made.returncode == 0, made.stderr
    table = pq.read_table(out)
    assert table.num_rows == 120 and str(table.schema.field("p_Uninfected").type) == "float"
    assert json.loads((tmp_path / "preds.parquet.json").read_text())["predicted"] == 120


def test_an_onnx_model_runs_in_the_workers_with_the_same_rows(trained_run, learnable_cells, tmp_path):
    """With workers, each loads its own copy of an ONNX model; the main process only writes rows."""
    from cellscreen.serve import predict as module
    from cellscreen.serve.runtime import load_predictor

    bad = write_all(tmp_path / "odd")
    inputs = [str(learnable_cells / "Parasitized"), str(tmp_path / "odd")]
    here = tmp_path / "here.csv"
    module.predict_files(trained_run.run, inputs, here, engine="onnx", workers=0, progress=False)
    predictor = load_predictor(trained_run.run, engine="onnx")

    def not_here(images, tta=False):
        raise AssertionError("the main process ran the model")

    predictor.predict = not_here
    there = tmp_path / "there.csv"
    counts = module.predict_files(predictor, inputs, there, workers=2, progress=False)
    assert counts["skipped"] == sum(expected is not None for _, expected in bad.values())
    assert _rows(there) == _rows(here)


def test_workers_get_the_graph_the_main_process_loaded():
    """An 8-bit graph loaded from a file reaches the workers as its bytes, not as a path to read again."""
    from pathlib import Path

    from cellscreen.serve.runtime import load_predictor

    predictor = load_predictor("malaria", engine="int8")
    description, graph, _ = predictor.worker_spec()
    assert isinstance(graph, bytes) and graph == Path(predictor.source).read_bytes()
    assert description["format"] == "onnx-int8"


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_cells_are_resized_as_the_checkpoint_was_trained(trained_run, learnable_cells, tmp_path, engine):
    """A new checkpoint records "reduce-bicubic"; one from before the choice existed is resized by exact bicubic."""
    import shutil

    import numpy as np
    from PIL import Image

    from cellscreen.data.images import load_prepared
    from cellscreen.engine.checkpoint import load_checkpoint
    from cellscreen.engine.inference import predict_proba
    from cellscreen.serve.predict import predict_files

    cells = tmp_path / "cells"
    cells.mkdir()
    # blends of a parasitized and an uninfected cell (so some probabilities are far from 0 and 1), at 80 px with
    # stripes 5 px wide: a fivefold shrink, where "reduce-bicubic" averages each 5x5 block (keeping the stripes)
    # and exact bicubic blurs across them, so the two give clearly other pixels
    ends = [np.asarray(Image.open(next((learnable_cells / label).iterdir())).convert("RGB"), np.float32)
            for label in ("Parasitized", "Uninfected")]
    stripes = (np.indices((80, 80))[1] // 5 % 2 * 80 - 40)[..., None]
    for n, alpha in enumerate(np.linspace(0, 1, 9)):
        blend = np.kron(alpha * ends[0] + (1 - alpha) * ends[1], np.ones((4, 4, 1))) + stripes
        Image.fromarray(np.clip(blend, 0, 255).astype(np.uint8)).save(cells / f"c{n}.png")
    meta = json.loads((trained_run.run / "model.json").read_text())
    assert meta["data_config"]["interpolation"] == "reduce-bicubic"
    # with its classifier scaled down, the trained model's probabilities follow the pixels
    new = softened_copy(trained_run.run, tmp_path / "new", 20)
    meta = json.loads((new / "model.json").read_text())
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy2(new / "model.safetensors", old)
    del meta["data_config"]["interpolation"]
    (old / "model.json").write_text(json.dumps(meta))
    got = {}
    for folder, interpolation in ((new, "reduce-bicubic"), (old, "bicubic")):
        out = tmp_path / f"{interpolation}.csv"
        predict_files(folder, [cells], out, engine=engine, workers=1, progress=False)
        with out.open() as handle:
            got[interpolation] = np.array([[float(r["p_Parasitized"]), float(r["p_Uninfected"])]
                                           for r in csv.DictReader(handle)])
        checkpoint = load_checkpoint(folder)
        images = np.stack([load_prepared(p, size=16, interpolation=interpolation) for p in sorted(cells.iterdir())])
        expected = predict_proba(checkpoint.model, images)[:, [checkpoint.classes.index(c)
                                                                for c in ("Parasitized", "Uninfected")]]
        assert np.abs(got[interpolation] - expected).max() < 1e-4, interpolation
    assert np.abs(got["bicubic"] - got["reduce-bicubic"]).max() > 1e-3  # the two resizes did differ here


def test_a_checkpoints_own_fp32_graph_is_run_without_exporting(trained_run, tmp_path, monkeypatch):
    """model.onnx beside model.json, exported from these weights, is what the onnx engine runs; one made from
    other weights, or unreadable, is passed over for an export into the cache."""
    import shutil

    import numpy as np

    from cellscreen.serve import export
    from cellscreen.serve.export import export_model
    from cellscreen.serve.runtime import load_predictor

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run.run, run_dir)
    report = export_model(run_dir, run_dir / "model.onnx")
    cells = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    exported = []
    real_onnx_bytes = export.onnx_bytes
    monkeypatch.setattr(export, "onnx_bytes", lambda *a, **k: exported.append(1) or real_onnx_bytes(*a, **k))
    own = load_predictor(run_dir, engine="auto")
    assert exported == [] and own._model == report.path.read_bytes()
    meta = json.loads((run_dir / "model.json").read_text())
    (run_dir / "model.json").write_text(json.dumps({**meta, "temperature": 2.0}))  # model.json changed alone
    assert load_predictor(run_dir, engine="onnx")._model != report.path.read_bytes() and exported == [1]
    (run_dir / "model.json").write_text(json.dumps(meta))
    description = json.loads(report.description.read_text())
    description["source"]["weights_sha256"] = "0" * 64  # as if the weights were retrained after the export
    report.description.write_text(json.dumps(description))
    stale = load_predictor(run_dir, engine="onnx")
    assert exported == [1, 1] and np.allclose(stale.predict(cells), own.predict(cells), atol=1e-6)
    report.description.unlink()
    report.path.write_bytes(b"not onnx")
    assert np.allclose(load_predictor(run_dir, engine="onnx").predict(cells), own.predict(cells), atol=1e-6)


def test_the_bundled_model_carries_its_fp32_graph(monkeypatch):
    """So that its first `predict` neither imports PyTorch nor exports."""
    from cellscreen.engine.paths import resolve_checkpoint
    from cellscreen.serve import export
    from cellscreen.serve.runtime import FP32_NAME, load_predictor

    monkeypatch.setattr(export, "onnx_bytes", lambda *a, **k: pytest.fail("the bundled model was exported again"))
    predictor = load_predictor("malaria")
    assert predictor.engine == "onnx"
    assert predictor._model == resolve_checkpoint("malaria").with_name(FP32_NAME).read_bytes()
