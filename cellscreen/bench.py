"""Benchmarks behind ``cellscreen bench``: each function returns plain dicts, one JSON object each.

* ``ceiling``            the machine's measured fp32/bf16 GFLOP/s for a square matmul and a 3x3 convolution
* ``cache_build``        images/s of indexing a dataset folder and building its cache from scratch
* ``train_throughput``   training steps (images/s) through the real training module on synthetic batches
* ``infer_throughput``   cells/s of one model per variant: eager, channels-last, bf16, torch.compile, onnxruntime
* ``time_to_accuracy``   wall seconds of a real training run until validation accuracy first reaches a target
* ``compare_reference``  cellscreen against the Keras reference (``bench/keras_reference.py``), with ratios

Throughputs carry ``gflops_per_s`` (FLOPs from ``count_flops``; a training step counts 3x the forward
pass) and ``fraction_of_ceiling``: that rate over the fp32 convolution ceiling measured in the same
process (a short probe of one large 3x3 convolution on torch and on onnxruntime, the faster counts), or
one passed in.  The probe is one shape, not the hardware's peak: a model whose layers suit a library
better, or a machine whose load dropped after the probe, can come out above 1.  Every record also says which benchmark it is, how many
threads torch uses, the CPU model and the cellscreen version.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from cellscreen import __version__
from cellscreen.errors import UserError

__all__ = ["KERAS_SETUP", "VARIANTS", "cache_build", "ceiling", "compare_reference", "conv_ceiling", "cpu_name",
           "epoch_log", "infer_throughput", "parse_variants", "record", "time_to_accuracy", "train_throughput"]

VARIANTS = ("eager", "channels_last", "bf16", "compile", "onnx")
REPO = Path(__file__).resolve().parents[1]
REFERENCE_SCRIPT = REPO / "bench" / "keras_reference.py"
KERAS_SETUP = "python -m venv .venv-keras && .venv-keras/bin/pip install -r bench/requirements-keras.txt"
# the convolution of the ceiling probe: a ResNet stage-1 layer
CONV_SHAPE = {"batch": 32, "channels": 64, "size": 56}


# ---------------------------------------------------------------------------------------------- common


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (else what ``platform`` knows)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def record(bench: str, **fields) -> dict:
    """A result: which benchmark, its fields, then the machine (threads, CPU) and cellscreen's version."""
    return {"bench": bench, **fields, "threads": torch.get_num_threads(), "cpu": cpu_name(),
            "cellscreen": __version__}


def _timed(fn: Callable[[], object], seconds: float, *, min_calls: int = 1, warmup: int = 1) -> tuple[int, float]:
    """Call ``fn`` ``warmup`` times untimed, then again until ``seconds`` have passed (at least ``min_calls``
    times); return (timed calls, their total seconds)."""
    for _ in range(warmup):
        fn()
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < seconds:
        fn()
        calls += 1
    return calls, time.perf_counter() - start


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def _sig(value: float | None, digits: int = 4) -> float | None:
    """``value`` to ``digits`` significant digits (rates and fractions of any size keep their precision)."""
    return None if value is None else float(f"{float(value):.{digits}g}")


_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _matmul_gflops(dtype: str, n: int, seconds: float) -> float:
    a = torch.randn(n, n).to(_DTYPES[dtype])
    b = torch.randn(n, n).to(_DTYPES[dtype])
    with torch.inference_mode():
        calls, total = _timed(lambda: torch.mm(a, b), seconds)
    return 2 * n**3 * calls / total / 1e9


def _conv_gflops(dtype: str, batch: int, channels: int, size: int, seconds: float) -> float:
    """A 3x3 convolution, padding 1, channels-last (the layout cellscreen trains and predicts in)."""
    x = torch.randn(batch, channels, size, size).to(_DTYPES[dtype]).contiguous(memory_format=torch.channels_last)
    w = torch.randn(channels, channels, 3, 3).to(_DTYPES[dtype]).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        calls, total = _timed(lambda: torch.nn.functional.conv2d(x, w, padding=1), seconds)
    return 2 * batch * channels * channels * 9 * size * size * calls / total / 1e9


