import numpy as np
import pytest
import torch

from cellscreen.config import load_config
from cellscreen.engine.inference import normalise
from cellscreen.engine.module import CellClassifier
from cellscreen.engine.train import build_model
from cellscreen.models._registry import DataConfig

IMAGENET = DataConfig(input_size=8)
UNIT = DataConfig(input_size=8, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


@pytest.mark.parametrize("config", [IMAGENET, UNIT], ids=["imagenet", "unit"])
@pytest.mark.parametrize("layout", [None, torch.channels_last])
def test_uint8_batches_are_scaled_as_the_formula_says(config, layout):
    images = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    mean, std = torch.tensor(config.mean).view(1, 3, 1, 1), torch.tensor(config.std).view(1, 3, 1, 1)
    x = normalise(images, config, layout)
    torch.testing.assert_close(x, (images.float() / 255 - mean) / std)
    assert x.dtype == torch.float32
    assert x.is_contiguous(memory_format=layout or torch.contiguous_format)
    assert images.dtype == torch.uint8  # the input is left alone


def test_float_input_keeps_its_gradient_and_is_not_changed():
    image = torch.rand(1, 3, 8, 8, requires_grad=True)
    before = image.detach().clone()
    normalise(image, IMAGENET, torch.channels_last).sum().backward()
    torch.testing.assert_close(image.detach(), before)
    torch.testing.assert_close(image.grad, (1 / torch.tensor(IMAGENET.std)).view(1, 3, 1, 1).expand(1, 3, 8, 8))


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_cpu_training_uses_the_fused_optimiser_step(optimizer):
    config = load_config("default", {"model": "compact_cnn", "input_size": 32, "optimizer": optimizer},
                         ["schedule=none"])
    module = CellClassifier(build_model(config, num_classes=2, input_size=32), config)
    assert module.configure_optimizers().defaults["fused"] is True


@pytest.mark.parametrize("tta", [False, True])
def test_probabilities_at_several_temperatures_match_one_at_a_time(tta):
    from cellscreen.engine.inference import predict_proba, predict_proba_at
    from cellscreen.models import create_model

    torch.manual_seed(0)
    model = create_model("compact_cnn", num_classes=3, input_size=16)
    images = torch.randint(0, 256, (5, 16, 16, 3), dtype=torch.uint8).numpy()
    both = predict_proba_at(model, images, [2.5, 1.0], batch_size=2, tta=tta)
    for temperature, got in zip([2.5, 1.0], both):
        np.testing.assert_allclose(got, predict_proba(model, images, temperature=temperature, tta=tta), atol=1e-6)
    assert not np.allclose(both[0], both[1])
    empty = predict_proba_at(model, images[:0], [1.0, 2.0])
    assert [len(e) for e in empty] == [0, 0]
