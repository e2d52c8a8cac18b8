"""Train a model on a dataset split and leave a self-describing run folder.

RUN/
  config.yaml          resolved settings (preset + overrides)
  split.csv, .json     the split manifest used
  checkpoints/         Lightning checkpoints (last.ckpt for resuming, best)
  logs/csv, logs/tb    CSV and TensorBoard logs
  learning_curves.png
  model.safetensors, model.json   the best weights and their description
  teacher.safetensors  with a teacher: its probabilities for the training cells, which a resumed run reuses
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import shutil
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import DataLoader, TensorDataset

from cellscreen.config import TrainConfig, load_config
from cellscreen.cpu import denormals_flushed, keep_freed_memory
from cellscreen.data.images import UNRECORDED_INTERPOLATION
from cellscreen.engine.checkpoint import save_checkpoint
from cellscreen.engine.curves import plot_learning_curves
from cellscreen.engine.data import PreparedData, manifest_copy, prepare_data
from cellscreen.engine.distill import teacher_probabilities
from cellscreen.engine.extra_cells import with_extra_training_cells
from cellscreen.engine.inference import INFERENCE_BATCH, logits_to_proba, predict_logits, resolve_precision
from cellscreen.engine.kinds import Checkpoint, load_checkpoint, resolve_checkpoint
from cellscreen.engine.module import CellClassifier
from cellscreen.engine.temperature import fit_temperature
from cellscreen.engine.threshold import run_decision
from cellscreen.errors import UserError
from cellscreen.files import atomic_path, atomic_write
from cellscreen.models import create_model, get_data_config, load_pretrained
from cellscreen.models.transfer import replace_head, set_trainable

__all__ = ["train", "TrainResult"]


@dataclasses.dataclass
class TrainResult:
    run: Path
    checkpoint: Path
    data: PreparedData
    seconds: float
    best_metric: float
    best_epoch: int
    primary: bool = True  # False in the other processes of a distributed run: they leave the run folder alone


def _check_run_folder(out: Path, resume: bool, overwrite: bool) -> None:
    if resume:
        if not _has_checkpoint(out):  # stopped before its first epoch was saved: the run starts again
            settings = "the settings in its config.yaml" if (out / "config.yaml").is_file() else \
                "this command's settings"
            print(f"note: no checkpoint in {out} yet (stopped before its first epoch was saved); starting the run "
                  f"again from the start with {settings}", flush=True)
            for name in set(_RUN_FILES) - set(_RUN_START):  # what the stopped start left half-done
                target = out / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        return
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"run folder {out} is not empty; pass --resume to continue it or --overwrite to start over")
    if overwrite:  # start over: the previous run's checkpoints and logs would mix with the new ones
        for name in _RUN_FILES:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()


def _has_checkpoint(out: Path) -> bool:
    return (out / "checkpoints" / "last.ckpt").is_file()


TEACHER_FILE = "teacher.safetensors"
# what a run folder holds (see the module docstring); --overwrite removes these and nothing else
_RUN_FILES = ("config.yaml", "split.csv", "split.json", "checkpoints", "logs", "learning_curves.png",
              "model.safetensors", "model.json", "test", "wall_seconds.txt", TEACHER_FILE,
              # graphs exported from the previous weights (cellscreen export, the demo)
              "model.onnx", "model.onnx.json", "model.int8.onnx", "model.int8.onnx.json")
_RUN_START = ("config.yaml", "split.csv", "split.json", TEACHER_FILE)  # written before the first epoch


def _training_cells_digest(prepared: PreparedData) -> str:
    return hashlib.sha256("\n".join(prepared.subsets["train"].paths).encode()).hexdigest()


def _teacher_targets(config: TrainConfig, prepared: PreparedData, out: Path, *, resume: bool,
                     workers: int | None, progress: bool) -> tuple[torch.Tensor, bool]:
    """The teacher's probabilities for the training cells, and whether they still have to be saved.

    A resumed run takes the ones its start saved: a teacher retrained, moved or deleted since cannot change
    the targets halfway through a run."""
    saved = out / TEACHER_FILE
    if resume and saved.is_file():
        try:
            with safe_open(saved, "pt") as f:
                stored, probabilities = f.metadata() or {}, f.get_tensor("probabilities")
        except Exception as exc:  # written atomically, so only damage from outside gets here
            raise UserError(f"{saved} cannot be read ({exc}); it holds the teacher's targets this run started "
                            "with, so the run cannot be resumed exactly: start it again with --overwrite") from None
        if stored.get("cells_sha256") != _training_cells_digest(prepared) or len(probabilities) != len(
                prepared.subsets["train"]):
            raise UserError(f"{saved} holds a teacher's probabilities for other training cells than this run's; "
                            "the run's data changed since it started, so it cannot be resumed")
        return probabilities, False
    return teacher_probabilities(config.teacher, prepared, fold=config.fold, precision=config.precision,
                                 workers=workers, progress=progress), True


def _save_teacher_targets(out: Path, probabilities: torch.Tensor, prepared: PreparedData, teacher: str) -> None:
    with atomic_path(out / TEACHER_FILE) as partial:
        save_file({"probabilities": probabilities.contiguous()}, partial,
                  metadata={"teacher": teacher, "cells_sha256": _training_cells_digest(prepared)})


def _fit_temperature(model, val_set) -> dict:
    """Temperature scaling on the validation cells: the fitted T and what it did to their NLL."""
    temperature, nll_before, nll_after = fit_temperature(predict_logits(model, val_set.images),
                                                         val_set.targets.numpy())
    return {"temperature": temperature, "fitted_on": "val", "cells": len(val_set), "nll_before": nll_before,
            "nll_after": nll_after}


class _DropAdverts(logging.Filter):
    """Lightning prints an advertisement for its cloud logger on every run; leave it out."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropAdverts())


