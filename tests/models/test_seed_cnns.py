"""The seed networks pool before ReLU for speed; they must still compute the published networks."""

import pytest
import torch
from torch import nn

from cellscreen.models import create_model


def _published_order(features: nn.Sequential) -> nn.Sequential:
    """The same layers with each ReLU moved back in front of the max-pooling before it."""
    layers = list(features)
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.ReLU):
            assert isinstance(layers[i - 1], nn.MaxPool2d)
            layers[i - 1], layers[i] = layer, layers[i - 1]
    return nn.Sequential(*layers)


@pytest.mark.parametrize("name, size", [("seed_malaria_cnn", 32), ("seed_allnet", 64)])
def test_pooling_before_relu_gives_the_published_outputs_and_gradients(name, size):
    torch.manual_seed(0)
    model = create_model(name, num_classes=2, input_size=size).train()
    for layer in model.modules():
        if isinstance(layer, nn.Dropout):
            layer.p = 0.0
    x = torch.randn(4, 3, size, size)
    results = []
    for features in (model.features, _published_order(model.features)):
        model.zero_grad()
        out = model.classifier(getattr(model, "pool", nn.Identity())(features(x)))
        out.square().sum().backward()
        results.append((out.detach(), features[0].weight.grad.clone()))
    (out_a, grad_a), (out_b, grad_b) = results
    assert not torch.equal(grad_a, torch.zeros_like(grad_a))
    torch.testing.assert_close(out_a, out_b)
    torch.testing.assert_close(grad_a, grad_b)


@pytest.mark.parametrize("p", [0.2, 0.3, 0.5])
def test_cheap_dropout_drops_at_the_rate_and_keeps_the_mean(p):
    from cellscreen.models.layers import Dropout

    layer = Dropout(p).train()
    x = torch.ones(64, 16, 32, 32, requires_grad=True)
    torch.manual_seed(1)
    y = layer(x)
    dropped = float((y == 0).float().mean())
    assert abs(dropped - p) < 0.005  # 1M values: the binomial spread is about 0.0005
    q, bits = layer.rate()
    assert bits == 8 and abs(q - p) <= 0.01 * p  # these rates take 8-bit draws
    torch.testing.assert_close(y[y != 0], torch.full_like(y[y != 0], 1 / (1 - q)))
    assert abs(float(y.mean()) - 1) < 0.005  # the mean is kept
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the gradient passes where the value was kept, scaled alike
    torch.manual_seed(1)
    assert torch.equal(layer(x), y)  # the global seed repeats the mask
    assert not torch.equal(layer(x), y)  # and the next call draws a new one
    assert torch.equal(layer.eval()(x), x)
    assert layer.train()(x[:1, :1, :1, :3]).shape == (1, 1, 1, 3)  # sizes that are not a multiple of 4


@pytest.mark.parametrize("p, bits", [(0.1, 16), (0.05, 16), (0.001, 16), (0.25, 8), (0.7, 8), (0.999, 16)])
def test_cheap_dropout_takes_16_bit_draws_where_8_bits_would_move_the_rate(p, bits):
    from cellscreen.models.layers import Dropout

    layer = Dropout(p).train()
    q, got = layer.rate()
    assert got == bits and abs(q - p) <= 0.01 * p
    torch.manual_seed(3)
    y = layer(torch.ones(256, 64, 64))
    assert abs(float((y == 0).float().mean()) - p) < 0.05 * p + 1e-4  # 1M values; small rates too
    assert torch.isfinite(y).all()


def test_cheap_dropout_next_to_one_falls_back_to_pytorch():
    from cellscreen.models.layers import Dropout

    layer = Dropout(1 - 1e-7).train()
    assert layer.rate()[0] == 1
    y = layer(torch.ones(1000))
    assert torch.isfinite(y).all() and float((y == 0).float().mean()) > 0.99


def test_cheap_dropout_mask_follows_the_memory_layout():
    from cellscreen.models.layers import Dropout

    layer = Dropout(0.3).train()
    x = torch.ones(4, 8, 16, 16)
    torch.manual_seed(2)
    y = layer(x)
    torch.manual_seed(2)
    y_last = layer(x.contiguous(memory_format=torch.channels_last))
    assert y_last.is_contiguous(memory_format=torch.channels_last)
    # the same words land on the same places in memory, whatever the layout
    assert torch.equal(y_last.permute(0, 2, 3, 1).flatten(), y.flatten())
    sliced = layer(torch.ones(4, 16, 16, 16)[:, ::2])  # neither layout: the mask is laid out as the shape
    assert sliced.shape == (4, 8, 16, 16) and 0.2 < float((sliced == 0).float().mean()) < 0.4
