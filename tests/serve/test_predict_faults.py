"""`cellscreen predict` under faults: killed at any moment, a full or read-only disk, a mistyped input.

A killed run must resume to the very file an uninterrupted run writes, and leave no worker behind; a
mistake the user can fix must end in one line and exit status 2, never a traceback.
"""

from __future__ import annotations

import errno
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.clitools import run
from tests.conftest import write_cell
from tests.processes import descendants, survivors

CELLS = 400  # tiny images: the run takes a second or two, long enough to be killed at chosen moments
BATCH = "16"


@pytest.fixture(scope="module")
def cell_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cells")
    for n in range(CELLS):
        write_cell(folder / f"cell_{n:04d}.png", n, (20, 20), parasite=bool(n % 2))
    return folder


def _command() -> list[str]:
    script = Path(sys.executable).with_name("cellscreen")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cellscreen.cli"]


def _predict(folder: Path, out: Path, *extra: str) -> list[str]:
    return ["predict", "malaria", str(folder), "--out", str(out), "--workers", "2",
                      "--batch-size", BATCH, "--quiet", *extra]


def _journal_rows(journal: Path) -> int:
    try:
        return max(0, journal.read_bytes().count(b"\n") - 1)
    except FileNotFoundError:
        return -1


def _kill_at(folder: Path, out: Path, rows: int) -> tuple[int, dict[int, int]]:
    """Start predict, SIGKILL it once its journal exists (``rows=0``) or holds ``rows`` rows; the rows it
    held when killed and the processes it had started."""
    journal = out.with_name(out.name + ".partial.csv")
    process = subprocess.Popen(_command() + _predict(folder, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    try:
        while (written := _journal_rows(journal)) < rows:  # -1 until the journal exists
            assert process.poll() is None, f"predict ended before {rows} rows: {process.stderr.read()!r}"
            assert time.monotonic() < deadline, "predict made no progress"
            time.sleep(0.002)
        children = descendants(process.pid)
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
    return written, children


def _kill_mid_run(folder: Path, out: Path, rows: int) -> tuple[int, dict[int, int]]:
    """``_kill_at``, tried again a tenth of the run earlier when the run had finished before the kill reached
    it (on a loaded machine the last rows may be written, and the file completed, between two looks)."""
    for _ in range(3):
        written, children = _kill_at(folder, out, rows)
        if not (out.exists() and written >= CELLS):
            break
        out.unlink()
        rows = max(0, rows - CELLS // 10)
    return written, children


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_predict_killed_at_five_moments_resumes_to_the_same_file_and_leaves_no_worker(cell_folder, tmp_path):
    uninterrupted = tmp_path / "whole.csv"
    made = subprocess.run(_command() + _predict(cell_folder, uninterrupted), capture_output=True, text=True,
                          timeout=120)
    assert made.returncode == 0, made.stderr
    expected = uninterrupted.read_bytes()
    for k, fraction in enumerate((0, 0.2, 0.4, 0.6, 0.8)):
        out = tmp_path / f"cut{k}.csv"
        written, children = _kill_mid_run(cell_folder, out, int(fraction * CELLS))
        assert not out.exists() and written < CELLS, (fraction, written)
        if fraction:
            assert children, "the decoding workers should have been running"
        deadline = time.monotonic() + 3
        while survivors(children) and time.monotonic() < deadline:
            time.sleep(0.05)
        alive = survivors(children)
        for pid in alive:  # not left running when the test fails
            os.kill(pid, signal.SIGKILL)
        assert not alive, f"killed at {written} rows, these outlived it: {alive}"
        resumed = run(*_predict(cell_folder, out, "--resume"))
        assert resumed.returncode == 0, (fraction, resumed.stderr)
        assert out.read_bytes() == expected, f"killed at {written} rows, resumed to another file"
        assert not out.with_name(out.name + ".partial.csv").exists()


@pytest.fixture(scope="module")
def whole(cell_folder, tmp_path_factory) -> bytes:
    """What an uninterrupted run in this process writes."""
    from cellscreen.serve.predict import predict_files

    out = tmp_path_factory.mktemp("whole") / "whole.csv"
    predict_files("malaria", [cell_folder], out, batch_size=16, workers=0, progress=False)
    return out.read_bytes()


class _FullDisk(io.FileIO):
    """A file on a disk with ``space[0]`` bytes left: a short write, then ENOSPC, as a real full disk does."""

    def __init__(self, path, mode: str, space: list[int]):
        super().__init__(path, mode)
        self.space = space

    def write(self, data) -> int:
        if self.space[0] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        size = min(len(data), self.space[0])
        self.space[0] -= size
        return super().write(bytes(data)[:size])


def _journal_on_a_full_disk(monkeypatch, space: int) -> None:
    real_open, left = Path.open, [space]

    def opened(self, mode="r", *args, **kwargs):
        if self.name.endswith(".partial.csv") and mode[0] in "wa":
            raw = _FullDisk(self, mode[0], left)
            return io.TextIOWrapper(io.BufferedWriter(raw), encoding=kwargs.get("encoding") or "utf-8",
                                    newline=kwargs.get("newline"))
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", opened)


@pytest.mark.parametrize("space", [0, 20, 1500])  # full before the header, within it, within the rows
def test_a_full_disk_stops_with_a_message_and_a_journal_that_resumes(cell_folder, whole, tmp_path, monkeypatch,
                                                                     space):
    from cellscreen.errors import UserError
    from cellscreen.serve.predict import predict_files

    out = tmp_path / "cut.csv"
    journal = tmp_path / "cut.csv.partial.csv"
    with monkeypatch.context() as patch:
        _journal_on_a_full_disk(patch, space)
        with pytest.raises(UserError, match="no space left") as caught:
            predict_files("malaria", [cell_folder], out, batch_size=16, workers=0, progress=False)
    message = str(caught.value)
    assert str(journal) in message and "--resume" in message and "\n" not in message
    assert journal.exists() and not out.exists()
    predict_files("malaria", [cell_folder], out, batch_size=16, workers=0, progress=False, resume=True)
    assert out.read_bytes() == whole and not journal.exists()


def test_a_folder_that_refuses_writes_is_one_line(cell_folder, tmp_path, monkeypatch):
    """Read-only (EROFS) or not ours (EACCES): what tests run as root cannot get from chmod."""
    from cellscreen.errors import UserError
    from cellscreen.serve.predict import predict_files

    real_open = Path.open
    for code in (errno.EROFS, errno.EACCES):
        def refused(self, mode="r", *args, **kwargs):
            if self.parent == tmp_path / "locked" and mode[0] in "wa":
                raise OSError(code, os.strerror(code), str(self))
            return real_open(self, mode, *args, **kwargs)

        with monkeypatch.context() as patch:
            patch.setattr(Path, "open", refused)
            with pytest.raises(UserError, match="cannot write") as caught:
                predict_files("malaria", [cell_folder], tmp_path / "locked" / "p.csv", workers=0, progress=False)
        assert str(tmp_path / "locked") in str(caught.value) and "--out" in str(caught.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="chmod does not stop root from writing")
def test_predict_into_a_read_only_folder_is_one_line(cell_folder, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        result = run(*_predict(cell_folder, locked / "p.csv"))
    finally:
        locked.chmod(0o755)
    assert result.returncode == 2 and str(locked) in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("under", ["notes.txt", "notes.txt/deeper"])
def test_predict_under_a_file_is_one_line(cell_folder, tmp_path, under):
    (tmp_path / "notes.txt").write_text("not a folder")
    out = tmp_path / under / "p.csv"
    result = run(*_predict(cell_folder, out))
    assert result.returncode == 2 and "notes.txt" in result.stderr and "is a file" in result.stderr
    assert result.stderr.count("\n") == 1


def test_a_missing_input_is_refused_before_anything_is_written(cell_folder, tmp_path):
    out = tmp_path / "m.csv"
    for inputs in (["/nonexistent"], [str(cell_folder), str(tmp_path / "gone.png")]):
        result = run("predict", "malaria", *inputs, "--out", str(out), "-q")
        assert result.returncode == 2, result.stderr
        assert f"{inputs[-1]}: no such file or folder" in result.stderr and result.stderr.count("\n") == 1
        assert list(tmp_path.iterdir()) == []


def test_an_empty_or_headless_journal_is_a_fresh_start(cell_folder, whole, tmp_path):
    """What a kill before the first row leaves: nothing, or part of the header."""
    from cellscreen.serve.predict import predict_files

    out = tmp_path / "cut.csv"
    journal = tmp_path / "cut.csv.partial.csv"
    for left in (b"", b"path,predic"):
        journal.write_bytes(left)
        counts = predict_files("malaria", [cell_folder], out, batch_size=16, workers=0, progress=False, resume=True)
        assert counts["resumed"] == 0 and out.read_bytes() == whole
        out.unlink()
