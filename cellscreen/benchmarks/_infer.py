"""``bench infer``: cells/s of one model per variant (eager, channels-last, bf16, torch.compile, onnxruntime)."""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Iterable

import numpy as np
import torch

from cellscreen.benchmarks._ceiling import conv_ceiling
from cellscreen.benchmarks._common import record, rounded, significant, timed
from cellscreen.errors import UserError

__all__ = ["VARIANTS", "infer_throughput", "parse_variants"]

VARIANTS = ("eager", "channels_last", "bf16", "compile", "onnx")


def _inference_model(model: str, size: int | None, seed: int):
    """(checkpoint or None, ONNX file or None, what it is): a registered name gets random weights."""
    from cellscreen.engine.kinds import Checkpoint, load_checkpoint  # keeps start-up fast
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
    from cellscreen.engine.inference import autocast, logits_to_proba, normalise  # keeps start-up fast

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
    from cellscreen.serve.runtime import OnnxPredictor, load_predictor  # keeps start-up fast

    threads = torch.get_num_threads()
    start = time.perf_counter()
    if registered:  # random weights: export now (a checkpoint's export is cached by load_predictor)
        from cellscreen.serve.export import describe, onnx_bytes  # keeps start-up fast

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
    from cellscreen.models import count_flops  # keeps start-up fast

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
        from cellscreen.serve.runtime import load_predictor  # keeps start-up fast

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
                extra["export_seconds"] = rounded(export_seconds)
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
                    extra["compile_seconds"] = rounded(time.perf_counter() - start)
            batches_in_turn = itertools.cycle(chunks)
            calls, total = timed(lambda run=run, turn=batches_in_turn: run(next(turn)), seconds, min_calls=2)
        except Exception as exc:  # noqa: BLE001 - a variant that fails is reported, not fatal
            reason = " ".join(str(exc).split())[:300] or type(exc).__name__
            results.append(record("infer", **base, variant=variant, skipped=f"{type(exc).__name__}: {reason}"))
            continue
        rate = calls * batch_size / total
        eager_rate = rate if variant == "eager" else eager_rate
        fields = {"cells": calls * batch_size, "seconds": rounded(total), "cells_per_s": rounded(rate, 1),
                  "ms_per_batch": rounded(1000 * total / calls, 2), **extra}
        if flops is not None:
            achieved = flops * rate / 1e9
            fields.update(forward_gflops_per_image=significant(flops / 1e9), gflops_per_s=significant(achieved),
                          ceiling_gflops_per_s=rounded(ceiling_value, 2), ceiling_source=ceiling_source,
                          fraction_of_ceiling=significant(achieved / ceiling_value) if ceiling_value > 0 else None)
        if eager_rate and variant != "eager":
            fields["vs_eager"] = rounded(rate / eager_rate, 3)
        results.append(record("infer", **base, variant=variant, engine=engine, precision=precision,
                              layout=layout, **fields))
    return results
