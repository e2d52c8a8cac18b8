"""`predict --engine ray`: the rows of the single-process path, computed by Ray Data on a local 2-CPU instance."""

import json
import os
import shutil
import sys
import tempfile

import pytest

from cellscreen.errors import UserError
from cellscreen.serve import distributed
from cellscreen.serve import predict as module
from cellscreen.serve.outputs import read_rows
from tests.badfiles import write_all
from tests.clitools import run

ray = pytest.importorskip("ray")

N_ROWS = 120 + 15 + 1 + 120  # a class folder, the odd files, a broken link, the other class folder


@pytest.fixture(scope="module")
def inputs(learnable_cells, tmp_path_factory):
    odd = tmp_path_factory.mktemp("odd")
    write_all(odd)
    dangling = tmp_path_factory.mktemp("links") / "dangling.png"  # named, unreadable: a row (a missing one is refused)
    dangling.symlink_to(dangling.with_name("nowhere.png"))
    return [str(learnable_cells / "Parasitized"), str(odd), str(dangling), str(learnable_cells / "Uninfected")]


@pytest.fixture
def ray_tmp():
    """A short folder for Ray's session files (its socket paths must stay under 108 characters)."""
    folder = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _rows(path):
    rows = read_rows(path)
    header = next(rows)
    return [dict(zip(header, row)) for row in rows]


def _assert_same(got, expected):
    assert [r["path"] for r in got] == [r["path"] for r in expected]
    assert [r["status"] for r in got] == [r["status"] for r in expected]
    assert [r["predicted"] for r in got] == [r["predicted"] for r in expected]
    for a, b in zip(got, expected):
        for column in ("p_Parasitized", "p_Uninfected"):
            assert (a[column] == b[column] == "") or abs(float(a[column]) - float(b[column])) < 1e-4, (a, b)


def test_ray_engine_errors(trained_run, tmp_path, monkeypatch, learnable_cells):
    with pytest.raises(UserError, match="--engine ray"):
        module.predict_files(trained_run.run, [learnable_cells], tmp_path / "a.csv", ray_address="auto")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(UserError, match=r"pip install 'cellscreen\[ray\]'"):
        module.predict_files(trained_run.run, [learnable_cells], tmp_path / "a.csv", engine="ray")


def test_ray_engine_gives_the_rows_of_the_single_process_path(trained_run, inputs, tmp_path, ray_tmp):
    single = tmp_path / "onnx.csv"
    module.predict_files(trained_run.run, inputs, single, engine="onnx", workers=0, progress=False)
    # The command starts a local Ray instance of --workers CPUs and stops it at the end.
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "OMP_NUM_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)
    out = tmp_path / "ray.parquet"
    made = run("predict", str(trained_run.run), *inputs, "--out", str(out), "--engine", "ray", "--workers", "2",
               "--batch-size", "16", "-q", env=env)
    assert made.returncode == 0, made.stderr
    expected, got = _rows(single), _rows(out)
    assert len(expected) == N_ROWS and sum(r["status"] == "ok" for r in expected) == 240 + 8
    _assert_same(got, expected)
    record = json.loads((tmp_path / "ray.parquet.json").read_text())
    assert record["engine"] == "ray" and record["rows"] == len(expected)
    assert not (tmp_path / "ray.parquet.partial.csv").exists()
    again = run("predict", str(trained_run.run), *inputs, "--out", str(out), "--engine", "ray", env=env)
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_ray_engine_keeps_shards_and_resumes_an_interrupted_run(trained_run, inputs, tmp_path, monkeypatch,
                                                                local_ray):
    model = str(trained_run.run)
    part = tmp_path / "part1.csv"
    module.predict_files(model, inputs, tmp_path / "single1.csv", shard=(1, 3), engine="onnx", workers=0,
                         progress=False)
    module.predict_files(model, inputs, part, shard=(1, 3), engine="ray", batch_size=8, progress=False)
    expected = _rows(tmp_path / "single1.csv")
    assert 0 < len(expected) < N_ROWS
    _assert_same(_rows(part), expected)
    assert json.loads((tmp_path / "part1.csv.json").read_text())["shard"] == [1, 3]
    assert ray.is_initialized()  # a session the caller started is left running

    # Interrupted after the first journal write: the rest comes from a second run, in chunks of 100 paths.
    monkeypatch.setattr(distributed, "_RAY_CHUNK", 100)
    monkeypatch.setattr(distributed, "_FLUSH", 30)

    class Interrupting:
        def __init__(self, *args, **kwargs):
            pass

        def update(self, n):
            raise KeyboardInterrupt

        def close(self):
            pass

    out = tmp_path / "cut.csv"
    with monkeypatch.context() as patch:
        patch.setattr(module, "tqdm", Interrupting)
        with pytest.raises(KeyboardInterrupt):
            module.predict_files(model, inputs, out, engine="ray", batch_size=8, progress=False)
    journal = tmp_path / "cut.csv.partial.csv"
    written = len(_rows(journal))
    assert not out.exists() and 30 <= written < N_ROWS
    counts = module.predict_files(model, inputs, out, engine="ray", resume=True, batch_size=8, progress=False)
    assert counts["resumed"] == written and counts["resumed"] + counts["predicted"] + counts["skipped"] == N_ROWS
    module.predict_files(model, inputs, tmp_path / "whole.csv", engine="onnx", workers=0, progress=False)
    _assert_same(_rows(out), _rows(tmp_path / "whole.csv"))
    assert not journal.exists()
