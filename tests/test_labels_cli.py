"""``cellscreen labels audit | review | export`` through the command line (the audit and the page themselves are
tested in tests/labels)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cellscreen.data.index import scan_dataset
from cellscreen.data.sources import get_profile
from cellscreen.labels.audit import AUDIT_FILES
from cellscreen.labels.decisions import DECISIONS_FILE, DecisionLog
from tests.clitools import run_here
from tests.labels.helpers import fake_oof

FLIPPED = ["Parasitized/C1P9ThinF_IMG_2015_cell_0.png", "Uninfected/C5P9ThinF_IMG_2015_cell_1.png",
           "Parasitized/C9P9ThinF_IMG_2015_cell_2.png"]


@pytest.fixture
def audited(malaria_like, tmp_path) -> Path:
    """An audit of the fake slides made from an out-of-fold file that knows three labels are wrong."""
    index = scan_dataset(malaria_like, get_profile("malaria-nih"), progress=False, remember=False)
    other = {"Parasitized": "Uninfected", "Uninfected": "Parasitized"}
    truth = {r.path: other[r.label] if r.path in FLIPPED else r.label for r in index.records}
    oof = fake_oof(index, truth, tmp_path / "oof-given.csv")
    out = tmp_path / "audit"
    result = run_here("labels", "audit", str(malaria_like), "-d", "malaria-nih", "--oof", str(oof), "--out", str(out),
                      "-q")
    assert result.returncode == 0, result.stderr
    assert "3 suspect label(s) among 72 cells" in result.stdout
    assert f"cellscreen labels review {out}" in result.stdout
    return out


def test_audit_from_a_given_oof_file_writes_its_outputs(audited):
    assert all((audited / name).is_file() for name in AUDIT_FILES)
    suspects = (audited / "suspects.csv").read_text().splitlines()[1:]
    assert sorted(line.split(",")[1] for line in suspects) == sorted(FLIPPED)
    summary = json.loads((audited / "audit.json").read_text())
    assert summary["out_of_fold"]["oof_from"].endswith("oof-given.csv") and not (audited / "runs").exists()


def test_export_writes_the_reviews_decisions_as_a_relabel_file(audited, malaria_like, tmp_path):
    log = DecisionLog(audited / DECISIONS_FILE)
    log.append(who="jd", path=FLIPPED[0], decision="flip", label="Uninfected", given="Parasitized",
               suggested="Uninfected")
    log.append(who="jd", path=FLIPPED[1], decision="exclude", label="exclude", given="Uninfected",
               suggested="Parasitized")
    log.append(who="jd", path=FLIPPED[2], decision="keep", label="Parasitized", given="Parasitized",
               suggested="Uninfected")
    out = tmp_path / "relabel.csv"
    result = run_here("labels", "export", str(audited), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "2 decision(s)" in result.stdout
    rows = [line.split(",")[:2] for line in out.read_text().splitlines()]
    assert rows == [["path", "label"], [FLIPPED[0], "Uninfected"], [FLIPPED[1], "exclude"]]
    again = run_here("labels", "export", str(audited), "--out", str(out))
    assert again.returncode == 2 and "--overwrite" in again.stderr
    # every command that reads the dataset takes it
    info = run_here("data", "info", str(malaria_like), "-d", "malaria-nih", "--relabel", str(out), "--out",
                    str(tmp_path / "info.json"), "-q")
    assert info.returncode == 0, info.stderr
    assert json.loads((tmp_path / "info.json").read_text())["classes"] == {"Parasitized": 35, "Uninfected": 36}


def test_review_refuses_to_serve_beyond_this_machine(audited):
    result = run_here("labels", "review", str(audited), "--reviewer", "jd", "--host", "0.0.0.0")
    assert result.returncode == 2 and "this machine only" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_review_starts_and_serves_the_queue(audited):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "cellscreen.cli", "labels", "review", str(audited),
                               "--reviewer", "jd", "--port", str(port), "-q"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, queue = time.monotonic() + 60, None
        while queue is None and time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/queue", timeout=2) as response:
                    queue = json.loads(response.read())
            except OSError:
                time.sleep(0.3)
        assert queue is not None, server.stderr.read() if server.poll() is not None else "no answer in 60 s"
        assert queue["reviewer"] == "jd" and len(queue["suspects"]) == 3
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert f"on http://127.0.0.1:{port}/" in server.stdout.read()
