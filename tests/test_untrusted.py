"""Files from elsewhere never run code: pickles with code are refused with a clear message."""

import os
import pickle

import pytest

from cellscreen.errors import UserError

MARKER = "cellscreen-pwned"


class _Evil:
    def __reduce__(self):  # what a malicious pickle does: call any function on load
        return (os.system, (f"touch {MARKER}",))


def test_pretrained_weights_with_code_are_refused(tmp_path, monkeypatch):
    from cellscreen.models import create_model, load_pretrained

    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "weights.pth"
    evil.write_bytes(pickle.dumps({"state_dict": _Evil()}))
    with pytest.raises(UserError, match="cannot read pretrained weights"):
        load_pretrained(create_model("lenet5", num_classes=2), evil)
    assert not (tmp_path / MARKER).exists()


def test_a_pickled_checkpoint_in_place_of_safetensors_is_refused(trained_run, tmp_path, monkeypatch):
    import shutil

    from cellscreen.engine.checkpoint import load_checkpoint

    monkeypatch.chdir(tmp_path)
    copy = tmp_path / "run"
    shutil.copytree(trained_run.run, copy)
    (copy / "model.safetensors").write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(UserError, match="checksum"):
        load_checkpoint(copy)
    meta = (copy / "model.json").read_text()
    import json

    stripped = {k: v for k, v in json.loads(meta).items() if k != "weights_sha256"}  # a tampered description
    (copy / "model.json").write_text(json.dumps(stripped))
    with pytest.raises(UserError, match="cannot read the weights"):
        load_checkpoint(copy)
    assert not (tmp_path / MARKER).exists()


def test_resume_never_runs_code_from_a_planted_lightning_checkpoint(trained_run, learnable_cells, tmp_path,
                                                                     monkeypatch):
    """`train --resume` reads checkpoints/last.ckpt, a pickle: with weights only, whatever the environment
    says (TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 turns torch.load's default off), so a planted one is refused in
    one line, exit 2, and its code never runs."""
    import shutil

    import torch

    from tests.clitools import run_here

    copy = tmp_path / "run"
    shutil.copytree(trained_run.run, copy)
    marker = tmp_path / MARKER

    class Planted:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"state_dict": Planted(), "epoch": 2}, copy / "checkpoints" / "last.ckpt")
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    monkeypatch.chdir(tmp_path)
    result = run_here("train", str(learnable_cells), "-d", "malaria-nih", "--out", str(copy), "--resume", "-q",
                      "--bootstrap", "0")
    assert not marker.exists(), "the planted checkpoint ran its code"
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "last.ckpt" in lines[0] and "--overwrite" in lines[0], result.stderr
