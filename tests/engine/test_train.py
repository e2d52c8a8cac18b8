import json

import pytest
import yaml

from cellscreen.config import TrainConfig, load_config
from cellscreen.engine.checkpoint import load_checkpoint
from cellscreen.engine.train import train
from cellscreen.errors import UserError


def tiny_config(**changes) -> TrainConfig:
    settings = {"dataset": "malaria-nih", "input_size": 16, "epochs": 6, "batch_size": 16, "lr": 0.01,
                "val": 0.2, "test": 0.2}
    settings.update(changes)
    return load_config("default", settings)


@pytest.fixture
def trained(trained_run):
    return trained_run


def test_run_folder_is_complete_and_self_describing(trained):
    run = trained.run
    for name in ("config.yaml", "split.csv", "split.json", "model.safetensors", "model.json",
                 "learning_curves.png", "checkpoints/last.ckpt", "logs/csv/version_0/metrics.csv"):
        assert (run / name).is_file(), name
    assert list((run / "logs" / "tb").rglob("events.out.tfevents*"))
    meta = json.loads((run / "model.json").read_text())
    assert meta["model"] == load_config("default").model and meta["classes"] == ["Uninfected", "Parasitized"]
    assert meta["positive_class"] == "Parasitized" and meta["data_config"]["input_size"] == 16
    assert meta["split"]["sha256"] == json.loads((run / "split.json").read_text())["manifest_sha256"]
    assert meta["metric"]["name"] == "val_loss" and meta["cellscreen"]
    calibration = meta["calibration"]  # temperature scaling fitted on the validation cells
    assert meta["temperature"] == calibration["temperature"] > 0 and calibration["fitted_on"] == "val"
    assert calibration["nll_after"] <= calibration["nll_before"] + 1e-9
    assert yaml.safe_load((run / "config.yaml").read_text())["epochs"] == 6


def test_model_learns_the_synthetic_task(trained):
    from cellscreen.evaluate.run import evaluate_arrays

    result, _ = evaluate_arrays(load_checkpoint(trained.run), trained.data.subsets["test"], n_boot=0)
    assert result["metrics"]["accuracy"] >= 0.9


def test_same_seed_same_weights(trained, learnable_cells, tmp_path):
    again = train(tiny_config(), out=tmp_path / "again", data=str(learnable_cells), progress=False)
    assert again.best_metric == pytest.approx(trained.best_metric, abs=1e-6)


def test_run_folder_is_never_overwritten_silently(trained, learnable_cells):
    with pytest.raises(UserError, match="--resume"):
        train(tiny_config(), out=trained.run, data=str(learnable_cells), progress=False)


def _train_args(cells, out, epochs=8):
    import sys
    from pathlib import Path

    script = Path(sys.executable).with_name("cellscreen")
    return [str(script), "train", str(cells), "-d", "malaria-nih", "--out", str(out), "--epochs", str(epochs),
            "--input-size", "16", "--batch-size", "16", "--set", "val=0.2", "--set", "test=0.2", "-q",
            "--bootstrap", "0"]


@pytest.fixture(scope="module")
def uninterrupted(learnable_cells, tmp_path_factory):
    """The reference: the same command, never stopped."""
    import subprocess

    out = tmp_path_factory.mktemp("reference") / "run"
    done = subprocess.run(_train_args(learnable_cells, out), capture_output=True, text=True, timeout=600,
                          env=_one_thread())
    assert done.returncode == 0, done.stderr
    return out


def _saves_seen(last, process, wanted: int, deadline: float) -> int:
    """Wait until ``last`` has been saved ``wanted`` times (each atomic save is a new file, told apart by its
    inode and modification time)."""
    import time

    versions = set()
    while len(versions) < wanted and time.time() < deadline and process.poll() is None:
        try:
            stat = last.stat()
            versions.add((stat.st_ino, stat.st_mtime_ns))
        except FileNotFoundError:
            pass
        time.sleep(0.005)
    return len(versions)


