"""Every registered architecture trained with one shared recipe on the same slide-disjoint split.

    python bench/zoo.py --out runs/zoo --size 48 --epochs 5 --train-limit 4000

Runs `cellscreen train` per model on fold 0 of the 5-fold malaria split by
slide (`bench/crossval.py` makes the same split), at one input size (LeNet-5
keeps its 32 px; AlexNet, the 6-block seed_allnet and Inception v3 get their minimum, 64, 64 and 75 px), with the same
optimiser, schedule, augmentation and number of epochs, from random weights.
Then measures inference speed (cells/s, batches of 256, one warm-up batch) on
the fold's test cells, and prints one JSON line per model and a Markdown
table.  A model already trained in ``--out`` is not trained again (an
interrupted one continues from its last checkpoint), and
several processes can share one ``--out`` (each trains the models no other
has claimed), e.g. one thread each on a multi-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

MIN_SIZE = {"alexnet": 64, "inception_v3": 75, "seed_allnet": 64}  # smallest inputs these networks accept


def inference_rate(run: Path, images, seconds: float = 10.0) -> float:
    """Cells per second of ``predict_proba`` (fp32, current thread count), timed for about ``seconds``."""
    from cellscreen.engine.checkpoint import load_checkpoint
    from cellscreen.engine.inference import predict_proba

    model = load_checkpoint(run).model
    predict_proba(model, images[:256])  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds and done < len(images) * 4:
        batch = images[done % len(images):][:256]
        predict_proba(model, batch)
        done += len(batch)
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--models", nargs="*", help="default: every registered model")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-limit", type=int, default=None, help="train on at most this many cells")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--dataset", default="malaria-nih")
    parser.add_argument("--set", action="append", default=[], help="extra FIELD=VALUE settings for every model")
    parser.add_argument("--table", action="store_true", help="only print the table of the models measured so far")
    args = parser.parse_args()
    if args.table:
        _print_table([json.loads(p.read_text()) for p in sorted(Path(args.out).glob("*/zoo_row.json"))])
        return

    from cellscreen.models import count_flops, create_model, list_models

    cellscreen = str(Path(sys.executable).with_name("cellscreen"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    split = out / "folds.csv"
    if not split.exists():
        subprocess.run([cellscreen, "split", "-d", args.dataset, "--method", "kfold", "--folds", "5", "--seed", "0",
                        "--out", str(split), "-q"], check=True)
    rows = []
    for name in args.models or list_models():
        size = max(args.size, MIN_SIZE.get(name, 0)) if name != "lenet5" else 32
        run = out / name
        if _taken_by_another(out / f"{name}.running"):
            print(f"{name}: another zoo.py process is training it; skipped", flush=True)
            continue
        if not (run / "test" / "metrics.json").exists():
            (out / f"{name}.running").write_text(str(os.getpid()))
            command = [cellscreen, "train", "-d", args.dataset, "--split", str(split), "--fold", str(args.fold),
                       "--out", str(run), "-q", "--bootstrap", "200"]
            if (run / "checkpoints" / "last.ckpt").exists():  # interrupted: continue it with its own settings
                command.append("--resume")
            else:
                command += ["--overwrite", "--model", name, "--input-size", str(size), "--epochs", str(args.epochs),
                            "--set", "lr=0.001", "--set", "batch_size=32"]
                if args.train_limit:
                    command += ["--set", f"train_limit={args.train_limit}"]
                for assignment in args.set:
                    command += ["--set", assignment]
            start = time.perf_counter()
            subprocess.run(command, check=True)
            (run / "wall_seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
            (out / f"{name}.running").unlink()
        metrics = json.loads((run / "test" / "metrics.json").read_text())["metrics"]
        model = create_model(name, num_classes=2, input_size=size)
        from cellscreen.engine.checkpoint import load_checkpoint

        images = _test_images(run, load_checkpoint(run))
        row = {
            "model": name, "size": size, "params": sum(p.numel() for p in model.parameters()),
            "gflops": round(count_flops(model, size) / 1e9, 4), "accuracy": round(metrics["accuracy"], 4),
            "roc_auc": round(metrics["roc_auc"], 4), "mcc": round(metrics["mcc"], 4),
            "train_seconds": float((run / "wall_seconds.txt").read_text()),
            "infer_cells_per_s": round(inference_rate(run, images), 1),
        }
        rows.append(row)
        (run / "zoo_row.json").write_text(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    _print_table(rows)


def _print_table(rows: list[dict]) -> None:
    print("\n| model | input | params | GFLOPs | accuracy | ROC AUC | MCC | train (s) | inference (cells/s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: -r["roc_auc"]):
        print(f"| {r['model']} | {r['size']} | {r['params'] / 1e6:.2f} M | {r['gflops']:.3f} | {r['accuracy']:.4f} | "
              f"{r['roc_auc']:.4f} | {r['mcc']:.4f} | {r['train_seconds']:.0f} | {r['infer_cells_per_s']:,.0f} |")


def _taken_by_another(marker: Path) -> bool:
    """Several zoo.py processes can share one --out: each model is trained by whoever claims it first."""
    if not marker.exists():
        return False
    pid = int(marker.read_text() or 0)
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, ValueError):
        return False  # a stale claim of a process that is gone
    return pid != os.getpid()


def _test_images(run: Path, checkpoint):
    """Up to 1,024 test cells of the run's split, at the checkpoint's input size (from the run's cache)."""
    from cellscreen.config import load_config
    from cellscreen.engine.data import prepare_data

    config = load_config(str(run / "config.yaml"))
    data = prepare_data(config, data=None, input_size=checkpoint.data_config.input_size,
                        interpolation=checkpoint.data_config.interpolation, progress=False)
    return data.subsets["test"].images[:1024].permute(0, 2, 3, 1).numpy()


if __name__ == "__main__":
    main()
