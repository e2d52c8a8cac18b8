"""Training with noisy labels: hard bootstrapping replaces part of each cell's target by the model's own call
from the second epoch on, so a label the model contradicts weighs less."""

from __future__ import annotations

import pytest

from cellscreen.config import load_config
from cellscreen.errors import UserError


def _module(monkeypatch, **settings):
    import torch

    from cellscreen.engine.module import CellClassifier
    from cellscreen.models import create_model

    config = load_config(None, {"input_size": 32, "rotate_flip": False, "color_jitter": 0, "stain_jitter": 0,
                                "label_smoothing": 0, **settings})
    module = CellClassifier(create_model(config.model, num_classes=2, input_size=32), config)
    module.log = lambda *args, **kwargs: None  # no trainer here
    epoch = {"value": 0}
    monkeypatch.setattr(CellClassifier, "current_epoch", property(lambda self: epoch["value"]))
    return module, epoch, torch


def test_bootstrap_mixes_the_label_with_the_models_call_from_the_second_epoch(monkeypatch):
    module, epoch, torch = _module(monkeypatch, bootstrap=0.25)
    logits = torch.tensor([[4.0, -4.0], [0.5, 0.0], [-3.0, 3.0], [1.0, -1.0]])
    module.forward = lambda images: logits
    targets = torch.tensor([1, 0, 1, 0])  # the first cell: the model calls it class 0, its label says 1
    images = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)
    plain = torch.nn.functional.cross_entropy(logits, targets)
    assert torch.isclose(module.training_step((images, targets), 0), plain)  # the first epoch: the labels alone
    epoch["value"] = 1
    mixed = torch.tensor([[0.25, 0.75], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # only the disputed cell changes
    expected = torch.nn.functional.cross_entropy(logits, mixed)
    got = module.training_step((images, targets), 0)
    assert torch.isclose(got, expected) and got < plain  # the disputed label costs less


def test_bootstrap_with_drop_hardest_ranks_the_bootstrapped_losses(monkeypatch):
    module, epoch, torch = _module(monkeypatch, bootstrap=0.5, drop_hardest=0.25)
    logits = torch.tensor([[4.0, -4.0], [0.0, 0.0], [-3.0, 3.0], [1.0, -1.0]])
    module.forward = lambda images: logits
    targets = torch.tensor([1, 0, 1, 0])
    images = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)
    epoch["value"] = 1
    mixed = torch.tensor([[0.5, 0.5], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    per_cell = torch.nn.functional.cross_entropy(logits, mixed, reduction="none")
    assert torch.isclose(module.training_step((images, targets), 0), per_cell.sort().values[:3].mean())


@pytest.mark.parametrize("settings, message", [
    (["bootstrap=1"], "bootstrap is the share"),
    (["bootstrap=-0.1"], "bootstrap is the share"),
    (["bootstrap=0.2", "mixup=0.2"], "turn mixup and cutmix off"),
])
def test_bootstrap_settings_out_of_range_are_refused(settings, message):
    with pytest.raises(UserError, match=message):
        load_config(None, {}, settings)
