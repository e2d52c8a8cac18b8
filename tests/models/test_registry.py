import json

import pytest
import torch
from torch import nn

from cellscreen.engine.checkpoint import load_checkpoint, save_checkpoint
from cellscreen.errors import UserError
from cellscreen.models import count_flops, create_model, list_models
from cellscreen.models._registry import DataConfig, register_model


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("num_classes, in_chans", [(2, 3), (4, 1)])
def test_every_model_builds_trains_and_round_trips(name, num_classes, in_chans, tmp_path):
    if name == "seed_malaria_cnn" and num_classes != 2:
        with pytest.raises(UserError, match="only handles 2 classes"):
            create_model(name, num_classes=num_classes, in_chans=in_chans)
        return
    torch.manual_seed(0)
    model = create_model(name, num_classes=num_classes, in_chans=in_chans)
    size = model.data_config.input_size
    assert len(model.data_config.mean) == in_chans
    outputs = 1 if model.single_logit else num_classes
    # one training step at the model's input size (Inception v3 and GoogLeNet also return auxiliary logits)
    x = torch.rand(2, in_chans, size, size)
    out = model.train()(x)
    heads = [out] if isinstance(out, torch.Tensor) else [o for o in out if o is not None]
    assert all(h.shape == (2, outputs) for h in heads)
    sum(h.sum() for h in heads).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad and p.ndim == 4)
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, outputs)
    classes = [f"c{i}" for i in range(num_classes)]
    save_checkpoint(tmp_path / name, model, {"classes": classes, "dataset": "folder"})
    restored = load_checkpoint(tmp_path / name)
    assert restored.classes == classes and restored.data_config == model.data_config
    with torch.no_grad():
        assert torch.allclose(restored.model(x), out, atol=1e-5)


def test_unknown_and_duplicate_names():
    with pytest.raises(UserError, match="compact_cnn"):
        create_model("alexnet9000", num_classes=2)
    with pytest.raises(ValueError, match="already registered"):
        register_model("compact_cnn", data_config=DataConfig(input_size=8))(lambda **kw: nn.Identity())


def test_the_resize_is_recorded_and_old_records_mean_bicubic():
    config = create_model("compact_cnn", num_classes=2).data_config
    assert config.interpolation == "reduce-bicubic"
    assert DataConfig.from_dict(config.to_dict()) == config
    legacy = {k: v for k, v in config.to_dict().items() if k != "interpolation"}  # written before the choice
    assert DataConfig.from_dict(legacy).interpolation == "bicubic"
    with pytest.raises(UserError, match="unknown interpolation 'area'"):
        DataConfig.from_dict({**legacy, "interpolation": "area"})
    with pytest.raises(UserError, match="unknown interpolation"):  # a damaged model.json
        DataConfig.from_dict({**legacy, "interpolation": ["bicubic"]})


def test_flops_grow_with_input_size():
    model = create_model("compact_cnn", num_classes=2)
    assert count_flops(model, 96) > 3 * count_flops(model, 48) > 0


def test_pretrained_head_mismatch_is_reinitialised(tmp_path):
    source = create_model("compact_cnn", num_classes=4)
    save_checkpoint(tmp_path / "src", source, {"classes": list("abcd")})
    target = create_model("compact_cnn", num_classes=2, pretrained=tmp_path / "src" / "model.safetensors")
    conv = "features.0.0.weight"
    assert torch.equal(target.state_dict()[conv], source.state_dict()[conv])
    assert target.head[-1].weight.shape == (2, 256)


def test_damaged_checkpoints_are_user_errors(tmp_path):
    model = create_model("compact_cnn", num_classes=2)
    save_checkpoint(tmp_path / "ok", model, {"classes": ["a", "b"]})
    weights = tmp_path / "ok" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated copy
    with pytest.raises(UserError, match="does not match the checksum"):
        load_checkpoint(tmp_path / "ok")
    meta = json.loads((tmp_path / "ok" / "model.json").read_text())
    del meta["weights_sha256"]  # a description without a checksum (older cellscreen): the reader still refuses
    (tmp_path / "ok" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="cannot read the weights"):
        load_checkpoint(tmp_path / "ok")
    weights.unlink()
    with pytest.raises(UserError, match="cannot read the weights"):
        load_checkpoint(tmp_path / "ok")
    (tmp_path / "ok" / "model.json").write_text("{not json")
    with pytest.raises(UserError, match="not a cellscreen checkpoint"):
        load_checkpoint(tmp_path / "ok")
    with pytest.raises(UserError, match="no cellscreen checkpoint"):
        load_checkpoint(tmp_path / "nowhere")


def test_start_up_imports_only_what_the_model_needs():
    """Loading the bundled model builds cellscreen's own network without importing timm, torchvision or
    Lightning (several seconds of start-up), and the 8-bit predictor does not import PyTorch at all."""
    import subprocess
    import sys

    probe = ("import sys\n"
             "from cellscreen.serve.runtime import load_predictor\n"
             "load_predictor('malaria', engine='int8')\n"
             "print(sorted(m for m in ('torch', 'timm', 'torchvision', 'lightning') if m in sys.modules))\n"
             "from cellscreen.engine.checkpoint import load_checkpoint\n"
             "load_checkpoint('malaria')\n"
             "print(sorted(m for m in ('torch', 'timm', 'torchvision', 'lightning') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "['torch']"]
