"""The review page on a dataset of three classes: a suspect can be flipped to either other class (keys 1, 2)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cellscreen.data.index import scan_dataset
from cellscreen.data.sources import get_profile
from cellscreen.labels.audit import audit_labels
from cellscreen.labels.oof import OutOfFold, write_oof
from tests.browser import needs_chromium, watched_page
from tests.conftest import write_cell
from tests.serve.test_page import _serving

pytestmark = needs_chromium
CLASSES = ("Benign", "Early", "Pre")


def test_keys_flip_to_either_other_class(browser, tmp_path):
    from cellscreen.labels.review import review_app

    seed = 0
    for label in CLASSES:
        for slide in range(6):
            for n in range(5):
                write_cell(tmp_path / "cells" / label / f"C{slide}_{label}_{n}.png", seed, (24, 24))
                seed += 1
    index = scan_dataset(tmp_path / "cells", get_profile("folder", group_regex=r"^(C\d+)_"), progress=False,
                         remember=False)
    rng = np.random.default_rng(0)
    proba = np.full((len(index.records), 3), 0.02)
    truth = [CLASSES.index(r.label) for r in index.records]
    truth[0], truth[1] = 2, 2  # two Benign cells that are Pre
    for k, t in enumerate(truth):
        proba[k, t] = 0.96 if k < 2 else rng.uniform(0.8, 0.96)
    oof = write_oof(OutOfFold([r.path for r in index.records], [r.group for r in index.records],
                              [r.label for r in index.records], [0] * len(truth), list(CLASSES),
                              proba / proba.sum(axis=1, keepdims=True)), tmp_path / "oof.csv")
    audit = audit_labels(index, out_dir=tmp_path / "audit", oof=oof)
    assert {s.path for s in audit.suspects} == {index.records[0].path, index.records[1].path}
    with _serving(review_app(tmp_path / "audit", reviewer="tester")) as url, watched_page(browser) as page:
        page.goto(url)
        page.wait_for_function("() => document.body.dataset.ready === '1'")
        assert page.eval_on_selector_all("#other-classes button", "els => els.map(e => e.textContent)") == [
            "1: flip to Early", "2: flip to Pre"]
        page.keyboard.press("1")
        page.wait_for_function("() => document.getElementById('progress').textContent.startsWith('1 of')")
        page.keyboard.press("2")
        page.wait_for_function("() => document.getElementById('progress').textContent.startsWith('2 of')")
    records = [json.loads(line) for line in (tmp_path / "audit" / "decisions.jsonl").read_text().splitlines()]
    assert [(r["path"], r["decision"], r["label"]) for r in records] == [
        (audit.suspects[0].path, "flip", "Early"), (audit.suspects[1].path, "flip", "Pre")]
