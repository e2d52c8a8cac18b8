"""Run the installed ``cellscreen`` command as a user would, or its ``main`` inside the test's process."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path


def run(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("cellscreen")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "cellscreen.cli"]
    result = subprocess.run(
        command + ["--quiet" if a == "-q" else a for a in args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=600,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def run_here(*args: str) -> subprocess.CompletedProcess:
    """``run``, but calling ``cellscreen.cli.main`` in this process: the same exit code and output without a
    new interpreter's start-up (several seconds with PyTorch), for tests of what a command does rather than
    of how it starts."""
    from cellscreen.cli import main

    argv = ["--quiet" if a == "-q" else a for a in args]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse refusing its arguments
            code = exc.code if isinstance(exc.code, int) else 2
    return subprocess.CompletedProcess(["cellscreen", *argv], code, out.getvalue(), err.getvalue())