def _started(out, process, deadline: float) -> bool:
    """Wait until the run has written its settings (its data prepared, its first epoch not yet saved)."""
    import time

    while not (out / "config.yaml").is_file() and time.time() < deadline and process.poll() is None:
        time.sleep(0.002)
    return (out / "config.yaml").is_file()


def _one_thread() -> dict:
    import os

    return {**os.environ, "OMP_NUM_THREADS": "1"}


# five moments spread over the run: before its first checkpoint, then after its first, third, fifth and sixth
# saved epoch of eight (right after the save, or partway into the next epoch; after the seventh, the kill can
# fall after the last epoch's save, leaving the resumed run nothing to train)
@pytest.mark.skipif(not __import__("pathlib").Path("/proc/self/stat").exists(), reason="reads processes from /proc")
@pytest.mark.parametrize("saves, delay", [(0, 0.0), (1, 0.0), (3, 0.03), (5, 0.06), (6, 0.03)])
def test_killed_run_resumes_to_the_same_result(learnable_cells, uninterrupted, tmp_path, saves, delay):
    """SIGKILL a real `cellscreen train` before its first checkpoint or after its first, third, fifth or sixth
    saved epoch, then --resume it: no process of the killed command outlives it, every epoch is logged once,
    and the finished run equals one that never stopped (same weights, same test metrics).  The moment is
    counted in saves, not seconds, so a fast machine cannot finish the run before the kill."""
    import os
    import signal
    import subprocess
    import time

    from cellscreen.engine.curves import read_epoch_metrics
    from tests.processes import descendants, survivors

    out = tmp_path / "killed"
    args = _train_args(learnable_cells, out)
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_one_thread())
    if saves:
        assert _saves_seen(out / "checkpoints" / "last.ckpt", process, saves, time.time() + 300) == saves
    else:
        assert _started(out, process, time.time() + 300)
    time.sleep(delay)
    children = descendants(process.pid)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    process.stdout.close()
    process.stderr.close()
    deadline = time.monotonic() + 3
    while survivors(children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not survivors(children), f"these processes of the killed command outlived it: {survivors(children)}"
    assert not (out / "test" / "metrics.json").exists()  # it really was stopped before the end
    if not saves:
        assert not (out / "checkpoints" / "last.ckpt").exists()  # and before its first checkpoint
    done_before = max(read_epoch_metrics(out / "logs" / "csv").get("val_loss", {0: 0})) if saves else 0
    resumed = subprocess.run(args + ["--resume"], capture_output=True, text=True, timeout=600, env=_one_thread())
    assert resumed.returncode == 0, resumed.stderr
    val_loss = read_epoch_metrics(out / "logs" / "csv")["val_loss"]
    assert sorted(val_loss) == list(range(8))  # every epoch once, none twice
    if saves:
        second = read_epoch_metrics(out / "logs" / "csv" / "version_1" / "metrics.csv")["val_loss"]
        # the resumed process went on from the last saved epoch, not from 0 (epochs logged after that save, if
        # the kill fell between a log and the next save, are run again and must come out the same: checked below)
        assert 0 < min(second) <= done_before + 1
    else:  # nothing saved to go on from: the run started again, and said so
        assert sum("no checkpoint" in line for line in resumed.stdout.splitlines()) == 1, resumed.stdout
    reference = read_epoch_metrics(uninterrupted / "logs" / "csv")["val_loss"]
    assert val_loss == reference  # the same losses, epoch by epoch
    ours, theirs = (json.loads((run / "test" / "metrics.json").read_text())["metrics"] for run in (out, uninterrupted))
    assert ours == theirs
    assert (json.loads((out / "model.json").read_text())["weights_sha256"]
            == json.loads((uninterrupted / "model.json").read_text())["weights_sha256"])


def test_changed_weights_are_refused(trained, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained.run, copy)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF  # one flipped byte in the last tensor
    weights.write_bytes(bytes(data))
    with pytest.raises(UserError, match="checksum"):
        load_checkpoint(copy)


def test_seed_malaria_preset_trains_with_one_logit(learnable_cells, tmp_path):
    config = load_config("seed_malaria_cnn", {"dataset": "malaria-nih", "input_size": 16, "epochs": 1})
    result = train(config, out=tmp_path / "seed", data=str(learnable_cells), progress=False)
    restored = load_checkpoint(result.run)
    assert restored.model.single_logit and restored.classes == ["Uninfected", "Parasitized"]


def test_settings_are_validated():
    with pytest.raises(UserError, match="optimizer"):
        load_config(None, {"optimizer": "rmsprop"})
    with pytest.raises(UserError, match="FIELD=VALUE"):
        load_config(None, {}, ["nonsense"])
    for bad in ("stain_jitter=1.5", "stain_jitter=-0.1", "color_jitter=1"):
        with pytest.raises(UserError, match=bad.split("=")[0]):
            load_config(None, {}, [bad])
    assert load_config(None, {}, ["stain_jitter=0.3"]).stain_jitter == 0.3
    assert load_config(None, {}, ["lr=0.5", "early_stopping=3", "precision=32"]).lr == 0.5
    assert load_config("seed_allnet").lr == 0.0002 and load_config("seed_allnet").batch_size == 30


def test_the_96_px_preset_is_the_default_with_larger_cells_and_more_epochs():
    import dataclasses

    default, larger = load_config("default"), load_config("default_96")
    assert (larger.input_size, larger.epochs) == (96, 24)
    assert dataclasses.replace(larger, input_size=default.input_size, epochs=default.epochs) == default


def test_a_preset_can_extend_another_and_circles_are_refused(tmp_path):
    (tmp_path / "mine.yaml").write_text("extends: default_96\nlr: 0.001\n")
    mine = load_config(str(tmp_path / "mine.yaml"))
    assert (mine.lr, mine.input_size, mine.model) == (0.001, 96, load_config("default").model)
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(UserError, match="circle"):
        load_config(str(tmp_path / "a.yaml"))
    (tmp_path / "bad.yaml").write_text("extends: [default]\n")
    with pytest.raises(UserError, match="extends takes"):
        load_config(str(tmp_path / "bad.yaml"))
    (tmp_path / "missing.yaml").write_text("extends: no_such_preset\n")
    with pytest.raises(UserError, match="not found.*missing.yaml"):
        load_config(str(tmp_path / "missing.yaml"))
    with pytest.raises(UserError, match="not found; built-in"):
        load_config("no_such_preset")


def test_fine_tuning_a_run_trains_only_what_was_asked(trained, learnable_cells, tmp_path):
    """--init-from a run with a new head and only the head training: the backbone stays the source's."""
    import torch

    source = load_checkpoint(trained.run).model.state_dict()
    tuned = train(tiny_config(init_from=str(trained.run), new_head=True, head_hidden=8, trainable="head",
                              epochs=2, model="resnet18"), out=tmp_path / "tuned", data=str(learnable_cells),
                  progress=False)
    checkpoint = load_checkpoint(tuned.run)
    assert checkpoint.meta["model"] == load_config("default").model  # the source's architecture, not resnet18
    assert checkpoint.meta["head"] == {"hidden": 8, "dropout": 0.2}
    state = checkpoint.model.state_dict()
    for name, value in source.items():
        if name.startswith("features."):  # weights and batch-norm statistics untouched
            assert torch.equal(state[name], value), name
    assert state["head.2.weight"].shape == (8, 256) and state["head.5.weight"].shape == (2, 8)


def test_auxiliary_heads_add_to_the_loss():
    import torch
    from torchvision.models import GoogLeNetOutputs

    from cellscreen.engine.module import CellClassifier
    from cellscreen.models import create_model

    module = CellClassifier(create_model("googlenet", num_classes=2, input_size=32), tiny_config())
    targets = torch.tensor([0, 1])
    main, aux1, aux2 = torch.randn(3, 2, 2)
    _, loss = module._main_and_aux_loss(GoogLeNetOutputs(main, aux2, aux1), targets)
    expected = module._loss(main, targets) + 0.3 * (module._loss(aux1, targets) + module._loss(aux2, targets))
    assert torch.allclose(loss, expected)
    logits, plain = module._main_and_aux_loss(main, targets)
    assert logits is main and torch.allclose(plain, module._loss(main, targets))


def test_a_subset_with_no_readable_images_is_a_clear_error(learnable_cells, tmp_path):
    import csv
    import shutil

    from tests.clitools import run

    cells = tmp_path / "cells"
    shutil.copytree(learnable_cells, cells)
    made = run("split", str(cells), "-d", "malaria-nih", "--out", str(tmp_path / "split.csv"), "-q")
    assert made.returncode == 0, made.stderr
    for row in csv.DictReader((tmp_path / "split.csv").open()):
        if row["subset"] == "val":
            (cells / row["path"]).write_bytes(b"not a png")
    with pytest.raises(UserError, match="val subset has no readable images"):
        train(tiny_config(split=str(tmp_path / "split.csv")), out=tmp_path / "run", data=str(cells), progress=False)


def test_overwrite_starts_a_clean_run(trained, learnable_cells, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained.run, run)
    (run / "notes.txt").write_text("mine")  # not a run file: kept
    again = train(tiny_config(epochs=2), out=run, data=str(learnable_cells), progress=False, overwrite=True)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [f"best-epoch={again.best_epoch}.ckpt",
                                                                       "last.ckpt"]
    assert [p.name for p in (run / "logs" / "csv").iterdir()] == ["version_0"]
    assert (run / "notes.txt").read_text() == "mine"
    assert json.loads((run / "model.json").read_text())["metric"]["epoch"] == again.best_epoch <= 1


def test_precision_auto_follows_the_hardware(monkeypatch, tmp_path):
    from cellscreen.engine import inference

    avx2, amx = tmp_path / "avx2", tmp_path / "amx"
    avx2.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n")
    amx.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n")
    monkeypatch.setattr(inference.torch.cuda, "is_available", lambda: False)
    assert not inference.native_bf16(avx2) and inference.native_bf16(amx)
    assert not inference.native_bf16(tmp_path / "missing")  # no /proc/cpuinfo: fp32
    # a bf16 GPU beside a CPU without bf16 units: it counts only when the GPU trains
    monkeypatch.setattr(inference.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(inference.torch.cuda, "is_bf16_supported", lambda: True)
    assert inference.native_bf16(avx2) and inference.native_bf16(avx2, device="gpu")
    assert not inference.native_bf16(avx2, device="cpu") and inference.native_bf16(amx, device="cpu")
    monkeypatch.setattr(inference, "native_bf16", lambda device="auto": device != "cpu")
    assert inference.resolve_precision("auto") == "bf16-mixed"
    assert inference.resolve_precision("auto", "cpu") == "32"
    assert inference.resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"  # an explicit choice stays


def test_a_run_records_the_precision_auto_chose(trained_run):
    """config.yaml holds the precision "auto" settled on, so --resume on other hardware keeps it."""
    from cellscreen.config import load_config

    recorded = load_config(str(trained_run.run / "config.yaml")).precision
    assert recorded in ("32", "bf16-mixed")
    assert json.loads((trained_run.run / "model.json").read_text())["train"]["precision"] == recorded


def test_mixed_cells_train_on_class_probabilities():
    """MixUp/CutMix hand the loss class probabilities; unmixed one-hot rows give the index loss, for both heads."""
    import torch

    from cellscreen.engine.module import CellClassifier
    from cellscreen.models import create_model

    for preset in ("default", "seed_malaria_cnn"):
        config = load_config(preset, {"input_size": 32, "mixup": 0.4, "cutmix": 1.0, "label_smoothing": 0.1})
        module = CellClassifier(create_model(config.model, num_classes=2, input_size=32), config)
        targets = torch.tensor([0, 1, 1, 0])
        logits = torch.randn(4, 1 if module.single_logit else 2)
        one_hot = torch.nn.functional.one_hot(targets, 2).float()
        assert torch.allclose(module._loss(logits, one_hot), module._loss(logits, targets), atol=1e-6)
        torch.manual_seed(0)
        images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
        mixed, labels = module.mixing(images.float() / 255, targets)
        assert mixed.shape == images.shape and labels.shape == (4, 2)
        assert torch.allclose(labels.sum(1), torch.ones(4)) and not torch.equal(labels, one_hot)
        module.log = lambda *args, **kwargs: None  # no trainer here
        assert torch.isfinite(module.training_step((images, targets), 0))
    assert CellClassifier(create_model("compact_cnn6s", num_classes=2, input_size=32),
                          load_config(None, {"input_size": 32})).mixing is None


def test_mixing_and_averaging_settings_are_validated():
    for bad in ("mixup=-1", "cutmix=-0.5", "ema_decay=1", "ema_decay=-0.1"):
        with pytest.raises(UserError, match=bad.split("=")[0]):
            load_config(None, {}, [bad])
    assert load_config(None, {}, ["ema_decay=0.99"]).ema_decay == 0.99


def test_with_weight_averaging_the_saved_model_is_the_average(learnable_cells, tmp_path):
    """ema_decay: validation, the best checkpoint and model.safetensors hold the averaged weights; the weights
    being trained are kept beside them so that a run can resume."""
    import torch

    result = train(tiny_config(ema_decay=0.9, monitor="val_acc", epochs=2), out=tmp_path / "ema",
                   data=str(learnable_cells), progress=False)
    (best,) = (result.run / "checkpoints").glob("best-*.ckpt")
    for path in (best, result.run / "checkpoints" / "last.ckpt"):
        stored = torch.load(path, map_location="cpu", weights_only=True)
        averaged, current = stored["state_dict"], stored["current_model_state"]
        name = next(k for k in averaged if k.endswith("weight") and averaged[k].dim() == 4)
        assert not torch.allclose(averaged[name], current[name])  # an average, not the last step's weights
    saved = load_checkpoint(result.run).model.state_dict()
    best = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.allclose(saved[k.removeprefix("model.")].float(), v.float()) for k, v in best.items()
               if k.startswith("model."))


def test_a_student_learns_from_its_teachers_probabilities(trained, learnable_cells, tmp_path):
    """The teacher predicts each training cell at its own size, in the student's order; a teacher from
    another split (which may have seen the student's test cells) is refused."""
    from cellscreen.engine.data import prepare_data
    from cellscreen.engine.distill import teacher_probabilities

    config = tiny_config(input_size=24, teacher=str(trained.run), teacher_weight=0.7, epochs=2)
    prepared = prepare_data(config, data=str(learnable_cells), input_size=24, interpolation="bicubic",
                            progress=False)
    proba = teacher_probabilities(config.teacher, prepared, fold=None, progress=False)
    targets = prepared.subsets["train"].targets
    assert proba.shape == (len(targets), 2) and torch_allclose_rows(proba)
    assert (proba.argmax(1) == targets).float().mean() >= 0.9  # in the cells' own order
    student = train(config, out=tmp_path / "student", data=str(learnable_cells), progress=False)
    meta = load_checkpoint(student.run).meta
    assert meta["train"]["config"]["teacher"] == str(trained.run) and meta["data_config"]["input_size"] == 24
    with pytest.raises(UserError, match="same split and fold"):
        train(tiny_config(teacher=str(trained.run), split_seed=1), out=tmp_path / "other",
              data=str(learnable_cells), progress=False)
    assert not (tmp_path / "other").exists()  # nothing half-made to block the next try
    import torch

    from cellscreen.engine.module import CellClassifier

    plain = tiny_config(teacher_weight=0.7, rotate_flip=False, color_jitter=0, stain_jitter=0)
    module = CellClassifier(load_checkpoint(student.run).model, plain).eval()  # eval: no dropout, fixed BN
    module.log = lambda *args, **kwargs: None
    images, targets = prepared.subsets["train"].images[:8], prepared.subsets["train"].targets[:8]
    logits = module(images)
    expected = 0.3 * module._loss(logits, targets) + 0.7 * module._loss(logits, proba[:8])
    assert torch.allclose(module.training_step((images, targets, proba[:8]), 0), expected, atol=1e-5)
    with pytest.raises(UserError, match="mixup and cutmix off"):
        tiny_config(teacher=str(trained.run), mixup=0.2)
    with pytest.raises(UserError, match="teacher_weight"):
        tiny_config(teacher_weight=0)


def test_a_resumed_student_keeps_the_targets_it_started_with(trained, learnable_cells, tmp_path):
    """The teacher's probabilities are saved with the run: retrained or deleted after the start, the teacher
    cannot change a resumed run's targets."""
    import shutil

    import torch
    from safetensors.torch import load_file

    from cellscreen.engine.data import prepare_data
    from cellscreen.engine.distill import teacher_probabilities

    teacher = tmp_path / "teacher"
    shutil.copytree(trained.run, teacher)
    config = tiny_config(teacher=str(teacher), epochs=1)
    student = train(config, out=tmp_path / "student", data=str(learnable_cells), progress=False)
    saved = load_file(student.run / "teacher.safetensors")["probabilities"]
    prepared = prepare_data(config, data=str(learnable_cells), input_size=16, interpolation="bicubic",
                            progress=False)
    recomputed = teacher_probabilities(str(teacher), prepared, fold=None, progress=False)
    # the same cells in the same order; float sums may differ in the last bits between CPUs and batchings
    assert torch_allclose_rows(saved) and torch.allclose(saved, recomputed, rtol=1e-4, atol=1e-6)
    shutil.rmtree(teacher)  # gone: only the saved targets can carry the run on
    resumed = train(config, out=student.run, data=str(learnable_cells), resume=True, progress=False)
    assert load_file(resumed.run / "teacher.safetensors")["probabilities"].equal(saved)
    with pytest.raises(UserError, match="other training cells"):  # the run's cells changed meanwhile
        train(config, out=student.run, data=str(make_fewer_cells(learnable_cells, tmp_path)), resume=True,
              progress=False)
    (student.run / "teacher.safetensors").write_bytes(b"damaged")
    with pytest.raises(UserError, match="cannot be read.*--overwrite"):
        train(config, out=student.run, data=str(learnable_cells), resume=True, progress=False)


def make_fewer_cells(cells, tmp_path):
    """A copy of a cell folder without its first parasitized cell."""
    import shutil

    copy = tmp_path / "fewer" / "cell_images"
    shutil.copytree(cells, copy)
    next(iter(sorted((copy / "Parasitized").iterdir()))).unlink()
    return copy


def torch_allclose_rows(proba) -> bool:
    import torch

    return bool(torch.allclose(proba.sum(1), torch.ones(len(proba)), atol=1e-4))


def test_drop_hardest_leaves_out_the_highest_losses_from_the_second_epoch(monkeypatch):
    import torch

    from cellscreen.engine.module import CellClassifier
    from cellscreen.models import create_model

    with pytest.raises(UserError, match="drop_hardest"):
        load_config(None, {}, ["drop_hardest=0.5"])
    with pytest.raises(UserError, match="mixup and cutmix off"):
        load_config(None, {}, ["drop_hardest=0.1", "mixup=0.2"])
    config = load_config(None, {"input_size": 32, "drop_hardest": 0.25, "rotate_flip": False, "color_jitter": 0,
                                "stain_jitter": 0, "label_smoothing": 0})
    module = CellClassifier(create_model(config.model, num_classes=2, input_size=32), config)
    module.log = lambda *args, **kwargs: None  # no trainer here
    logits = torch.tensor([[4.0, -4.0], [0.0, 0.0], [-3.0, 3.0], [1.0, -1.0]])
    module.forward = lambda images: logits
    targets = torch.tensor([1, 0, 1, 0])  # the first cell's label is the one the model disputes most
    losses = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    epoch = {"value": 0}
    monkeypatch.setattr(CellClassifier, "current_epoch", property(lambda self: epoch["value"]))
    images = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)
    assert torch.isclose(module.training_step((images, targets), 0), losses.mean())  # the first epoch: all
    epoch["value"] = 1
    assert torch.isclose(module.training_step((images, targets), 0), losses[1:].mean())
