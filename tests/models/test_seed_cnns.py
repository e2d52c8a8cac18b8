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
