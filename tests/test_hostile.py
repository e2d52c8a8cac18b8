"""The hostile corpus through every command a user runs: no traceback, no silent drop, every file accounted for.

A copy of the synthetic malaria folder gets ``write_hostile``'s entries (odd formats and names, links,
pipes, permissions, deep nesting, extreme sizes, ...).  ``data info``, ``split``, ``train``, ``evaluate``
and ``predict`` run on it as a user would, and every entry must end up exactly once either used or
skipped with its expected reason; the service answers each file alone with 200 or a 4xx naming why.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from tests.badfiles import Corpus, write_broken_layouts, write_hostile
from tests.clitools import run

IS_ROOT = os.geteuid() == 0

TRAIN = ("--set", "epochs=1", "--set", "input_size=16", "--set", "batch_size=16", "--set", "val=0.2",
         "--set", "test=0.2", "--bootstrap", "0", "-q")


def _expected(corpus: Corpus, base: list[str], field: str) -> tuple[set[str], dict[str, str]]:
    """(paths that must be used, {path: phrase of the skip reason}) for one kind of command."""
    used, skipped = set(base), {}
    for entry in corpus.entries:
        expected = getattr(entry, field)
        if expected is None or (entry.root_reads and IS_ROOT):  # root reads a chmod-000 file anyway
            used.add(entry.rel(corpus.root))
        else:
            skipped[entry.rel(corpus.root)] = expected
    assert not used & skipped.keys()
    return used, skipped


def _base_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _build(tmp: Path, cells: Path, skip_kinds=frozenset()) -> tuple[Corpus, list[str]]:
    root = tmp / "cells"
    shutil.copytree(cells, root)
    base = _base_files(root)
    return write_hostile(root, skip_kinds=skip_kinds), base


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The commands' environment, and this process's while the module's fixtures are built: a cache folder
    of this module's own (module fixtures are set up before the per-test cache fixture)."""
    cache = str(tmp_path_factory.mktemp("hostile-cache"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CELLSCREEN_CACHE", cache)
        yield {**os.environ, "CELLSCREEN_CACHE": cache, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, learnable_cells):
    corpus, base = _build(tmp_path_factory.mktemp("hostile"), learnable_cells)
    yield corpus, base
    for entry in corpus.entries:  # let the temporary folder be removed by a non-root user too
        if entry.kind == "unreadable_file":
            entry.path.chmod(0o644)


@pytest.fixture(scope="module")
def trained(corpus, env, tmp_path_factory):
    corpus, _ = corpus
    out = tmp_path_factory.mktemp("hostile-run") / "run"
    result = run("train", str(corpus.root), "-d", "malaria-nih", "--out", str(out), *TRAIN, env=env)
    assert result.returncode == 0, result.stderr
    return out, result


def test_the_corpus_is_big_enough(corpus, tmp_path):
    corpus, base = corpus
    layouts = write_broken_layouts(tmp_path)
    kinds = corpus.kinds + list(layouts)
    assert len(kinds) == len(set(kinds)) >= 30, kinds
    entries = [e.kind for e in corpus.entries]
    assert set(entries) <= set(corpus.kinds)
    # a kind leaves at least one entry, except the empty folder (which has no file to account for)
    assert set(corpus.kinds) - set(entries) == {"empty_folder"}
    assert len({e.rel(corpus.root) for e in corpus.entries}) == len(corpus.entries)


def test_data_info_lists_every_file_once(corpus, env, tmp_path):
    corpus, base = corpus
    used, skipped = _expected(corpus, base, "dataset")
    out = tmp_path / "info.json"
    result = run("data", "info", str(corpus.root), "-d", "malaria-nih", "--out", str(out), "-q", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["files"] == len(used) + len(skipped) == report["images"] + report["skipped"]
    assert report["images"] == len(used)
    listed = Counter(f["path"] for f in report["skipped_files"])
    assert [p for p, n in listed.items() if n > 1] == []
    reasons = {f["path"]: f["reason"] for f in report["skipped_files"]}
    assert reasons.keys() == skipped.keys(), (reasons.keys() ^ skipped.keys())
    wrong = {p: (skipped[p], reasons[p]) for p in skipped if skipped[p] not in reasons[p]}
    assert wrong == {}
    assert report["duplicates"]["across_class_sets"] >= 1
    assert "files found" in result.stdout


def test_split_uses_every_readable_file_once(corpus, env, tmp_path):
    corpus, base = corpus
    used, skipped = _expected(corpus, base, "dataset")
    out = tmp_path / "split.csv"
    result = run("split", str(corpus.root), "-d", "malaria-nih", "--out", str(out), "-q", env=env)
    assert result.returncode == 0, result.stderr
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    paths = [row["path"] for row in rows]
    assert len(paths) == len(set(paths)) and set(paths) == used
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["n_images"] + meta["n_skipped"] == len(used) + len(skipped)
    assert meta["n_skipped"] == len(skipped) and f"skipped {len(skipped)} file(s)" in result.stdout
    assert meta["leaky"] is False  # the duplicates and symlinked copies stay on one side


def test_train_uses_every_readable_file_once(corpus, trained):
    corpus, base = corpus
    used, skipped = _expected(corpus, base, "dataset")
    out, result = trained
    with (out / "split.csv").open(newline="") as handle:
        paths = [row["path"] for row in csv.DictReader(handle)]
    assert len(paths) == len(set(paths)) and set(paths) == used
    test_report = json.loads((out / "test" / "metrics.json").read_text())
    assert test_report["skipped"] == len(skipped)
    assert (out / "model.json").is_file() and "checkpoint:" in result.stdout


def test_evaluate_scores_every_readable_file_once(corpus, trained, env, tmp_path):
    corpus, base = corpus
    used, skipped = _expected(corpus, base, "dataset")
    run_dir, _ = trained
    out = tmp_path / "eval"
    result = run("evaluate", str(run_dir), str(corpus.root), "-d", "malaria-nih", "--out", str(out),
                 "--bootstrap", "0", "-q", env=env)
    assert result.returncode == 0, result.stderr
    with (out / "predictions.csv").open(newline="") as handle:
        paths = [row["path"] for row in csv.DictReader(handle)]
    assert len(paths) == len(set(paths)) and set(paths) == used
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["metrics"]["n"] == len(used) and metrics["skipped"] == len(skipped)


def _predict(run_dir: Path, root: Path, out: Path, env: dict) -> dict[str, list[dict]]:
    result = run("predict", str(run_dir), str(root), "--out", str(out), "-q", env=env)
    assert result.returncode == 0, result.stderr
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_path: dict[str, list[dict]] = {}
    for row in rows:
        by_path.setdefault(Path(row["path"]).relative_to(root).as_posix(), []).append(row)
    counts = result.stdout
    assert f"predicted {sum(r['status'] == 'ok' for r in rows):,} image(s)" in counts
    return by_path


def test_predict_gives_every_file_one_row(trained, env, tmp_path, learnable_cells):
    corpus, base = _build(tmp_path, learnable_cells, skip_kinds=frozenset())
    used, skipped = _expected(corpus, base, "predict")
    run_dir, _ = trained
    try:
        rows = _predict(run_dir, corpus.root, tmp_path / "preds.csv", env)
    finally:
        for entry in corpus.by_kind("unreadable_file"):
            entry.path.chmod(0o644)
    assert [p for p, r in rows.items() if len(r) > 1] == []
    assert rows.keys() == used | skipped.keys(), rows.keys() ^ (used | skipped.keys())
    assert [p for p in used if rows[p][0]["status"] != "ok"] == []
    assert all(rows[p][0]["predicted"] in ("Parasitized", "Uninfected") for p in used)
    wrong = {p: (skipped[p], rows[p][0]["status"]) for p in skipped
             if not rows[p][0]["status"].startswith("skipped: ") or skipped[p] not in rows[p][0]["status"]}
    assert wrong == {}