class _AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written to a temporary name and renamed: a run killed while saving keeps its
    previous ``last.ckpt`` whole instead of a half-written one."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        # not files.atomic_path, whose temporary name keeps the suffix: Lightning takes any *.ckpt in the
        # folder for a checkpoint of the run
        partial = path.with_name(path.name + ".partial")
        super().save_checkpoint(checkpoint, partial, storage_options)
        os.replace(partial, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        """Tensors and plain values only, whatever the caller or the environment asks: a ``weights_only``
        given explicitly is one ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` cannot turn off (torch.serialization), so
        a planted ``last.ckpt`` cannot run code."""
        try:
            return torch.load(path, map_location=map_location or "cpu", weights_only=True)
        except Exception as exc:  # unpickling refused, a damaged zip, a truncated file ...
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"{path} cannot be resumed from: it holds more than weights or is damaged ({reason}); "
                            "start the run again with --overwrite") from None


class _RandomState(L.Callback):
    """Keeps the random generators in every checkpoint and puts them back on resume, so a run that was killed
    and resumed shuffles, augments and drops out exactly as one that never stopped."""

    def __init__(self, loader_generator: torch.Generator):
        self.loader_generator = loader_generator

    def state_dict(self) -> dict:
        return {"torch": torch.get_rng_state(), "loader": self.loader_generator.get_state()}

    def load_state_dict(self, state_dict: dict) -> None:
        torch.set_rng_state(state_dict["torch"])
        self.loader_generator.set_state(state_dict["loader"])


def build_model(config: TrainConfig, *, num_classes: int, input_size: int, source: Checkpoint | None = None):
    """The model a run trains: built, loaded with ``pretrained`` weights or a source checkpoint's, given a
    new head if asked (or if the source had one) and frozen as ``trainable``/``freeze_bn`` say."""
    model = create_model(config.model, num_classes=num_classes, pretrained=config.pretrained, input_size=input_size)
    head = {"hidden": config.head_hidden, "dropout": config.head_dropout} if config.new_head else None
    if source is not None and head is None:
        head = source.meta.get("head")
    if head:
        replace_head(model, **head)
    if source is not None:
        load_pretrained(model, resolve_checkpoint(config.init_from).with_suffix(".safetensors"))
    if config.trainable != "all" or config.freeze_bn:
        set_trainable(model, config.trainable, freeze_bn=config.freeze_bn)
    return model


