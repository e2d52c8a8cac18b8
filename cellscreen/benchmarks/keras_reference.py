"""Reference run of the malaria study's own software stack: Keras + TensorFlow.

A script, never imported: it ships inside the package only so that ``cellscreen bench
compare-reference`` finds it in an installed cellscreen and runs it, by its path, with another Python.
It never imports cellscreen.  It runs in its own environment (``requirements-keras.txt`` beside it):

    python3 -m venv /work/.venv-keras
    /work/.venv-keras/bin/pip install -r cellscreen/benchmarks/requirements-keras.txt

    /work/.venv-keras/bin/python cellscreen/benchmarks/keras_reference.py train \\
        --data /work/shared/data/malaria-nih/cell_images \\
        --split runs/zoo/folds.csv --fold 0 --epochs 20 [--limit 800] [--threads 2]
    /work/.venv-keras/bin/python cellscreen/benchmarks/keras_reference.py predict \\
        --inputs DIR_OR_PNG... [--weights FILE]

(paths from a checkout; in an installed cellscreen, ``cellscreen.benchmarks.REFERENCE_SCRIPT`` and
``KERAS_REQUIREMENTS`` give them).

Each command prints exactly one JSON line on stdout (TensorFlow's C++ logs are
silenced with TF_CPP_MIN_LOG_LEVEL=2 unless already set; Python warnings go to
stderr).

What ``train`` does, as the study did: the study's CNN (conv 16/32/64, 3x3,
ReLU, 2x2 max-pooling, dropout 0.2/0.3/0.3, dense 64 + dropout 0.5, one sigmoid
output), binary cross-entropy, Adam with Keras's default learning rate (0.001),
batch 16, 128x128 inputs scaled by 1/255, Keras's default Glorot-uniform
initialisation, ``EarlyStopping(monitor='val_loss', patience=2)`` (Keras's
defaults: the weights of the last epoch are kept and tested, not the best).

The images come from a *directory image loader*.  Keras 3 no longer ships
``ImageDataGenerator``/``flow_from_directory``, so this uses its replacement,
``keras.utils.image_dataset_from_directory`` (tf.io decode, bilinear resize that
stretches each cell to 128x128 without keeping its aspect ratio), followed by a
``Rescaling(1/255)`` map on the dataset and ``prefetch``.  The folders it reads
are a temporary tree of symlinks ``train|val|test/<class>/`` built from a
cellscreen split manifest (CSV columns path, label, group and either ``subset``
= train/val/test or ``fold``; ``path`` is relative to the dataset root).

With a k-fold manifest the test subset is fold ``--fold`` and the validation
subset is chosen exactly as cellscreen does (``engine/data.py: subset_rows``):
``StratifiedGroupKFold(n_splits=min(7, groups), shuffle=True,
random_state=--val-seed)`` over the remaining rows, the first part validating
(about 1/7 of the other folds' slides, whole slides, class-stratified).
``--limit N`` also mirrors cellscreen's ``train_limit``: a class-stratified
``train_test_split(train, train_size=N, random_state=--seed)``.  Both need
scikit-learn, which is why it is in requirements-keras.txt.

Differences from cellscreen's own ``seed_malaria_cnn`` preset, kept on purpose
because this run reproduces the study's stack: cellscreen pads each cell to a
square and resizes with bicubic antialiasing, this loader stretches with
bilinear; cellscreen tests the best-validation-loss checkpoint, Keras's
EarlyStopping keeps the last epoch (``--restore-best`` changes that).  Conv
layers use ``padding='same'`` to match cellscreen's PyTorch port (3x3, padding
1; 16*16*64 features into the dense layer); ``--padding valid`` gives Keras's
own default (14*14*64).  The sigmoid output is P(Parasitized): class folders
are given in the order (Uninfected, Parasitized), cellscreen's order.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

POSITIVE_CLASS = "Parasitized"
MODEL_NAME = "seed_malaria_cnn"


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _import_tf(threads: int):
    """Import TensorFlow and Keras with ``threads`` intra-/inter-op threads (before any op runs)."""
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras

    return tf, keras


def _pipeline_options(tf, threads: int):
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads  # tf.data's decoding threads too
    return options


def build_model(keras, size: int, padding: str = "same"):
    """The study's CNN (Keras Sequential, default Glorot-uniform initialisation)."""
    layers = keras.layers
    model = keras.Sequential([keras.Input(shape=(size, size, 3))], name=MODEL_NAME)
    for width, dropout in ((16, 0.2), (32, 0.3), (64, 0.3)):
        model.add(layers.Conv2D(width, (3, 3), padding=padding, activation="relu"))
        model.add(layers.MaxPooling2D((2, 2)))
        model.add(layers.Dropout(dropout))
    model.add(layers.Flatten())
    model.add(layers.Dense(64, activation="relu"))
    model.add(layers.Dropout(0.5))
    model.add(layers.Dense(1, activation="sigmoid"))
    return model


# ---------------------------------------------------------------- split manifest

