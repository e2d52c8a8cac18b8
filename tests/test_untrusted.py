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