def _onnx_conv_gflops(batch: int, channels: int, size: int, seconds: float) -> float:
    """The same fp32 3x3 convolution on onnxruntime (its own kernels, often faster on CPUs without AVX-512),
    with as many threads as torch uses."""
    from onnx import TensorProto, helper, numpy_helper

    from cellscreen.serve.runtime import onnx_session

    weights = np.random.default_rng(0).standard_normal((channels, channels, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])], "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, channels, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, channels, size, size])],
        [numpy_helper.from_array(weights, "w")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = min(proto.ir_version, 9)
    session = onnx_session(proto.SerializeToString(), torch.get_num_threads())
    x = np.random.default_rng(1).standard_normal((batch, channels, size, size)).astype(np.float32)
    calls, total = _timed(lambda: session.run(["y"], {"x": x}), seconds)
    return 2 * batch * channels * channels * 9 * size * size * calls / total / 1e9


def _conv_label(batch: int, channels: int, size: int) -> str:
    return f"3x3 conv, batch {batch}, {channels}->{channels} channels, {size}x{size}"


def conv_ceiling(seconds: float = 0.3, **shape) -> tuple[float, str]:
    """A quick fp32 convolution probe, the faster of torch (channels-last) and onnxruntime:
    (GFLOP/s, what was measured)."""
    shape = {**CONV_SHAPE, **shape}
    args = (shape["batch"], shape["channels"], shape["size"])
    rates = {"torch": _conv_gflops("fp32", *args, seconds / 2), "onnxruntime": _onnx_conv_gflops(*args, seconds / 2)}
    best = max(rates, key=rates.get)
    return rates[best], f"fp32 {_conv_label(*args)} on {best} (the faster), probed {seconds:g} s"


def _ceiling_fields(ceiling_gflops: float | None, achieved_gflops: float) -> dict:
    if ceiling_gflops is None:
        ceiling_gflops, source = conv_ceiling()
    else:
        source = "given"
    return {"ceiling_gflops_per_s": _round(ceiling_gflops, 2), "ceiling_source": source,
            "fraction_of_ceiling": _sig(achieved_gflops / ceiling_gflops) if ceiling_gflops > 0 else None}


# ---------------------------------------------------------------------------------------------- ceiling


def ceiling(*, seconds: float = 1.0, matmul_size: int = 1024, conv_batch: int = CONV_SHAPE["batch"],
            conv_channels: int = CONV_SHAPE["channels"], conv_size: int = CONV_SHAPE["size"]) -> dict:
    """fp32 and bf16 GFLOP/s of a square matmul and a 3x3 convolution in torch, and the fp32 convolution on
    onnxruntime, each timed ``seconds`` after a warm-up call (at least one timed call, however slow: bf16
    without hardware support can take seconds)."""
    conv = (conv_batch, conv_channels, conv_size)
    fields: dict = {"seconds_per_probe": seconds, "matmul": f"{matmul_size}x{matmul_size} @ {matmul_size}x{matmul_size}",
                    "conv": _conv_label(*conv) + ", torch channels-last"}
    for dtype in ("fp32", "bf16"):
        # to significant digits, not to 0.01: a tiny probe on a busy machine can run at less than that
        fields[f"{dtype}_matmul_gflops_per_s"] = _sig(_matmul_gflops(dtype, matmul_size, seconds))
        fields[f"{dtype}_conv_gflops_per_s"] = _sig(_conv_gflops(dtype, *conv, seconds))
    fp32, bf16 = fields["fp32_conv_gflops_per_s"], fields["bf16_conv_gflops_per_s"]
    fields["bf16_over_fp32_conv"] = _sig(bf16 / fp32, 3) if fp32 > 0 else None
    fields["fp32_conv_onnxruntime_gflops_per_s"] = _sig(_onnx_conv_gflops(*conv, seconds))
    fields["cpu_capability"] = torch.backends.cpu.get_cpu_capability()  # the widest vector ISA torch uses
    return record("ceiling", **fields)


# ---------------------------------------------------------------------------------------------- cache


def _copy_spread(root: Path, limit: int, into: Path) -> int:
    """Copy ``limit`` files spread evenly over ``root``'s sorted files (so over its class folders)."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    chosen = files[:: max(1, len(files) // limit)][:limit]
    for path in chosen:
        target = into / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return len(chosen)


def cache_build(dataset: str = "malaria-nih", *, data: str | None = None, size: int = 128, limit: int | None = None,
                workers: int | None = None, interpolation: str | None = None) -> dict:
    """Index the dataset folder (read, hash, full decode) and build its cache at ``size`` into a fresh
    temporary folder, as ``bench/cache_build.py`` does.  With ``limit``, a spread of that many files is
    first copied into a temporary folder (not timed) and only those are indexed and cached."""
    from cellscreen.data.cache import CacheSpec, build_cache
    from cellscreen.data.images import DEFAULT_INTERPOLATION
    from cellscreen.data.index import scan_dataset
    from cellscreen.data.parallel import default_workers
    from cellscreen.data.sources import get_profile, resolve_dataset_dir

    interpolation = interpolation or DEFAULT_INTERPOLATION
    profile = get_profile(dataset)
    root = resolve_dataset_dir(profile, data)
    workers = default_workers() if workers is None else workers
    with tempfile.TemporaryDirectory(prefix="cellscreen-bench-") as tmp:
        source = root
        if limit:
            source = Path(tmp) / "data"
            _copy_spread(root, limit, source)
        start = time.perf_counter()
        index = scan_dataset(source, profile, workers=workers, progress=False, remember=False)
        index_seconds = time.perf_counter() - start
        if not index.records:
            raise UserError(f"no readable images in {root}")
        spec = CacheSpec(size=size, border_crop=profile.border_crop, interpolation=interpolation)
        cache = build_cache(source, index.records, spec, cache_dir=Path(tmp) / "cache", workers=workers,
                            progress=False)
    files, images = len(index.records), len(cache.row_of)
    total = index_seconds + cache.seconds
    return record("cache", dataset=dataset, folder=str(root), limit=limit, files=files, images=images, size=size,
                  interpolation=interpolation, workers=workers,
                  index_seconds=_round(index_seconds), index_images_per_s=_round(files / index_seconds, 1),
                  cache_seconds=_round(cache.seconds), cache_images_per_s=_round(images / cache.seconds, 1),
                  seconds=_round(total), images_per_s=_round(files / total, 1))


# ---------------------------------------------------------------------------------------------- training


def train_throughput(model: str, *, size: int | None = None, batch_size: int | None = None,
                     precision: str | None = None, channels_last: bool | None = None, steps: int = 20, warmup: int = 3,
                     preset: str = "default", settings: Iterable[str] = (), ceiling_gflops: float | None = None,
                     compiled: bool = False, seed: int = 0) -> dict:
    """Images/s of full training steps (augmentation, forward, loss, backward, optimiser step) through
    ``CellClassifier`` with the preset's optimiser, on one synthetic uint8 batch; ``precision`` as in
    training (bf16-mixed: autocast around the step, as Lightning does).  Settings left as ``None`` come
    from ``preset``.  The learning-rate schedule is left out (it needs a Trainer and costs nothing
    measurable).  ``compiled`` wraps the network in ``torch.compile``; its first step (the compilation) is
    reported as ``compile_seconds`` and left out of the rate."""
    from cellscreen.config import load_config
    from cellscreen.engine.inference import autocast, resolve_precision
    from cellscreen.engine.module import CellClassifier
    from cellscreen.engine.train import build_model
    from cellscreen.models import count_flops, get_data_config

    if steps < 1 or warmup < 0:
        raise UserError("--steps must be at least 1 and --warmup not negative")
    config = load_config(preset, {"model": model, "input_size": size, "batch_size": batch_size,
                                  "precision": precision, "channels_last": channels_last},
                         [*settings, "schedule=none"])
    config.precision = resolve_precision(config.precision, "cpu")  # the step below runs on the CPU
    size = config.input_size or get_data_config(config.model).input_size
    torch.manual_seed(seed)
    net = build_model(config, num_classes=2, input_size=size)
    flops = count_flops(net, size)
    params = sum(p.numel() for p in net.parameters())
    module = CellClassifier(net, config)
    optimizer = module.configure_optimizers()
    if compiled:
        module.model = torch.compile(module.model)
    module.train()
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (config.batch_size, 3, size, size), dtype=torch.uint8, generator=generator)
    targets = torch.randint(0, 2, (config.batch_size,), generator=generator)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(config.precision):
            loss = module.training_step((images, targets), 0)
        loss.backward()
        optimizer.step()

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*self\.log\(\)")  # no Trainer to log to: on purpose
        extra = {}
        if compiled:
            start = time.perf_counter()
            step()
            extra["compile_seconds"] = _round(time.perf_counter() - start)
        for _ in range(warmup):
            step()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        seconds = time.perf_counter() - start
    images_per_s = steps * config.batch_size / seconds
    achieved = 3 * flops * images_per_s / 1e9
    return record("train", model=config.model, size=size, batch_size=config.batch_size, precision=config.precision,
                  channels_last=config.channels_last, compiled=compiled, **extra, optimizer=config.optimizer,
                  preset=preset, params=params, steps=steps, warmup_steps=warmup, seconds=_round(seconds), step_ms=_round(1000 * seconds / steps, 2),
                  images_per_s=_round(images_per_s, 1), forward_gflops_per_image=_sig(flops / 1e9),
                  gflops_per_s=_sig(achieved), **_ceiling_fields(ceiling_gflops, achieved))


# ---------------------------------------------------------------------------------------------- inference


def _inference_model(model: str, size: int | None, seed: int):
    """(checkpoint or None, ONNX file or None, what it is): a registered name gets random weights."""
    from cellscreen.engine.checkpoint import Checkpoint, load_checkpoint
    from cellscreen.models import create_model, list_models

    if model in list_models():
        torch.manual_seed(seed)
        net = create_model(model, num_classes=2, input_size=size)
        meta = {"model": model, "classes": ["class0", "class1"], "data_config": net.data_config.to_dict(),
                "border_crop": 0}
        return Checkpoint(net, meta), None, "registered model, random weights"
    if str(model).endswith(".onnx"):
        return None, model, "ONNX file"
    checkpoint = load_checkpoint(model)
    if checkpoint.meta.get("kind", "network") != "network":
        raise UserError(f"{model} is a {checkpoint.meta['kind']}; bench infer measures networks")
    if size is not None and size != checkpoint.data_config.input_size:
        raise UserError(f"{model} was trained at {checkpoint.data_config.input_size} px; leave out --size")
    return checkpoint, None, "checkpoint"


def _torch_runner(checkpoint, *, channels_last: bool, precision: str, compiled: bool = False):
    """uint8 NHWC batch -> probabilities, as ``predict_proba`` does, with the layout and precision chosen."""
    from cellscreen.engine.inference import autocast, logits_to_proba, normalise

    layout = torch.channels_last if channels_last else torch.contiguous_format
    net = copy.deepcopy(checkpoint.model).float().eval().to(memory_format=layout)
    config, temperature = checkpoint.data_config, float(getattr(checkpoint.model, "temperature", 1.0))
    forward = torch.compile(net) if compiled else net

    @torch.inference_mode()
    def run(batch: np.ndarray) -> np.ndarray:
        x = normalise(torch.from_numpy(batch).permute(0, 3, 1, 2), config, layout)
        with autocast(precision):
            logits = forward(x)
        return logits_to_proba(logits, temperature).numpy()

    return run


def _onnx_runner(model: str, checkpoint, registered: bool):
    """onnxruntime through the serving ``OnnxPredictor``, with torch's thread count; and the export seconds."""
    from cellscreen.serve.runtime import OnnxPredictor, load_predictor

    threads = torch.get_num_threads()
    start = time.perf_counter()
    if registered:  # random weights: export now (a checkpoint's export is cached by load_predictor)
        from cellscreen.serve.export import describe, onnx_bytes

        predictor = OnnxPredictor(describe(checkpoint, "onnx"), onnx_bytes(checkpoint), threads=threads)
    else:
        predictor = load_predictor(model, engine="onnx", threads=threads)
    return predictor.predict, time.perf_counter() - start, predictor


_TORCH_VARIANTS = {  # variant: (channels_last, precision, compiled)
    "eager": (False, "32", False),
    "channels_last": (True, "32", False),
    "bf16": (True, "bf16-mixed", False),
    "compile": (True, "32", True),
}


def parse_variants(text: str | Iterable[str]) -> list[str]:
    names = [v.strip() for v in (text.split(",") if isinstance(text, str) else text) if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names:
        raise UserError(f"unknown variant(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(VARIANTS)}")
    return names


def infer_throughput(model: str, *, size: int | None = None, batch_size: int = 256,
                     variants: str | Iterable[str] = VARIANTS, seconds: float = 2.0, batches: int = 2,
                     ceiling_gflops: float | None = None, seed: int = 0) -> list[dict]:
    """Cells/s of ``model`` on prepared random uint8 cells ``(batch, size, size, 3)`` (what ``predict`` feeds
    the model after decoding), one record per variant, each timed ``seconds`` after a warm-up batch.

    ``eager``: fp32, contiguous NCHW; ``channels_last``: fp32 channels-last (what the PyTorch engine runs);
    ``bf16``: channels-last under bf16 autocast; ``compile``: ``torch.compile`` of the channels-last model,
    its first call reported as ``compile_seconds`` and left out of the rate; ``onnx``: onnxruntime (the
    default engine of ``predict``).  A variant that cannot run is reported with ``skipped`` and the reason.
    """
    from cellscreen.models import count_flops

    names = parse_variants(variants)
    if batch_size < 1 or batches < 1:
        raise UserError("--batch-size must be at least 1")
    checkpoint, onnx_file, kind = _inference_model(model, size, seed)
    registered = kind.startswith("registered")
    if checkpoint is not None:
        size = checkpoint.data_config.input_size
        flops = count_flops(copy.deepcopy(checkpoint.model).float(), size)
        model_name = checkpoint.meta["model"]
    else:
        from cellscreen.serve.runtime import load_predictor

        probe = load_predictor(onnx_file, engine="onnx")
        size, flops, model_name = probe.input_size, None, probe.description.get("model")
    ceiling_value, ceiling_source = (ceiling_gflops, "given") if ceiling_gflops is not None else conv_ceiling()
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (batches * batch_size, size, size, 3), dtype=np.uint8)
    chunks = [images[i:i + batch_size] for i in range(0, len(images), batch_size)]
    base = {"model": model_name, "source": str(model), "kind": kind, "size": size, "batch_size": batch_size}
    results, eager_rate = [], None
    for variant in names:
        extra: dict = {}
        try:
            if variant == "onnx":
                run, export_seconds, _ = _onnx_runner(onnx_file or model, checkpoint, registered)
                extra["export_seconds"] = _round(export_seconds)
                engine, precision, layout = "onnxruntime", "32", "NHWC uint8 (normalised in the graph)"
            else:
                if checkpoint is None:
                    raise UserError("an ONNX file has no PyTorch model")
                channels_last, precision, compiled = _TORCH_VARIANTS[variant]
                run = _torch_runner(checkpoint, channels_last=channels_last, precision=precision, compiled=compiled)
                engine, layout = "torch", "channels_last" if channels_last else "contiguous"
                if compiled:
                    start = time.perf_counter()
                    run(chunks[0])  # compiles
                    extra["compile_seconds"] = _round(time.perf_counter() - start)
            batches_in_turn = itertools.cycle(chunks)
            calls, total = _timed(lambda run=run, turn=batches_in_turn: run(next(turn)), seconds, min_calls=2)
        except Exception as exc:  # noqa: BLE001 - a variant that fails is reported, not fatal
            reason = " ".join(str(exc).split())[:300] or type(exc).__name__
            results.append(record("infer", **base, variant=variant, skipped=f"{type(exc).__name__}: {reason}"))
            continue
        rate = calls * batch_size / total
        eager_rate = rate if variant == "eager" else eager_rate
        fields = {"cells": calls * batch_size, "seconds": _round(total), "cells_per_s": _round(rate, 1),
                  "ms_per_batch": _round(1000 * total / calls, 2), **extra}
        if flops is not None:
            achieved = flops * rate / 1e9
            fields.update(forward_gflops_per_image=_sig(flops / 1e9), gflops_per_s=_sig(achieved),
                          ceiling_gflops_per_s=_round(ceiling_value, 2), ceiling_source=ceiling_source,
                          fraction_of_ceiling=_sig(achieved / ceiling_value) if ceiling_value > 0 else None)
        if eager_rate and variant != "eager":
            fields["vs_eager"] = _round(rate / eager_rate, 3)
        results.append(record("infer", **base, variant=variant, engine=engine, precision=precision,
                              layout=layout, **fields))
    return results


# ---------------------------------------------------------------------------------------------- time to accuracy


def epoch_log(run: str | Path) -> tuple[float, list[tuple[float, float]]]:
    """From a run's TensorBoard events (the latest version): the time the log began (about when fitting
    started) and ``(wall_time, val_acc)`` of every validation, in order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    versions = sorted((Path(run) / "logs" / "tb").glob("version_*"), key=lambda p: int(p.name.split("_")[-1]))
    if not versions:
        raise UserError(f"{run} has no TensorBoard log (logs/tb/version_*)")
    events = EventAccumulator(str(versions[-1]), size_guidance={"scalars": 0})
    events.Reload()
    scalars = events.Scalars("val_acc") if "val_acc" in events.Tags()["scalars"] else []
    return events.FirstEventTimestamp(), [(e.wall_time, float(e.value)) for e in scalars]


def _first_reaching(times: list[float], accuracies: list[float], target: float) -> tuple[int | None, float | None]:
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


def _train_quietly(config, *, out: Path, data: str | None, progress: bool, workers: int | None,
                   overwrite: bool = False):
    """``train`` with anything it prints (progress bars, warnings) on stderr: stdout carries the JSON."""
    from cellscreen.engine.train import train

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
    from cellscreen.config import load_config

    config = load_config(preset, overrides or {}, list(settings))
    with _run_folder(out) as run:
        start = time.time()
        result = _train_quietly(config, out=run, data=data, progress=progress, workers=workers, overwrite=overwrite)
        total = time.time() - start
        fit_start, validations = epoch_log(run)
    times = [t for t, _ in validations]
    accuracies = [a for _, a in validations]
    epoch, when = _first_reaching(times, accuracies, target)
    per_epoch = [{"epoch": k + 1, "seconds": _round(t - start), "fit_seconds": _round(t - fit_start),
                  "epoch_seconds": _round(t - (times[k - 1] if k else fit_start)), "val_acc": _round(a, 4)}
                 for k, (t, a) in enumerate(validations)]
    return record(
        "time-to-accuracy", target=target, reached=epoch is not None,
        seconds_to_target=_round(when - start) if when is not None else None,
        fit_seconds_to_target=_round(when - fit_start) if when is not None else None,
        epoch_reached=epoch + 1 if epoch is not None else None,
        preset=preset, model=config.model, input_size=config.input_size, batch_size=config.batch_size,
        epochs=config.epochs, epochs_run=len(validations), train_images=len(result.data.subsets["train"]),
        val_images=len(result.data.subsets["val"]), setup_seconds=_round(fit_start - start),
        total_seconds=_round(total), best_val_acc=_round(max(accuracies), 4) if accuracies else None,
        final_val_acc=_round(accuracies[-1], 4) if accuracies else None, per_epoch=per_epoch,
        run=str(out) if out is not None else None)


# ---------------------------------------------------------------------------------------------- the Keras reference


def _reference(python: str | None, script: str | Path | None) -> tuple[str, Path]:
    python = python or os.environ.get("CELLSCREEN_KERAS_PYTHON")
    how = (f"create it with `{KERAS_SETUP}` (in {REPO}) and pass --reference-python .venv-keras/bin/python "
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
        from cellscreen.serve.runtime import load_predictor

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
    return _sig(a / b) if a is not None and b else None


def _epoch_end_seconds(epoch_seconds: list[float], total: float | None) -> list[float]:
    """Seconds from the start of fitting to each epoch's end, whether ``epoch_seconds`` holds each epoch's
    duration or already the running total (the one whose last value is nearer ``total`` is taken)."""
    running = [float(t) for t in np.cumsum(epoch_seconds)]
    if total is not None and epoch_seconds and abs(epoch_seconds[-1] - total) < abs(running[-1] - total):
        return [float(t) for t in epoch_seconds]
    return running


def _reference_seconds_to(result: dict, target: float) -> float | None:
    """When the reference's own epochs first reached ``target``, in seconds of fitting."""
    times = _epoch_end_seconds(result.get("epoch_seconds") or [], result.get("seconds"))
    accuracies = result.get("epoch_val_accuracy") or []
    return _first_reaching(times, accuracies, target)[1] if times and accuracies else None


def compare_reference(*, data: str | None = None, split: str | Path, fold: int | None = None, epochs: int = 5,
                      limit: int | None = None, dataset: str = "malaria-nih", size: int = 128,
                      batch_size: int = 16, reference_python: str | None = None,
                      reference_script: str | Path | None = None, predict_limit: int | None = None,
                      predict_engine: str = "auto", default_recipe: bool = False, progress: bool = False, workers: int | None = None) -> dict:
    """cellscreen and the Keras reference on the same split, fold, epochs and training-cell limit.

    Training: cellscreen's ``seed_malaria_cnn`` preset (Adam, batch 16, early stopping on validation loss
    with patience 2, as the study and the reference do) against the reference's ``train`` (given
    ``--threads``: as many as torch uses here); cellscreen's images/s is training cells x epochs over the
    fitting time (TensorBoard, validation included, set-up not).  Prediction: the test fold's PNGs, copied
    to a temporary folder, through ``cellscreen predict malaria --engine predict_engine`` and the reference's ``predict``, each timed
    as a whole process (start-up included), each with its own default threads.  The reference gets ``--data`` as the folder holding the class folders, which the split's paths are
    relative to.  Ratios are cellscreen / reference.  The time to the reference's
    final validation accuracy is read from both training logs; with ``default_recipe`` cellscreen's default
    recipe is also trained to it (``time_to_accuracy``).
    """
    from cellscreen.config import load_config
    from cellscreen.data.sources import get_profile, resolve_dataset_dir
    from cellscreen.data.splits import read_manifest
    from cellscreen.engine.checkpoint import load_checkpoint
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
        result = _train_quietly(config, out=tmp / "run", data=str(root), progress=progress, workers=workers)
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
                      "seconds": _round(fit_seconds), "images_per_s": _round(train_images * len(validations) / fit_seconds, 1),
                      "val_accuracy": _round(accuracies[-1], 4), "test_accuracy": _round(test_accuracy, 4),
                      "epoch_seconds": [_round(b - a) for a, b in zip([0.0, *times], times)],
                      "epoch_end_seconds": [_round(t) for t in times],
                      "epoch_val_accuracy": [_round(a, 4) for a in accuracies]}

        theirs_train, theirs_train_process = _run_reference(python, script, "train", train_args)
        ours_cells, ours_seconds = _cellscreen_predict(tmp / "test", tmp / "cellscreen.csv", predict_engine)
        theirs_predict, theirs_predict_process = _run_reference(python, script, "predict",
                                                                ["--inputs", str(tmp / "test"), *common])

    theirs_train = {k: v for k, v in theirs_train.items() if k not in ("tool", "task")}
    theirs_train["process_seconds"] = _round(theirs_train_process)
    theirs_predict = {k: v for k, v in theirs_predict.items() if k not in ("tool", "task")}
    theirs_predict.update(process_seconds=_round(theirs_predict_process),
                          process_cells_per_s=_round(theirs_predict.get("cells", test_cells) / theirs_predict_process, 1))
    ours_predict = {"model": "malaria (bundled)", "engine": predict_engine, "cells": ours_cells, "process_seconds": _round(ours_seconds),
                    "process_cells_per_s": _round(ours_cells / ours_seconds, 1)}

    target = theirs_train.get("val_accuracy")
    # the reference rounds accuracies to 4 decimals: an accuracy within that rounding counts as reached
    reached_at = None if target is None else target - 5e-5
    reach: dict = {"target": target, "reference_seconds": None, "cellscreen_seed_recipe_seconds": None,
                   "cellscreen_default_recipe_seconds": None}
    if target is not None:
        reach["reference_seconds"] = _round(_reference_seconds_to(theirs_train, reached_at))
        reach["cellscreen_seed_recipe_seconds"] = _round(_first_reaching(times, accuracies, reached_at)[1])
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
