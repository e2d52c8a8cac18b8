"""Turning cached uint8 pixels into probabilities, in batches."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from cellscreen.data.augment import dihedral_views
from cellscreen.models import DataConfig

__all__ = ["INFERENCE_BATCH", "normalise", "logits_to_proba", "predict_logits", "predict_proba", "predict_proba_at",
           "native_bf16", "resolve_precision"]

# Cells per forward pass when PyTorch only infers (validation, evaluation, the torch engine).  Small
# batches keep the activations in the CPU's caches: 32 ran the seed CNN 2.7 times as fast as 256 in bf16
# and 2.3 times in fp32, compact_cnn6 1.7 and 1.9 times (BENCHMARKS.md, "PyTorch inference in batches of 32").
INFERENCE_BATCH = 32


def normalise(images: torch.Tensor, config: DataConfig,
              memory_format: torch.memory_format | None = None) -> torch.Tensor:
    """uint8 (or 0..1 float) ``(N, C, H, W)`` -> the model's normalised float input, in ``memory_format``
    if given.  uint8 batches are laid out while still one byte per value, then scaled and shifted in
    place: two passes over the floats instead of four."""
    if images.dtype == torch.uint8:
        if memory_format is not None:
            images = images.contiguous(memory_format=memory_format)
        x = images.float()  # keeps the layout
        if all(m == 0 for m in config.mean) and all(s == 1 for s in config.std):
            return x.mul_(1 / 255)
        scale = torch.tensor([1 / (255 * s) for s in config.std], device=x.device).view(1, -1, 1, 1)
        shift = torch.tensor([-m / s for m, s in zip(config.mean, config.std)], device=x.device).view(1, -1, 1, 1)
        return x.mul_(scale).add_(shift)
    mean = torch.tensor(config.mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std = torch.tensor(config.std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    x = (images - mean) / std
    return x if memory_format is None else x.contiguous(memory_format=memory_format)


def logits_to_proba(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Class probabilities of ``logits / temperature``; a single logit is P(class 1) of a two-class model."""
    logits = logits.float() / temperature
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits)
        return torch.cat([1 - p, p], dim=1)
    return torch.softmax(logits, dim=1)


def native_bf16(cpuinfo: str | Path = "/proc/cpuinfo", device: str = "auto") -> bool:
    """Whether ``device`` computes bfloat16 in hardware: a CUDA GPU that supports it, or a CPU with
    AVX512-BF16 or AMX-BF16 units.  Elsewhere PyTorch emulates bf16 on the CPU, several times slower than fp32.
    ``auto`` means the GPU if there is one (what Lightning's ``accelerator="auto"`` trains on), else the CPU."""
    if device in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        with open(cpuinfo) as lines:
            flags = next((line for line in lines if line.startswith("flags")), "").split()
    except OSError:  # not Linux: stay with fp32 unless asked
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: str = "auto") -> str:
    """``auto`` -> ``bf16-mixed`` where bf16 runs in hardware on ``device`` (``auto``, ``cpu``, ``gpu``),
    else ``32``; other values unchanged."""
    if precision == "auto":
        return "bf16-mixed" if native_bf16(device=device) else "32"
    return precision


def autocast(precision: str):
    """bf16 autocast on the CPU for ``"bf16-mixed"`` (Lightning's name) or ``"bf16"`` (predict's), else nothing."""
    if precision in ("bf16-mixed", "bf16"):
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def predict_proba(
    model: torch.nn.Module,
    images: np.ndarray,
    *,
    batch_size: int = INFERENCE_BATCH,
    precision: str = "32",
    tta: bool = False,
    temperature: float | None = None,
) -> np.ndarray:
    """Probabilities ``(N, classes)`` for ``(N, H, W, 3)`` uint8 images.

    With ``tta`` the 8 rotations/flips of each image are averaged.  Logits are
    divided by the model's fitted ``temperature`` (1 if it has none) unless one
    is given.
    """
    temperature = temperature if temperature is not None else getattr(model, "temperature", 1.0)
    return predict_proba_at(model, images, [temperature], batch_size=batch_size, precision=precision, tta=tta)[0]


@torch.inference_mode()
def predict_proba_at(model: torch.nn.Module, images: np.ndarray, temperatures: Sequence[float], *,
                     batch_size: int = INFERENCE_BATCH, precision: str = "32", tta: bool = False) -> list[np.ndarray]:
    """``predict_proba`` at each of ``temperatures``, from one pass of the model (one per view with ``tta``)."""
    model.eval()
    config = model.data_config
    out: list[list[np.ndarray]] = [[] for _ in temperatures]
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.array(images[start : start + batch_size])).permute(0, 3, 1, 2)
        x = normalise(batch, config, torch.channels_last)
        # rotated views have strides that send convolutions down a slow path: lay each out afresh
        views = [v.contiguous(memory_format=torch.channels_last) for v in dihedral_views(x)] if tta else [x]
        with autocast(precision):
            logits = [model(v) for v in views]
        for k, temperature in enumerate(temperatures):
            out[k].append(torch.stack([logits_to_proba(z, temperature) for z in logits]).mean(0).float().numpy())
    n_classes = out[0][0].shape[1] if out[0] else 2
    return [np.concatenate(parts) if parts else np.zeros((0, n_classes), np.float32) for parts in out]


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, images: torch.Tensor, *, batch_size: int = INFERENCE_BATCH) -> np.ndarray:
    """Raw outputs ``(N, outputs)`` for ``(N, 3, H, W)`` uint8 images (no temperature, no TTA)."""
    model.eval()
    out = [model(normalise(images[i : i + batch_size], model.data_config, torch.channels_last))
           .float().numpy() for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 1), np.float32)
