"""The review's decision log (append, resume, export) and its HTTP API, without a browser."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from cellscreen.data.index import scan_dataset
from cellscreen.data.sources import get_profile
from cellscreen.errors import UserError
from cellscreen.labels.audit import audit_labels
from cellscreen.labels.decisions import DecisionLog, export_decisions, last_decisions
from cellscreen.labels.relabel import apply_relabels, load_relabels, read_relabel_rows, write_relabel_file
from cellscreen.labels.review import review_app
from tests.labels.helpers import fake_oof


@pytest.fixture
def audit_dir(malaria_like, tmp_path):
    """An audit of the fake slides with four planted wrong labels."""
    index = scan_dataset(malaria_like, get_profile("malaria-nih"), progress=False, remember=False)
    true_label_of = {r.path: r.label for r in index.records}
    other = {"Parasitized": "Uninfected", "Uninfected": "Parasitized"}
    flipped = [r.path for r in index.records][2::17][:4]
    noise = write_relabel_file(tmp_path / "noise.csv", [(p, other[true_label_of[p]]) for p in flipped])
    given = apply_relabels(index, load_relabels([noise], dataset_root=index.root, classes=index.profile.labels))
    audit = audit_labels(given, out_dir=tmp_path / "audit", oof=fake_oof(given, true_label_of, tmp_path / "o.csv"))
    assert len(audit.suspects) == 4
    return tmp_path / "audit"


def test_log_appends_resumes_and_exports_the_last_decision(tmp_path):
    log = DecisionLog(tmp_path / "decisions.jsonl")
    common = {"who": "ab", "given": "Parasitized", "suggested": "Uninfected"}
    log.append(path="a.png", decision="flip", label="Uninfected", **common)
    log.append(path="b.png", decision="exclude", label="exclude", **common)
    log.append(path="c.png", decision="unsure", label=None, **common)
    with log.path.open("a") as handle:  # a crash in the middle of writing a line
        handle.write('{"who": "ab", "path": "d.png", "deci')
    reopened = DecisionLog(tmp_path / "decisions.jsonl")  # a new session resumes from the file
    reopened.append(path="a.png", decision="keep", label="Parasitized", **common)  # a changed mind wins
    records = reopened.read()
    assert [r["path"] for r in records] == ["a.png", "b.png", "c.png", "a.png"]
    assert all(r["who"] == "ab" and r["when"].endswith("+00:00") for r in records)
    assert last_decisions(records)["a.png"]["decision"] == "keep"
    lines = log.path.read_text().splitlines()
    assert len(lines) == 5 and json.loads(lines[-1])["path"] == "a.png"  # the torn line kept apart, not mended
    target, rows = export_decisions(tmp_path)
    assert target.name == "review-relabel.csv" and rows == 1
    assert [(p, label) for _, p, label in read_relabel_rows(target)[0]] == [("b.png", "exclude")]
    with pytest.raises(UserError, match="unknown decision"):
        log.append(path="a.png", decision="maybe", label=None, **common)


def test_api_records_decisions_and_exports_a_relabel_file(audit_dir, malaria_like):
    client = TestClient(review_app(audit_dir, reviewer="tester"))
    queue = client.get("/api/queue").json()
    suspects = queue["suspects"]
    assert len(suspects) == 4 and queue["reviewer"] == "tester" and queue["decisions"] == {}
    first, second, third = suspects[0], suspects[1], suspects[2]
    assert first["neighbours"] and all(n != first["path"] for n in first["neighbours"])
    assert client.get("/api/cell", params={"path": first["neighbours"][0]}).status_code == 200
    picture = client.get("/api/cell", params={"path": first["path"]})
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
    assert picture.content == (malaria_like / first["path"]).read_bytes()
    assert client.post("/api/decisions", json={"path": first["path"], "decision": "flip"}).json()["saved"][
        "label"] == first["suggested"]
    client.post("/api/decisions", json={"path": second["path"], "decision": "exclude"})
    client.post("/api/decisions", json={"path": third["path"], "decision": "unsure"})
    assert client.post("/api/decisions", json={"path": first["path"], "decision": "maybe"}).status_code == 422
    assert client.post("/api/decisions", json={"path": first["path"], "decision": "flip",
                                               "label": first["label"]}).status_code == 422
    assert client.post("/api/decisions", json={"path": "Parasitized/none.png", "decision": "keep"}).status_code == 404
    # a new server on the same folder (the review resumed) sees what was decided
    resumed = TestClient(review_app(audit_dir, reviewer="other")).get("/api/queue").json()
    assert set(resumed["decisions"]) == {first["path"], second["path"], third["path"]}
    exported = client.post("/api/export").json()
    assert exported["rows"] == 2
    rows = {p: label for _, p, label in read_relabel_rows(exported["path"])[0]}
    assert rows == {first["path"]: first["suggested"], second["path"]: "exclude"}


@pytest.mark.parametrize("path", ["../../noise.csv", "/etc/passwd", "Parasitized/../../../noise.csv",
                                  "%2e%2e/noise.csv", "Parasitized"])
def test_no_file_outside_the_audits_cells_is_served(audit_dir, path):
    client = TestClient(review_app(audit_dir, reviewer="tester"))
    assert client.get("/api/cell", params={"path": path}).status_code == 404


def test_a_review_needs_a_reviewer_and_an_audit(audit_dir, tmp_path):
    with pytest.raises(UserError, match="who reviews"):
        review_app(audit_dir, reviewer=" ")
    with pytest.raises(UserError, match="not an audit folder"):
        review_app(tmp_path / "nowhere", reviewer="tester")
