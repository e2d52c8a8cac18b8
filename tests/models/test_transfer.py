import functools
import http.server
import threading

import pytest
import torch

from cellscreen.engine.checkpoint import load_checkpoint, save_checkpoint
from cellscreen.errors import UserError
from cellscreen.models import create_model
from cellscreen.models.transfer import backbone_blocks, forward_features, replace_head, set_trainable


def _trainable_prefixes(model):
    return {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}


def test_which_parameters_train_in_each_mode():
    model = create_model("resnet18", num_classes=2, input_size=32)
    assert [name for name, _ in backbone_blocks(model)] == ["conv1", "layer1", "layer2", "layer3", "layer4"]
    set_trainable(model, "head")
    assert _trainable_prefixes(model) == {"fc"}
    assert len(model.frozen_bn) == 1 + 4 * 2 * 2 + 3  # bn1, two per block, three downsample BNs
    set_trainable(model, "top2")
    assert _trainable_prefixes(model) == {"layer3", "layer4", "fc"}
    set_trainable(model, "all")
    assert _trainable_prefixes(model) == {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"}
    assert model.frozen_bn == []
    set_trainable(model, "all", freeze_bn=True)
    assert len(model.frozen_bn) == 20
    with pytest.raises(UserError, match="has 5 blocks"):
        set_trainable(model, "top6")
    with pytest.raises(UserError, match="trainable must be"):
        set_trainable(model, "some")


def test_auxiliary_heads_train_with_the_head():
    model = create_model("googlenet", num_classes=3, input_size=64)
    set_trainable(model, "head")
    assert _trainable_prefixes(model) == {"fc", "aux1", "aux2"}


def test_frozen_batch_norm_statistics_do_not_move(tmp_path):
    from cellscreen.config import TrainConfig
    from cellscreen.engine.module import CellClassifier

    model = create_model("compact_cnn", num_classes=2)
    set_trainable(model, "top1")
    module = CellClassifier(model, TrainConfig(channels_last=False)).train()
    frozen_bn = model.features[0][1]
    assert not frozen_bn.training and model.features[-1][1].training
    before = frozen_bn.running_mean.clone()
    loss = module.training_step((torch.randint(0, 255, (4, 3, 48, 48), dtype=torch.uint8), torch.tensor([0, 1, 0, 1])), 0)
    loss.backward()
    assert torch.equal(frozen_bn.running_mean, before)
    assert model.features[0][0].weight.grad is None and model.features[-1][0].weight.grad is not None


@pytest.mark.parametrize("name", ["alexnet", "compact_cnn", "seed_malaria_cnn", "mobilenet_v3_small"])
def test_new_head_is_pooling_dropout_dense_and_round_trips(name, tmp_path):
    model = create_model(name, num_classes=2, input_size=64 if name == "alexnet" else None)
    x = torch.rand(2, 3, model.data_config.input_size, model.data_config.input_size)
    features = forward_features(model.eval(), x).shape[1]
    replace_head(model, hidden=16, dropout=0.3)
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-2:]
    assert head[0].in_features == features and head[0].out_features == 16
    assert head[1].out_features == (1 if model.single_logit else 2)
    with torch.no_grad():
        out = model.eval()(x)
    save_checkpoint(tmp_path, model, {"classes": ["a", "b"]})
    restored = load_checkpoint(tmp_path)
    with torch.no_grad():
        assert torch.allclose(restored.model(x), out, atol=1e-6)


def _fake_imagenet_resnet18(path):
    """Weights in torchvision's own naming and shapes (1000 classes), as its download would hold."""
    torch.manual_seed(1)
    source = create_model("resnet18", num_classes=1000)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(source.state_dict(), path)
    return source.state_dict()


def test_imagenet_weights_come_from_the_torch_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    state = _fake_imagenet_resnet18(tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    model = create_model("resnet18", num_classes=2, pretrained="imagenet")
    assert torch.equal(model.conv1.weight, state["conv1.weight"])
    assert model.fc.weight.shape == (2, 512)  # a new head
    grey = create_model("resnet18", num_classes=2, in_chans=1, pretrained="imagenet")
    assert torch.allclose(grey.conv1.weight, state["conv1.weight"].sum(dim=1, keepdim=True))


def test_missing_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(UserError, match="could not fetch.*copy the file to"):
        create_model("resnet18", num_classes=2, pretrained="http://127.0.0.1:9/resnet18-f37072fd.pth")
    with pytest.raises(UserError, match="no published ImageNet weights"):
        create_model("compact_cnn", num_classes=2, pretrained="imagenet")
    with pytest.raises(UserError, match="not found"):
        create_model("resnet18", num_classes=2, pretrained=tmp_path / "nothing.pth")
    other = tmp_path / "other.pth"
    torch.save(create_model("compact_cnn", num_classes=2).state_dict(), other)
    with pytest.raises(UserError, match="none of the weights"):
        create_model("resnet18", num_classes=2, pretrained=other)


def test_weights_are_downloaded_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    served = tmp_path / "served"
    state = _fake_imagenet_resnet18(served / "resnet18-f37072fd.pth")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/resnet18-f37072fd.pth"
    try:
        model = create_model("resnet18", num_classes=3, pretrained=url)
    finally:
        server.shutdown()
    assert torch.equal(model.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    assert (tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth").is_file()
    again = create_model("resnet18", num_classes=3, pretrained=url)  # the server is gone: from the cache
    assert torch.equal(again.conv1.weight, state["conv1.weight"])
    # "imagenet" reads the same cache file
    assert torch.equal(create_model("resnet18", num_classes=3, pretrained="imagenet").conv1.weight, state["conv1.weight"])


def test_timm_imagenet_weights_offline_is_a_clear_error(monkeypatch, tmp_path):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # as HF_HUB_OFFLINE=1 does
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(UserError, match="could not load timm's pretrained mobilenetv1_100"):
        create_model("mobilenet_v1", num_classes=2, pretrained="imagenet")
