"""Compare models and recipes on the same folds: train each, evaluate each, report them side by side.

``run_comparison`` makes one split manifest (hold-out or k folds by patient or
slide; by cell only when asked, and then every figure is labelled LEAKY),
trains every entry on every fold into ``OUT/runs/ENTRY/FOLD``, evaluates it on
that fold's test cells, and writes the report (``OUT/report.html`` and
``OUT/report.md``).  A finished run is never trained again and an interrupted
one resumes from its last checkpoint, so an interrupted comparison continues
where it stopped.  Across k folds every cell is tested exactly once, so the
report pools the out-of-fold predictions: one set of metrics per entry, with
intervals from a bootstrap over whole groups.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from cellscreen.config import list_presets, load_config
from cellscreen.errors import UserError
from cellscreen.files import atomic_write

__all__ = ["Entry", "parse_entries", "run_comparison"]


@dataclasses.dataclass(frozen=True)
class Entry:
    """One line of the comparison: a preset, optionally with another model."""

    name: str
    preset: str
    model: str | None = None


def parse_entries(items: list[str]) -> list[Entry]:
    """``seed_malaria_cnn`` (a preset), ``resnet18`` (a model, trained with the default recipe) or
    ``resnet18@seed_allnet`` (a model with a preset's recipe)."""
    from cellscreen.models import list_models

    entries = []
    for item in items:
        model, _, preset = item.partition("@")
        if not preset and model in list_presets():
            entries.append(Entry(name=model, preset=model))
            continue
        preset = preset or "default"
        if model not in list_models():
            raise UserError(f"{model!r} is neither a preset ({', '.join(list_presets())}) nor a model "
                            "(see `cellscreen models`)")
        if preset not in list_presets():
            raise UserError(f"unknown preset {preset!r}; presets: {', '.join(list_presets())}")
        entries.append(Entry(name=item.replace("@", "-"), preset=preset, model=model))
    if len({e.name for e in entries}) != len(entries):
        raise UserError("each entry may appear only once")
    if not entries:
        raise UserError("name at least one preset or model to compare")
    return entries


def _split_settings(dataset: str, protocol: str, folds: int, seed: int, by: str, relabel: list[str]) -> dict:
    """What a comparison's split is made with; a resumed comparison must be made with the same."""
    from cellscreen.labels.applied import file_hashes

    settings = {"dataset": dataset, "protocol": protocol, "folds": folds, "seed": seed, "by": by}
    return {**settings, "relabels": file_hashes(relabel)} if relabel else settings


def _split(dataset: str, data: str | None, out: Path, *, protocol: str, folds: int, seed: int, by: str,
           allow_leakage: bool, group_regex: str | None, relabel: list[str], workers: int | None,
           progress: bool) -> Path:
    from cellscreen.data.index import scan_dataset
    from cellscreen.data.sources import get_profile, resolve_dataset_dir
    from cellscreen.data.splits import make_split
    from cellscreen.labels.applied import relabel_index

    path = out / "split.csv"
    settings = _split_settings(dataset, protocol, folds, seed, by, relabel)
    recorded = out / "comparison.json"
    if path.exists():  # resuming: the same protocol, or a clear refusal
        before = json.loads(recorded.read_text())["split"] if recorded.exists() else None
        if before != settings:
            raise UserError(f"{out} holds a comparison with other split settings ({before}); use another --out")
        return path
    profile = get_profile(dataset, group_regex=group_regex)
    index = scan_dataset(resolve_dataset_dir(profile, data), profile, workers=workers, progress=progress)
    index, _ = relabel_index(index, relabel)
    manifest = make_split(index, method=protocol, by=by, folds=folds, seed=seed, allow_leakage=allow_leakage)
    manifest.write(path)
    return path


def _recorded_interpolation(entry_dir: Path) -> str | None:
    """The resize of the entry's folds already trained or started (None: none yet).

    A comparison resumed by a newer cellscreen trains its remaining folds with the resize of the folds it
    has, so one entry's folds never mix two preprocessings; a fold begun before the resize was recorded
    used exact bicubic.
    """
    from cellscreen.data.images import UNRECORDED_INTERPOLATION

    config_file = next(iter(sorted(entry_dir.glob("*/config.yaml"))), None)
    if config_file is None:
        return None
    return load_config(str(config_file)).interpolation or UNRECORDED_INTERPOLATION


def run_comparison(entries: list[Entry], *, dataset: str, out: str | Path, data: str | None = None,
                   protocol: str = "kfold", folds: int = 5, seed: int = 0, by: str = "group",
                   allow_leakage: bool = False, group_regex: str | None = None, settings: list[str] = (),
                   n_boot: int = 1000, workers: int | None = None, progress: bool = True,
                   relabel: list[str] = ()) -> Path:
    """Train and evaluate every entry on every fold (skipping finished runs); return the HTML report path.
    With ``relabel`` files, every entry trains on their labels and the report measures the same predictions
    against the folder's own labels too."""
    from cellscreen.compare.report import write_comparison_report
    from cellscreen.engine.train import train
    from cellscreen.evaluate.run import report_on_subset

    if by == "cell" and not allow_leakage:
        raise UserError("a cell-level split puts cells of one patient on both sides; pass --allow-leakage to "
                        "reproduce the studies' protocol anyway (every figure is then marked LEAKY)")
    out = Path(out)
    relabel = [str(Path(f).expanduser().resolve()) for f in relabel]  # recorded so that any folder finds them
    out.mkdir(parents=True, exist_ok=True)
    split = _split(dataset, data, out, protocol=protocol, folds=folds, seed=seed, by=by,
                   allow_leakage=allow_leakage, group_regex=group_regex, relabel=relabel, workers=workers,
                   progress=progress)
    atomic_write(out / "comparison.json", json.dumps({
        "split": _split_settings(dataset, protocol, folds, seed, by, relabel),
        "entries": [dataclasses.asdict(e) for e in entries], "settings": list(settings),
    }, indent=2) + "\n")
    fold_ids = list(range(folds)) if protocol == "kfold" else [None]
    for entry in entries:
        for fold in fold_ids:
            run_dir = out / "runs" / entry.name / ("holdout" if fold is None else f"fold{fold}")
            if (run_dir / "test" / "metrics.json").exists():
                continue
            resume = (run_dir / "checkpoints" / "last.ckpt").exists()
            overrides = {"dataset": dataset, "split": str(split), "fold": fold, "seed": seed,
                         "group_regex": group_regex, "model": entry.model, "relabel": relabel or None,
                         "interpolation": _recorded_interpolation(run_dir.parent)}
            config = load_config(entry.preset, overrides, list(settings))
            print(f"{entry.name}, {'hold-out' if fold is None else f'fold {fold}'}: "
                  f"{'resuming' if resume else 'training'} {config.model}", flush=True)
            start = time.perf_counter()
            result = train(config, out=run_dir, data=data, resume=resume, overwrite=not resume, progress=progress,
                           workers=workers)
            seconds = time.perf_counter() - start
            index = result.data.index
            report_on_subset(run_dir, result.data.subsets["test"], profile=index.profile, root=index.root,
                             out=run_dir / "test", subset_name="test", skipped=len(index.skipped), n_boot=0,
                             relabels=result.data.relabels)
            atomic_write(run_dir / "wall_seconds.txt", f"{seconds:.1f}\n")
    return write_comparison_report(out, entries, n_boot=n_boot)
