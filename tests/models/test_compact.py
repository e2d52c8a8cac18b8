"""compact_cnn6p pools before batch norm; its inference form reorders a stage only where that is exact."""

import torch
from torch import nn

from cellscreen.models import create_model


def _with_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random batch-norm statistics and affine weights, as a trained model would have."""
    generator = torch.Generator().manual_seed(seed)
    for layer in model.modules():
        if isinstance(layer, nn.BatchNorm2d):
            n = layer.num_features
            layer.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
            layer.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            layer.weight.data.copy_(torch.rand(n, generator=generator) + 0.1)
            layer.bias.data.copy_(torch.randn(n, generator=generator) * 0.2)
    return model.eval()


def _order(stage: nn.Sequential) -> list[str]:
    return [type(layer).__name__ for layer in stage]


def test_pooling_comes_right_after_each_conv_but_the_last():
    model = create_model("compact_cnn6p", num_classes=2)
    orders = [_order(stage) for stage in model.features]
    assert orders[:-1] == [["Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU"]] * 5
    assert orders[-1] == ["Conv2d", "BatchNorm2d", "ReLU"]
    plain = create_model("compact_cnn6", num_classes=2)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in plain.parameters())
    # the convs see the same map sizes as in compact_cnn6: 64, 32, ..., 2 px; odd sizes pool rounding up
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 2)
    assert model(torch.randn(1, 3, 37, 37)).shape == (1, 2)


def test_inference_form_gives_the_same_outputs_and_leaves_a_negative_scale_alone():
    # seeded: with some conv weights no value of the negative channel passes ReLU, and the last check,
    # that the check is not empty, would then find nothing to tell apart
    torch.manual_seed(0)
    model = _with_statistics(create_model("compact_cnn6p", num_classes=2))
    norm = model.features[2][2]
    with torch.no_grad():  # one channel of the third stage scales by a negative factor, centred on its values
        norm.weight[5], norm.bias[5], norm.running_mean[5], norm.running_var[5] = -0.7, 0.0, -0.08, 0.006
    fast = model.for_inference()
    assert fast is not model and not fast.training
    orders = [_order(stage) for stage in fast.features]
    assert orders[2] == ["Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU"]  # reordering would not be exact: kept
    assert orders[0] == orders[1] == orders[3] == orders[4] == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"]
    assert _order(model.features[0]) == ["Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU"]  # the original is untouched
    x = torch.randn(4, 3, 45, 45)  # odd sizes: the rounded-up pooling windows at the edges too
    with torch.no_grad():
        assert torch.equal(fast(x), model(x))
        norm.weight[5] = 0.7
        moved = model.for_inference()
        assert _order(moved.features[2])[-1] == "MaxPool2d"
        assert torch.equal(moved(x), model(x))
    # the reordered stage does change the result where the scale is negative: the check above is not empty
    with torch.no_grad():
        norm.weight[5] = -0.7
        stage = model.features[2]
        swapped = nn.Sequential(stage[0], stage[2], stage[3], stage[1])
        y = model.features[1](model.features[0](x))
        assert not torch.equal(swapped(y), stage(y))


def test_other_compact_models_are_their_own_inference_form():
    model = create_model("compact_cnn6", num_classes=2)
    assert model.for_inference() is model


def test_export_runs_the_reordered_form(tmp_path):
    import onnx

    from cellscreen.engine.checkpoint import save_checkpoint
    from cellscreen.serve.export import export_model

    model = _with_statistics(create_model("compact_cnn6p", num_classes=2, input_size=32))
    save_checkpoint(tmp_path / "run", model, {"classes": ["a", "b"]})
    report = export_model(tmp_path / "run", tmp_path / "m.onnx")
    assert report.max_difference < 1e-4
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    made_by = {out: node.op_type for node in graph.node for out in node.output}
    pools = [node for node in graph.node if node.op_type == "MaxPool"]
    assert len(pools) == 5 and all(made_by[node.input[0]] == "Relu" for node in pools)


def test_inference_form_of_a_norm_without_weights_and_of_a_nan_weight():
    model = _with_statistics(create_model("compact_cnn6p", num_classes=2))
    plain = nn.BatchNorm2d(64, affine=False).eval()  # scales by 1 / sqrt(var + eps): always positive
    plain.running_mean.copy_(torch.randn(64) * 0.1)
    plain.running_var.copy_(torch.rand(64) + 0.5)
    model.features[1][2] = plain
    with torch.no_grad():
        model.features[3][2].weight[0] = float("nan")  # a damaged weight: no claim about its sign
    fast = model.for_inference()
    assert _order(fast.features[1])[-1] == "MaxPool2d"
    assert _order(fast.features[3]) == ["Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU"]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(fast.features[1](fast.features[0](x)), model.features[1](model.features[0](x)))


def test_space_to_depth_stem_sees_every_pixel_at_half_resolution():
    model = _with_statistics(create_model("compact_cnn6s", num_classes=2))
    assert _order(model.features[0]) == ["PixelUnshuffle", "Conv2d", "BatchNorm2d", "ReLU"]
    assert model.features[0][1].in_channels == 12
    # the later stages are compact_cnn6p's, and its inference form still gives the same outputs
    later = create_model("compact_cnn6p", num_classes=2).features[1:]
    assert [_order(stage) for stage in model.features[1:]] == [_order(stage) for stage in later]
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model.for_inference()(x), model(x), atol=1e-5)
    # every pixel counts: changing one pixel of a 2x2 block changes the first stage's output
    y = x.clone()
    y[:, :, 1, 1] += 1
    with torch.no_grad():
        assert not torch.equal(model.features[0](x), model.features[0](y))


def test_space_to_depth_stem_refuses_an_odd_input_size():
    import pytest

    from cellscreen.errors import UserError

    with pytest.raises(UserError, match="must be a multiple of 2"):
        create_model("compact_cnn6s", num_classes=2, input_size=63)


def test_colour_norm_takes_out_a_per_channel_gain_and_keeps_the_black_background():
    """compact_cnn6sc gives a cell and the same cell stained with another tint the same input and output."""
    from cellscreen.models._registry import IMAGENET_MEAN, IMAGENET_STD
    from cellscreen.models.layers import CellColourNorm

    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.manual_seed(0)
    pixels = torch.rand(2, 3, 16, 16) * 0.5 + 0.3
    pixels[:, :, :4] = 0  # the black around a segmented cell
    tinted = pixels * torch.tensor([1.25, 0.8, 1.1]).view(1, 3, 1, 1)
    norm = CellColourNorm(IMAGENET_MEAN, IMAGENET_STD)
    plain, other = norm((pixels - mean) / std), norm((tinted - mean) / std)
    assert torch.allclose(plain, other, atol=1e-5)
    assert torch.allclose(plain[:, :, :4] * std + mean, torch.zeros(2, 3, 4, 16), atol=1e-6)
    cell = (plain * std + mean)[:, :, 4:].mean((2, 3))
    assert torch.allclose(cell, norm.reference.view(1, 3).expand(2, 3), atol=1e-5)  # every cell's mean colour
    model = _with_statistics(create_model("compact_cnn6sc", num_classes=2, input_size=32)).eval()
    assert torch.allclose(model((pixels - mean) / std), model((tinted - mean) / std), atol=1e-4)
    assert isinstance(create_model("compact_cnn6s", num_classes=2, input_size=32).colour, nn.Identity)
