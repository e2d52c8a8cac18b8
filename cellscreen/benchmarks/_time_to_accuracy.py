"""``bench time-to-accuracy``: wall seconds of a real training run until validation accuracy first
reaches a target."""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from cellscreen.benchmarks._common import record, rounded
from cellscreen.errors import UserError

__all__ = ["epoch_log", "first_reaching", "time_to_accuracy", "train_quietly"]


def epoch_log(run: str | Path) -> tuple[float, list[tuple[float, float]]]:
    """From a run's TensorBoard events (the latest version): the time the log began (about when fitting
    started) and ``(wall_time, val_acc)`` of every validation, in order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # keeps start-up fast

    versions = sorted((Path(run) / "logs" / "tb").glob("version_*"), key=lambda p: int(p.name.split("_")[-1]))
    if not versions:
        raise UserError(f"{run} has no TensorBoard log (logs/tb/version_*)")
    events = EventAccumulator(str(versions[-1]), size_guidance={"scalars": 0})
    events.Reload()
    scalars = events.Scalars("val_acc") if "val_acc" in events.Tags()["scalars"] else []
    return events.FirstEventTimestamp(), [(e.wall_time, float(e.value)) for e in scalars]


def first_reaching(times: list[float], accuracies: list[float], target: float) -> tuple[int | None, float | None]:
    """(epoch index, time) of the first accuracy >= target, or (None, None)."""
    for k, (t, acc) in enumerate(zip(times, accuracies)):
        if acc >= target:
            return k, t
    return None, None


@contextlib.contextmanager
def _run_folder(out: str | Path | None):
    if out is not None:
        yield Path(out)
        return
    with tempfile.TemporaryDirectory(prefix="cellscreen-bench-") as tmp:
        yield Path(tmp) / "run"


def train_quietly(config, *, out: Path, data: str | None, progress: bool, workers: int | None,
                   overwrite: bool = False):
    """``train`` with anything it prints (progress bars, warnings) on stderr: stdout carries the JSON."""
    from cellscreen.engine.train import train  # keeps start-up fast

    with contextlib.redirect_stdout(sys.stderr):
        return train(config, out=out, data=data, progress=progress, workers=workers, overwrite=overwrite)


def time_to_accuracy(target: float, *, preset: str = "default", overrides: dict | None = None,
                     settings: Iterable[str] = (), data: str | None = None, out: str | Path | None = None,
                     overwrite: bool = False, progress: bool = False, workers: int | None = None) -> dict:
    """Train with cellscreen's recipe (``preset`` + ``overrides`` + ``settings``) and report the wall seconds
    until the validation accuracy first reached ``target`` (``null`` if it never did).

    ``seconds_to_target`` counts from the call (indexing, caching and model set-up included);
    ``fit_seconds_to_target`` from the start of fitting (the TensorBoard log's first event).  Without
    ``out`` the run goes to a temporary folder that is removed afterwards.
    """
    from cellscreen.config import load_config  # keeps start-up fast

    config = load_config(preset, overrides or {}, list(settings))
    with _run_folder(out) as run:
        start = time.time()
        result = train_quietly(config, out=run, data=data, progress=progress, workers=workers, overwrite=overwrite)
        total = time.time() - start
        fit_start, validations = epoch_log(run)
    times = [t for t, _ in validations]
    accuracies = [a for _, a in validations]
    epoch, when = first_reaching(times, accuracies, target)
    per_epoch = [{"epoch": k + 1, "seconds": rounded(t - start), "fit_seconds": rounded(t - fit_start),
                  "epoch_seconds": rounded(t - (times[k - 1] if k else fit_start)), "val_acc": rounded(a, 4)}
                 for k, (t, a) in enumerate(validations)]
    return record(
        "time-to-accuracy", target=target, reached=epoch is not None,
        seconds_to_target=rounded(when - start) if when is not None else None,
        fit_seconds_to_target=rounded(when - fit_start) if when is not None else None,
        epoch_reached=epoch + 1 if epoch is not None else None,
        preset=preset, model=config.model, input_size=config.input_size, batch_size=config.batch_size,
        epochs=config.epochs, epochs_run=len(validations), train_images=len(result.data.subsets["train"]),
        val_images=len(result.data.subsets["val"]), setup_seconds=rounded(fit_start - start),
        total_seconds=rounded(total), best_val_acc=rounded(max(accuracies), 4) if accuracies else None,
        final_val_acc=rounded(accuracies[-1], 4) if accuracies else None, per_epoch=per_epoch,
        run=str(out) if out is not None else None)