def read_split(path: Path, fold: int | None, val_seed: int) -> dict[str, list[dict]]:
    """train/val/test rows of a cellscreen manifest, validation chosen as cellscreen does."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"path", "label", "group"} <= rows[0].keys():
        sys.exit(f"{path}: not a cellscreen split manifest (columns path, label, group, subset or fold)")
    if "subset" in rows[0]:
        if fold is not None:
            sys.exit("--fold only applies to a k-fold manifest")
        parts = {"train": [], "val": [], "test": []}
        for row in rows:
            parts[row["subset"]].append(row)
        return parts
    if "fold" not in rows[0]:
        sys.exit(f"{path}: neither a 'subset' nor a 'fold' column")
    folds = sorted({int(row["fold"]) for row in rows})
    if fold is None or fold not in folds:
        sys.exit(f"a k-fold manifest needs --fold, one of {', '.join(map(str, folds))}")
    import numpy as np
    from sklearn.model_selection import StratifiedGroupKFold

    test = [row for row in rows if int(row["fold"]) == fold]
    rest = [row for row in rows if int(row["fold"]) != fold]
    labels = np.array([row["label"] for row in rest])
    groups = np.array([row["group"] for row in rest])
    n_parts = min(7, len(set(groups.tolist())))
    if n_parts < 2:
        sys.exit("the training folds hold only one group: too few to set some aside for validation")
    splitter = StratifiedGroupKFold(n_splits=n_parts, shuffle=True, random_state=val_seed)
    _, held_out = next(iter(splitter.split(np.zeros(len(rest)), labels, groups)))  # part 0 validates
    is_val = np.zeros(len(rest), dtype=bool)
    is_val[held_out] = True
    return {"train": [r for r, v in zip(rest, is_val) if not v], "val": [r for r, v in zip(rest, is_val) if v],
            "test": test}


def limit_train(rows: list[dict], limit: int | None, seed: int) -> list[dict]:
    if not limit or len(rows) <= limit:
        return rows
    from sklearn.model_selection import train_test_split

    kept, _ = train_test_split(rows, train_size=limit, random_state=seed, stratify=[r["label"] for r in rows])
    return kept


def dataset_root(data: Path, rows: list[dict]) -> Path:
    """The folder the manifest's relative paths start from: DATA, or DATA/cell_images."""
    probe = rows[0]["path"]
    for root in (data, data / "cell_images"):
        if (root / probe).is_file():
            return root
    sys.exit(f"{probe} (from the manifest) is neither under {data} nor under {data / 'cell_images'}")


def link_tree(out: Path, root: Path, parts: dict[str, list[dict]], classes: list[str]) -> dict[str, int]:
    """out/<subset>/<class>/<file> -> root/<path>; returns the linked count per subset."""
    counts = {}
    for subset, rows in parts.items():
        for label in classes:
            (out / subset / label).mkdir(parents=True, exist_ok=True)
        linked = 0
        for row in rows:
            source = root / row["path"]
            if not source.is_file():
                print(f"warning: {source} is missing; left out", file=sys.stderr)
                continue
            (out / subset / row["label"] / row["path"].replace("/", "__")).symlink_to(source.resolve())
            linked += 1
        counts[subset] = linked
    return counts


# ---------------------------------------------------------------- train

def train(args) -> dict:
    tf, keras = _import_tf(args.threads)
    keras.utils.set_random_seed(args.seed)
    parts = read_split(Path(args.split), args.fold, args.val_seed)
    parts["train"] = limit_train(parts["train"], args.limit, args.seed)
    if not parts["train"] or not parts["val"]:
        sys.exit("the split needs both a training and a validation subset")
    labels = sorted({row["label"] for rows in parts.values() for row in rows})
    classes = [c for c in labels if c != POSITIVE_CLASS] + ([POSITIVE_CLASS] if POSITIVE_CLASS in labels else [])
    if len(classes) != 2:
        sys.exit(f"a binary (sigmoid) model needs exactly two classes; the manifest has {classes}")
    root = dataset_root(Path(args.data), parts["train"])
    rescale = keras.layers.Rescaling(1.0 / 255)
    options = _pipeline_options(tf, args.threads)

    with tempfile.TemporaryDirectory(prefix="keras-reference-") as tmp:
        counts = link_tree(Path(tmp), root, {k: v for k, v in parts.items() if v}, classes)

        def load(subset: str, shuffle: bool):
            ds = keras.utils.image_dataset_from_directory(
                Path(tmp) / subset, labels="inferred", label_mode="binary", class_names=classes,
                image_size=(args.size, args.size), batch_size=args.batch_size, shuffle=shuffle, seed=args.seed,
                interpolation=args.interpolation, verbose=False)
            return ds.map(lambda x, y: (rescale(x), y)).prefetch(tf.data.AUTOTUNE).with_options(options)

        train_ds, val_ds = load("train", True), load("val", False)
        test_ds = load("test", False) if counts.get("test") else None

        model = build_model(keras, args.size, args.padding)
        model.compile(optimizer=keras.optimizers.Adam(), loss="binary_crossentropy", metrics=["accuracy"])

        class EpochClock(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.start, self.seconds, self.val_accuracy = time.perf_counter(), [], []

            def on_epoch_end(self, epoch, logs=None):
                self.seconds.append(round(time.perf_counter() - self.start, 2))
                self.val_accuracy.append(round(float(logs["val_accuracy"]), 4))

        clock = EpochClock()
        stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=args.restore_best)
        start = time.perf_counter()
        history = model.fit(train_ds, validation_data=val_ds, epochs=args.epochs, callbacks=[stop, clock], verbose=0,
                            shuffle=False)  # the dataset shuffles itself (file list once, then a buffer per epoch)
        seconds = time.perf_counter() - start
        test_accuracy = None
        if test_ds is not None:
            test_accuracy = round(float(model.evaluate(test_ds, verbose=0, return_dict=True)["accuracy"]), 4)
        if args.save_weights:
            model.save_weights(args.save_weights)

    images, epochs = counts["train"], len(history.epoch)
    return {
        "tool": "keras-reference", "task": "train", "model": MODEL_NAME, "size": args.size,
        "batch_size": args.batch_size, "images": images, "epochs": epochs, "seconds": round(seconds, 2),
        "images_per_s": round(images * epochs / seconds, 1), "epoch_seconds": clock.seconds,
        "epoch_val_accuracy": clock.val_accuracy, "val_accuracy": clock.val_accuracy[-1],
        "test_accuracy": test_accuracy, "threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "tensorflow": tf.__version__, "keras": keras.__version__,
        "fold": args.fold, "val_images": counts["val"], "test_images": counts.get("test", 0),
        "train_per_class": dict(sorted(Counter(r["label"] for r in parts["train"]).items())),
    }