@denormals_flushed()  # while it trains (cellscreen/cpu.py); the caller's thread gets its own setting back
def train(config: TrainConfig, *, out: str | Path, data: str | None = None, resume: bool = False,
          overwrite: bool = False, progress: bool = True, workers: int | None = None, devices: int | str = 1,
          strategy: str = "auto", num_nodes: int = 1, accelerator: str = "auto") -> TrainResult:
    """Train ``config`` into the run folder ``out``.

    ``devices``/``strategy``/``num_nodes`` go to Lightning's Trainer: ``devices=2, strategy="ddp"`` trains in
    two processes (CPU: gloo), each on half of every batch (``batch_size`` stays the global batch); the
    same call runs under torchrun or SLURM on many GPUs and nodes.  Only the first process writes the
    checkpoint, curves and reports.
    """
    keep_freed_memory()  # with denormals flushed, a quarter of a small CNN's CPU step (cellscreen/cpu.py)
    out = Path(out)
    devices = int(devices) if str(devices).isdigit() else devices
    distributed = strategy not in ("auto", "single_device") or devices != 1 or num_nodes > 1
    # In a distributed run Lightning (or torchrun/SLURM) starts this function in every process; the first
    # one owns the run folder.
    first = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0 and os.environ.get("NODE_RANK",
                                                                                                  "0") == "0"
    from_checkpoint = resume and _has_checkpoint(out)  # else a resumed run starts again (_check_run_folder)
    if first:
        _check_run_folder(out, resume, overwrite)
    config = _settled_config(config, out, resume=resume and (out / "config.yaml").is_file(), accelerator=accelerator)
    start = time.perf_counter()
    L.seed_everything(config.seed, workers=True, verbose=False)
    config, source, input_size = _with_source(config)
    prepared = prepare_data(config, data=data, input_size=input_size, interpolation=config.interpolation,
                            workers=workers, progress=progress)
    prepared = with_extra_training_cells(prepared, config.extra_train, size=input_size,
                                         interpolation=config.interpolation)
    # before anything is written: a teacher that is refused leaves no half-made run folder behind
    taught, unsaved = _teacher_targets(config, prepared, out, resume=resume, workers=workers,
                                       progress=progress) if config.teacher else (None, False)
    out.mkdir(parents=True, exist_ok=True)
    split_sha = _write_run_start(out, config, prepared, taught if unsaved else None) if first else None

    model = build_model(config, num_classes=len(prepared.classes), input_size=input_size, source=source)
    model.data_config = dataclasses.replace(model.data_config, interpolation=config.interpolation)
    module = CellClassifier(model, config, class_weights=_class_weights(config, prepared),
                            num_classes=len(prepared.classes))
    world = (int(devices) if str(devices).isdigit() else 1) * num_nodes if distributed else 1
    if distributed and accelerator in ("auto", "cpu") and not torch.cuda.is_available():
        torch.set_num_threads(max(1, torch.get_num_threads() // world))  # processes share the CPU cores
    generator = torch.Generator().manual_seed(config.seed)
    train_loader, val_loader = _loaders(config, prepared, taught, generator, world)
    with _process_settings_restored(quiet=not progress):
        trainer, best = _trainer(config, out, generator, resume=from_checkpoint, progress=progress,
                                 accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy)
        _fit(trainer, module, train_loader, val_loader, resume=from_checkpoint)
    if not trainer.is_global_zero:
        return TrainResult(run=out, checkpoint=out / "model.json", data=prepared, seconds=time.perf_counter() - start,
                           best_metric=float("nan"), best_epoch=-1, primary=False)
    checkpoint, best_value, best_epoch = _save_best(model, best, config, prepared, out, split_sha)
    return TrainResult(run=out, checkpoint=checkpoint, data=prepared, seconds=time.perf_counter() - start,
                       best_metric=best_value, best_epoch=best_epoch)


def _settled_config(config: TrainConfig, out: Path, *, resume: bool, accelerator: str) -> TrainConfig:
    """The settings the run trains with: a resumed run's own, and the precision settled for this device."""
    if resume:  # the run's own settings win: a resumed run is the same run
        config = load_config(str(out / "config.yaml"))
        if config.interpolation is None:  # started before the resize was recorded
            config = dataclasses.replace(config, interpolation=UNRECORDED_INTERPOLATION)
    # "auto" is settled once, by the device that trains, and written into the run's config.yaml: a run
    # resumed on other hardware goes on in the precision it started in.
    return dataclasses.replace(config, precision=resolve_precision(config.precision, accelerator))


def _with_source(config: TrainConfig) -> tuple[TrainConfig, Checkpoint | None, int]:
    """The settings with the model, input size and resize settled, the checkpoint fine-tuned from (if any),
    and the input size."""
    source = None
    if config.init_from:  # fine-tune one of cellscreen's own models: its architecture and input size
        source = load_checkpoint(config.init_from)
        config = dataclasses.replace(config, model=source.meta["model"], input_size=source.data_config.input_size)
    input_size = config.input_size or get_data_config(config.model).input_size
    # settled once, like the precision: the model's own resize unless the config names one (a source checkpoint's
    # when fine-tuning, since its weights learnt on those pixels)
    own = source.data_config if source is not None else get_data_config(config.model)
    return dataclasses.replace(config, interpolation=config.interpolation or own.interpolation), source, input_size


def _write_run_start(out: Path, config: TrainConfig, prepared: PreparedData, taught: torch.Tensor | None) -> str:
    """What the first process writes before training: the settings, the teacher's targets if they are new,
    and the split manifest; returns the split's digest."""
    atomic_write(out / "config.yaml", config.to_yaml())
    if taught is not None:
        _save_teacher_targets(out, taught, prepared, config.teacher)
    return manifest_copy(prepared.manifest, out)


def _class_weights(config: TrainConfig, prepared: PreparedData) -> torch.Tensor | None:
    """Loss weights inversely proportional to each class's training cells, if ``class_weighting`` asks."""
    if not config.class_weighting:
        return None
    classes = len(prepared.classes)
    counts = torch.bincount(prepared.subsets["train"].targets, minlength=classes).float().clamp(min=1)
    return counts.sum() / (classes * counts)


def _loaders(config: TrainConfig, prepared: PreparedData, taught: torch.Tensor | None, generator: torch.Generator,
             world: int) -> tuple[DataLoader, DataLoader]:
    """The training loader (each of ``world`` processes takes its share of the batch) and the validation one."""
    train_set, val_set = prepared.subsets["train"], prepared.subsets["val"]
    batch_size = max(1, config.batch_size // world)
    columns = [train_set.images, train_set.targets] + ([taught] if taught is not None else [])
    train_loader = DataLoader(TensorDataset(*columns), batch_size=batch_size,
                              shuffle=True, generator=generator, drop_last=len(train_set) > config.batch_size)
    val_loader = DataLoader(TensorDataset(val_set.images, val_set.targets), batch_size=INFERENCE_BATCH)
    return train_loader, val_loader


def _trainer(config: TrainConfig, out: Path, generator: torch.Generator, *, resume: bool, progress: bool,
             **hardware) -> tuple[L.Trainer, L.pytorch.callbacks.ModelCheckpoint]:
    """Lightning's Trainer with the run's checkpoints, callbacks and logs, and the callback that keeps the best
    weights.  ``hardware``: ``accelerator``, ``devices``, ``num_nodes``, ``strategy``."""
    mode = "min" if config.monitor == "val_loss" else "max"
    best = L.pytorch.callbacks.ModelCheckpoint(dirpath=out / "checkpoints", filename="best-{epoch}",
                                               monitor=config.monitor, mode=mode, save_last=True)
    callbacks = [best, _RandomState(generator)]
    if config.ema_decay:  # validation, checkpoints and the saved model use the averaged weights
        callbacks.append(L.pytorch.callbacks.EMAWeightAveraging(decay=config.ema_decay))
    if config.early_stopping:
        callbacks.append(L.pytorch.callbacks.EarlyStopping(monitor=config.monitor, mode=mode,
                                                           patience=config.early_stopping))
    # a resumed run logs into the next version folder; the curves join them all
    version = len(list((out / "logs" / "csv").glob("version_*"))) if resume else 0
    loggers = [L.pytorch.loggers.CSVLogger(out / "logs", name="csv", version=version),
               L.pytorch.loggers.TensorBoardLogger(out / "logs", name="tb", version=version)]
    trainer = L.Trainer(
        max_epochs=config.epochs, **hardware, precision=config.precision, plugins=[_AtomicCheckpointIO()],
        callbacks=callbacks, logger=loggers, enable_progress_bar=progress, enable_model_summary=False,
        deterministic=True, log_every_n_steps=1, num_sanity_val_steps=0,
    )
    return trainer, best


@contextlib.contextmanager
def _process_settings_restored(*, quiet: bool):
    """Lightning quiet if asked while the trainer is made and fits; the logging level and PyTorch's
    deterministic settings put back afterwards (Lightning leaves its deterministic setting on for the whole
    process)."""
    lightning_log = logging.getLogger("lightning.pytorch")
    level = lightning_log.level
    if quiet:  # no "GPU available" banners either
        lightning_log.setLevel(logging.WARNING)
    deterministic_before = (torch.are_deterministic_algorithms_enabled(),
                            torch.is_deterministic_algorithms_warn_only_enabled(),
                            torch.utils.deterministic.fill_uninitialized_memory)
    try:
        yield
    finally:
        lightning_log.setLevel(level)
        torch.use_deterministic_algorithms(deterministic_before[0], warn_only=deterministic_before[1])
        torch.utils.deterministic.fill_uninitialized_memory = deterministic_before[2]


def _fit(trainer: L.Trainer, module: CellClassifier, train_loader: DataLoader, val_loader: DataLoader, *,
         resume: bool) -> None:
    """``trainer.fit`` from the start, or from the run's ``last.ckpt`` when resuming."""
    # Deterministic algorithms also fill every new tensor with NaN by default, to expose reads of memory
    # nobody wrote.  Nothing here reads such memory; the filling cost 10-20% of a training step on the
    # CPU, for the same weights (BENCHMARKS.md, "Training: deterministic algorithms without the NaN fill").
    torch.utils.deterministic.fill_uninitialized_memory = False
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")  # frozen BN, on purpose
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")  # Lightning vs torch 2.15
        trainer.fit(module, train_loader, val_loader, ckpt_path="last" if resume else None,
                    weights_only=True)  # _AtomicCheckpointIO.load_checkpoint insists on it too


def _save_best(model, best, config: TrainConfig, prepared: PreparedData, out: Path,
               split_sha: str | None) -> tuple[Path, float, int]:
    """Load the best epoch's weights into ``model``, fit its temperature, write the checkpoint and the learning
    curves; return the checkpoint's path, the best value of the monitored metric and its epoch."""
    saved = torch.load(best.best_model_path, map_location="cpu", weights_only=True)
    state, best_epoch = saved["state_dict"], int(saved["epoch"])
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    model = model.to(memory_format=torch.contiguous_format)
    best_value = float(best.best_model_score)
    train_set, val_set = prepared.subsets["train"], prepared.subsets["val"]
    classes = prepared.classes
    calibration = _fit_temperature(model, val_set) if config.calibrate else None
    temperature = calibration["temperature"] if calibration else 1.0
    positive_class = prepared.index.profile.positive_class if len(classes) == 2 else None
    meta = {
        "temperature": temperature,
        "calibration": calibration,
        "classes": classes,
        "positive_class": positive_class,
        # the decision threshold, given or chosen on the validation cells (engine/threshold.py)
        **run_decision(config, classes, positive_class, val_set.targets.numpy(), lambda: logits_to_proba(
            torch.from_numpy(predict_logits(model, val_set.images)), temperature).numpy()),
        "dataset": config.dataset,
        # how the folder was read, so that evaluate needs neither the pattern nor the folder again
        "group_regex": prepared.index.profile.group_regex,
        "root": str(prepared.index.root.resolve()),
        "relabels": prepared.index.relabels,  # the relabel files that gave the training labels (None: the folder's)
        "border_crop": prepared.index.profile.border_crop,
        "split": {"sha256": split_sha, "method": prepared.manifest.meta.get("method"),
                  "by": prepared.manifest.meta.get("by"), "fold": config.fold,
                  "leaky": bool(prepared.manifest.meta.get("leaky"))},
        "metric": {"name": config.monitor, "value": best_value, "epoch": best_epoch},
        "train": {"images": len(train_set), "val_images": len(val_set), "precision": config.precision,
                  "config": dataclasses.asdict(config)},
    }
    checkpoint = save_checkpoint(out, model, meta)
    plot_learning_curves(out / "logs" / "csv", out / "learning_curves.png", title=f"{config.model} on {config.dataset}")
    return checkpoint, best_value, best_epoch
