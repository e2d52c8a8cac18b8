"""`screen --engine ray`: the files of a local run, byte for byte, with the fields screened by Ray actors on a
local 1-2 CPU instance; every input accounted for; an interrupted run resumed without redoing its fields."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cellscreen.errors import UserError
from cellscreen.screen import pipeline
from cellscreen.screen.synthetic import make_field
from tests.clitools import run, run_here
from tests.screen.runs import disc, outputs, read_csv

ray = pytest.importorskip("ray")

BACKGROUND = (205, 200, 195)


@pytest.fixture
def fields(tmp_path) -> Path:
    """Four small synthetic fields of two slides, a damaged image and a note: six inputs, two of them skipped."""
    root = tmp_path / "fields"
    rng = np.random.default_rng(0)
    for k, name in enumerate(["slideA/f0.png", "slideA/f1.png", "slideB/f0.png", "slideB/f1.jpg"]):
        background = np.clip(np.array(BACKGROUND) + rng.normal(0, 3, (120, 160, 3)), 0, 255).astype(np.uint8)
        colours = [(225, 160, 160), (150, 60, 170)]
        field = make_field([disc(9, colours[c % 2]) for c in range(6 + k)], ["c"] * (6 + k), [False] * (6 + k),
                           background, seed=k)
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(field.image).save(root / name)
    (root / "slideB" / "damaged.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (root / "slideB" / "notes.txt").write_text("focus was poor")
    return root


def test_ray_is_refused_in_one_line_when_missing_or_misused(fields, tmp_path, monkeypatch):
    done = run_here("screen", "malaria", str(fields), "--out", str(tmp_path / "a"), "--ray-address", "auto", "-q")
    assert done.returncode == 2 and "--ray-address goes with --engine ray" in done.stderr
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    done = run_here("screen", "malaria", str(fields), "--out", str(tmp_path / "b"), "--engine", "ray", "-q")
    assert done.returncode == 2 and "pip install 'cellscreen[ray]'" in done.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_rows_come_out_in_input_order_whatever_order_the_actors_finish_in(tmp_path):
    import pickle

    from cellscreen.screen import ray_engine
    from cellscreen.screen.run_folder import IMAGE_COLUMNS

    items = [(0, Path("a.png"), None), (1, Path("notes.txt"), "not an image file"), (2, Path("b.png"), None),
             (3, Path("c.png"), None), (4, Path("d.txt"), "not an image file")]
    (tmp_path / "overlays").mkdir()

    def result(i: int, name: str) -> bytes:
        row = [name, "", "ok", *[""] * (len(IMAGE_COLUMNS) - 4), f"overlays/{i}.png"]
        return pickle.dumps((row, [[name, 1]], b"png of " + name.encode()))

    def batch(*done):
        return {"i": np.array([i for i, _ in done]), "result": np.array([r for _, r in done], dtype=object),
                "unseen": np.zeros(len(done), bool), "host": np.array(["node"] * len(done), dtype=object)}

    batches = [batch((3, result(3, "c.png"))), batch((2, result(2, "b.png")), (0, result(0, "a.png")))]
    rows = list(ray_engine._in_order(items, iter(batches), tmp_path))
    assert [(r[0], r[2]) for r, _ in rows] == [("a.png", "ok"), ("notes.txt", "skipped: not an image file"),
                                               ("b.png", "ok"), ("c.png", "ok"), ("d.txt", "skipped: not an image file")]
    assert [cells for _, cells in rows] == [[["a.png", 1]], [], [["b.png", 1]], [["c.png", 1]], []]
    assert (tmp_path / "overlays" / "3.png").read_bytes() == b"png of c.png"
    with pytest.raises(RuntimeError, match="Ray returned 3 of 5"):
        list(ray_engine._in_order(items, iter(batches[1:]), tmp_path))
    refused = batch((0, pickle.dumps(UserError("the model gave NaN"))))
    with pytest.raises(UserError, match="a.png on Ray node node: the model gave NaN"):
        list(ray_engine._in_order(items, iter([refused]), tmp_path))
    (tmp_path / "a.png").write_bytes(b"here")  # but not on the node that was asked to read it
    unseen = batch((0, result(0, "a.png")))
    unseen["unseen"][:] = True
    with pytest.raises(UserError, match="not on Ray node node"):
        list(ray_engine._in_order([(0, tmp_path / "a.png", None)], iter([unseen]), tmp_path))


@pytest.fixture
def ray_tmp():
    """A short folder for Ray's session files (its socket paths must stay under 108 characters)."""
    folder = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_the_command_on_a_local_ray_writes_the_files_of_a_local_run(fields, tmp_path, ray_tmp):
    # Relative inputs, as a user types them: the actors read them from the command's folder.
    local = run("screen", "malaria", "fields", "--out", "local", "--workers", "0", "-q", cwd=tmp_path)
    assert local.returncode == 0, local.stderr
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "OMP_NUM_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)
    done = run("screen", "malaria", "fields", "--out", "ray", "--engine", "ray", "--workers", "2", "-q", env=env,
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == local.stdout.replace("local/report.html", "ray/report.html")

    got, expected = outputs(tmp_path / "ray"), outputs(tmp_path / "local")
    assert sorted(got) == sorted(expected)
    assert [name for name in got if got[name] != expected[name]] == []
    images = read_csv(tmp_path / "ray" / "images.csv")
    assert [(r["image"], r["status"].split(":")[0]) for r in images] == [
        ("fields/slideA/f0.png", "ok"), ("fields/slideA/f1.png", "ok"), ("fields/slideB/damaged.png", "skipped"),
        ("fields/slideB/f0.png", "ok"), ("fields/slideB/f1.jpg", "ok"), ("fields/slideB/notes.txt", "skipped")]
    assert all(int(r["red_counted"]) > 0 for r in images if r["status"] == "ok")
    assert len(list((tmp_path / "ray" / "overlays").glob("*.png"))) == 4
    record = json.loads((tmp_path / "ray" / "screen.json").read_text())
    assert record["engine"] == "ray" and (record["images"], record["skipped"]) == (4, 2)
    assert "(engine ray)" in (tmp_path / "ray" / "report.html").read_text()

    again = run("screen", "malaria", "fields", "--out", "ray", "--engine", "ray", "-q", env=env, cwd=tmp_path)
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_an_interrupted_ray_run_resumes_without_redoing_its_fields(fields, tmp_path, monkeypatch, local_ray):
    from cellscreen.screen.ray_engine import screen_on_ray

    pipeline.screen("malaria", [fields], tmp_path / "local", workers=0, progress=False)

    class Interrupting:
        """The progress bar: the run is stopped once the third field is written."""

        def __init__(self, *args, initial=0, **kwargs):
            self.n = initial

        def update(self, n):
            self.n += n
            if self.n == 3:
                raise KeyboardInterrupt

        def close(self):
            pass

    out = tmp_path / "ray"
    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "tqdm", Interrupting)
        with pytest.raises(KeyboardInterrupt):
            screen_on_ray("malaria", [fields], out, workers=2, progress=False)
    finished = read_csv(out / "images.partial.csv")
    assert len(finished) == 3 and not (out / "images.csv").exists()
    kept = {row["overlay"]: (out / row["overlay"]).stat().st_ino for row in finished if row["overlay"]}
    assert len(kept) == 2  # two fields and the damaged file

    with pytest.raises(UserError, match="--resume"):
        screen_on_ray("malaria", [fields], out, workers=2, progress=False)
    totals = screen_on_ray("malaria", [fields], out, workers=2, progress=False, resume=True)
    assert totals["resumed"] == 3 and (totals["images"], totals["skipped"]) == (4, 2)
    assert {name: (out / name).stat().st_ino for name in kept} == kept  # their overlays were not drawn again
    assert outputs(out) == outputs(tmp_path / "local")
    assert ray.is_initialized()  # a session the caller started is left running