# ---------------------------------------------------------------- predict

def list_pngs(inputs: list[str]) -> list[str]:
    files = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(str(p) for p in item.rglob("*") if p.suffix.lower() == ".png" and p.is_file())
        elif item.is_file():
            files.append(str(item))
        else:
            sys.exit(f"{item} does not exist")
    return files


def predict(args) -> dict:
    tf, keras = _import_tf(args.threads)
    files = list_pngs(args.inputs)
    if not files:
        sys.exit("no PNG files under the inputs")
    if args.weights and args.weights.endswith(".keras"):
        model = keras.models.load_model(args.weights)
    else:
        keras.utils.set_random_seed(0)
        model = build_model(keras, args.size, args.padding)
        if args.weights:
            model.load_weights(args.weights)

    def load(path):
        image = tf.io.decode_png(tf.io.read_file(path), channels=3)
        image = tf.image.resize(image, (args.size, args.size), method=args.interpolation)
        return image * (1.0 / 255)

    ds = (tf.data.Dataset.from_tensor_slices(files).map(load, num_parallel_calls=tf.data.AUTOTUNE)
          .batch(args.batch_size).prefetch(tf.data.AUTOTUNE).with_options(_pipeline_options(tf, args.threads)))
    infer = tf.function(lambda x: model(x, training=False),
                        input_signature=[tf.TensorSpec([None, args.size, args.size, 3], tf.float32)])
    infer(tf.zeros([1, args.size, args.size, 3]))  # trace once, outside the timing

    start = time.perf_counter()
    outputs = [infer(batch).numpy() for batch in ds]
    seconds = time.perf_counter() - start
    cells = sum(len(o) for o in outputs)
    return {"tool": "keras-reference", "task": "predict", "cells": cells, "seconds": round(seconds, 3),
            "cells_per_s": round(cells / seconds, 1), "size": args.size, "batch_size": args.batch_size,
            "threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "tensorflow": tf.__version__, "keras": keras.__version__}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="task", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--size", type=int, default=128)
    common.add_argument("--threads", type=int, default=_cores(), help="TF intra-/inter-op threads (default: all cores)")
    common.add_argument("--padding", choices=("same", "valid"), default="same",
                        help="conv padding: 'same' matches cellscreen's port, 'valid' is Keras's default")
    common.add_argument("--interpolation", default="bilinear", help="resize method (the loader's default: bilinear)")

    t = sub.add_parser("train", parents=[common], help="train and test on a cellscreen split manifest")
    t.add_argument("--data", required=True, help="dataset root holding the class folders")
    t.add_argument("--split", required=True, help="cellscreen split manifest (CSV)")
    t.add_argument("--fold", type=int, default=None, help="test fold of a k-fold manifest")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--limit", type=int, default=None, help="train on at most N cells (class-stratified sample)")
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--seed", type=int, default=0, help="weights, dropout, shuffling and the --limit sample")
    t.add_argument("--val-seed", type=int, default=0, help="which slides validate (cellscreen's split_seed)")
    t.add_argument("--restore-best", action="store_true", help="test the best-val_loss epoch, not the last")
    t.add_argument("--save-weights", default=None, help="write the trained weights (*.weights.h5)")

    p = sub.add_parser("predict", parents=[common], help="time prediction over PNG files")
    p.add_argument("--inputs", nargs="+", required=True, help="folders (searched recursively) or PNG files")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--weights", default=None, help="*.weights.h5 from train --save-weights, or a .keras model")

    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    result = train(args) if args.task == "train" else predict(args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
