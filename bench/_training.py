"""What the training-step bench scripts share: the process set-up training makes, a module as training
builds it, and one training step (bf16 autocast or fp32).  (Imported by scripts in this folder, run as
``python bench/x.py``.)"""

from __future__ import annotations

import warnings

import torch

from cellscreen.config import TrainConfig
from cellscreen.cpu import tune_process
from cellscreen.engine.module import CellClassifier
from cellscreen.engine.train import build_model


def set_up(threads: int) -> None:
    """The process-wide settings ``train()`` makes, ``threads`` PyTorch threads, no warnings about logging."""
    tune_process()
    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore", message=r".*self\.log\(\)")  # no Trainer to log to


def training_module(config: TrainConfig, size: int, seed: int = 0) -> tuple[CellClassifier, torch.optim.Optimizer]:
    """The two-class module and optimiser ``cellscreen train`` would build for ``config`` at ``size`` px."""
    torch.manual_seed(seed)
    module = CellClassifier(build_model(config, num_classes=2, input_size=size), config).train()
    return module, module.configure_optimizers()


def train_step(module: CellClassifier, optimizer: torch.optim.Optimizer, images: torch.Tensor,
               targets: torch.Tensor, precision: str = "bf16-mixed") -> None:
    """One training step, under bf16 autocast as Lightning's ``bf16-mixed`` runs it on the CPU, or in fp32
    (``precision="32"``)."""
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
        loss = module.training_step((images, targets), 0)
    loss.backward()
    optimizer.step()
