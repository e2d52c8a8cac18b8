"""Run the installed ``cellscreen`` command as a user would."""

from __future__ import annotations

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
