"""The wheel holds everything ``cellscreen bench compare-reference`` loads, so the command works from a
non-editable install (the Keras reference script and its requirements used to sit outside the package)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cellscreen import benchmarks

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "cellscreen"


def files_compare_reference_loads() -> set[str]:
    """Paths inside the wheel: every module of the package (the command imports config, data, engine and
    serve), the reference script and its requirements, the presets it trains with and the bundled malaria
    model it predicts with (its test figures too)."""
    modules = {p.relative_to(REPO).as_posix() for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    data = [benchmarks.REFERENCE_SCRIPT, benchmarks.KERAS_REQUIREMENTS, PACKAGE / "presets" / "default.yaml",
            PACKAGE / "presets" / "seed_malaria_cnn.yaml", *sorted(p for p in (PACKAGE / "weights" / "malaria").rglob("*") if p.is_file())]
    return modules | {p.relative_to(REPO).as_posix() for p in data}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Iterator[zipfile.ZipFile]:
    """A wheel built from a copy of the checkout (the build writes build/ and *.egg-info beside its source)."""
    source = tmp_path_factory.mktemp("source")
    shutil.copytree(PACKAGE, source / "cellscreen", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    # no build isolation: the venv's setuptools builds it, so no download is needed
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                           str(source), "-w", str(out)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    (built,) = out.glob("cellscreen-*.whl")
    with zipfile.ZipFile(built) as archive:
        yield archive


def test_the_wheel_holds_what_compare_reference_loads(wheel):
    expected = files_compare_reference_loads()
    assert {"cellscreen/benchmarks/keras_reference.py", "cellscreen/benchmarks/requirements-keras.txt",
            "cellscreen/weights/malaria/model.onnx"} <= expected
    assert sorted(expected - set(wheel.namelist())) == []


def test_the_wheel_installs_the_cellscreen_command(wheel):
    """compare-reference runs ``cellscreen predict`` through the command the wheel installs."""
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    scripts = wheel.read(entry_points).decode().partition("[console_scripts]")[2]
    assert any(line.startswith("cellscreen = cellscreen.cli") for line in scripts.splitlines())
