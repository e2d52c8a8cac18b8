"""bench/predict_rounds.py on a few synthetic cells: the reference and cellscreen's engines run in turn,
round by round, and each engine's time is set against the reference's of the same round."""

from __future__ import annotations

import json
import os
import stat
import sys

from cellscreen.benchmarks import REFERENCE_SCRIPT
from tests.benchscripts import bench
from tests.conftest import make_malaria_like

FAKE_PYTHON = """#!/bin/sh
echo "$@" >> "{log}"
sleep 0.2
"""


def test_predict_rounds_alternates_the_reference_and_each_engine(tmp_path):
    images = make_malaria_like(tmp_path / "data", {"C1": {"Parasitized": 3, "Uninfected": 3}}, size=(20, 20))
    log = tmp_path / "reference-calls.txt"
    fake_python = tmp_path / "keras-python"  # stands in for the Keras environment's Python
    fake_python.write_text(FAKE_PYTHON.format(log=log))
    fake_python.chmod(fake_python.stat().st_mode | stat.S_IXUSR)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    done = bench("predict_rounds.py", "--inputs", images, "--reference-python", fake_python, "--engines", "torch",
                 "--rounds", "2", env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)

    assert [(r["round"], r["what"]) for r in result["runs"]] == [(1, "keras"), (1, "torch"), (2, "keras"),
                                                                 (2, "torch")]
    assert log.read_text().splitlines() == [f"{REFERENCE_SCRIPT} predict --inputs {images}"] * 2
    torch_runs, keras_runs = result["summary"]["torch"], result["summary"]["keras"]
    assert len(torch_runs["wall_s"]) == len(keras_runs["wall_s"]) == 2 and min(torch_runs["wall_s"]) > 0
    for ratio, ours, theirs in zip(torch_runs["over_keras"], torch_runs["wall_s"], keras_runs["wall_s"]):
        assert ratio == round(ours / theirs, 3)
    assert result["model"] == "malaria" and result["inputs"] == str(images)
