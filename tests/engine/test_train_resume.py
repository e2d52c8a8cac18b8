"""`train --resume` on a run stopped before its first checkpoint: the run starts again, and says so."""

from __future__ import annotations

import json
import shutil

from tests.clitools import run_here

# the settings of the conftest's trained_run, as the command line gives them
SETTINGS = ("-d", "malaria-nih", "--epochs", "6", "--input-size", "16", "--batch-size", "16", "--lr", "0.01",
            "--set", "val=0.2", "--set", "test=0.2", "--bootstrap", "0", "-q")


def _weights_sha(run) -> str:
    return json.loads((run / "model.json").read_text())["weights_sha256"]


def _started_only(trained_run, folder):
    """What a kill before the first checkpoint leaves: the run's settings and split, a checkpoint half-written."""
    shutil.copytree(trained_run.run, folder)
    for name in ("checkpoints", "logs", "test"):
        shutil.rmtree(folder / name, ignore_errors=True)
    for name in ("model.json", "model.safetensors", "learning_curves.png"):
        (folder / name).unlink()
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "last.ckpt.partial").write_bytes(b"killed while saving")
    return folder


def test_resume_before_the_first_checkpoint_starts_the_run_again(trained_run, learnable_cells, tmp_path):
    run = _started_only(trained_run, tmp_path / "run")
    plain = run_here("train", str(learnable_cells), *SETTINGS, "--out", str(run))
    assert plain.returncode == 2 and "--resume" in plain.stderr  # a rerun without --resume still asks for it
    # the saved settings win, as in any resume: the command's --epochs 1 is not used
    resumed = run_here("train", str(learnable_cells), *SETTINGS, "--epochs", "1", "--out", str(run), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    notes = [line for line in resumed.stdout.splitlines() if "no checkpoint" in line]
    assert len(notes) == 1 and "from the start" in notes[0] and "config.yaml" in notes[0], resumed.stdout
    assert _weights_sha(run) == _weights_sha(trained_run.run)  # the same run as one never stopped
    assert sorted(p.name for p in (run / "logs" / "csv").iterdir()) == ["version_0"]


def test_resume_of_a_run_killed_before_its_folder_was_made_starts_it(trained_run, learnable_cells, tmp_path):
    run = tmp_path / "never-made"
    resumed = run_here("train", str(learnable_cells), *SETTINGS, "--out", str(run), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    notes = [line for line in resumed.stdout.splitlines() if "no checkpoint" in line]
    assert len(notes) == 1 and "this command's settings" in notes[0], resumed.stdout
    assert _weights_sha(run) == _weights_sha(trained_run.run)


def test_resume_refuses_a_damaged_settings_file(trained_run, learnable_cells, tmp_path):
    run = _started_only(trained_run, tmp_path / "run")
    (run / "config.yaml").write_text("epochs: [unclosed\n")
    resumed = run_here("train", str(learnable_cells), *SETTINGS, "--out", str(run), "--resume")
    assert resumed.returncode == 2 and len(resumed.stderr.strip().splitlines()) == 1, resumed.stderr
    assert "config.yaml" in resumed.stderr

