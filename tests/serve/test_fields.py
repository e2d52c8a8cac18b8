"""Whole smear fields through the service (issue 33 item 4) and its per-sample summaries (issue 34)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image
from scipy.stats import binomtest

from cellscreen.serve import fields
from cellscreen.serve.summary import summarise_uploads

RELABEL_SHA256 = "43258a10c05d16bad40efe91774fba41bc7c4059d87116286666651ebb8f0207"  # the data's relabel file


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from fastapi.testclient import TestClient

    with pytest.MonkeyPatch.context() as patch:  # any ONNX export goes to a private cache, not ~/.cache
        patch.setenv("CELLSCREEN_CACHE", str(tmp_path_factory.mktemp("serve-cache")))
        from cellscreen.serve.app import create_app

        with TestClient(create_app("malaria")) as test_client:  # the bundled model
            yield test_client


def test_auto_tells_fields_from_cells_by_the_models_training_image_size():
    assert fields.field_min_side({"dataset": "malaria-nih"}) == 325  # 2.5 NIH cells of 130 px
    assert fields.field_min_side({"dataset": "cnmc"}) is None  # C-NMC's 450 px white cells stay cells
    assert fields.field_min_side({"dataset": "folder"}) == 325
    assert fields.kind_of((640, 480), "auto", 325) == "field"
    assert fields.kind_of((640, 324), "auto", 325) == "cell"
    assert fields.kind_of((142, 130), "auto", 325) == "cell"
    assert fields.kind_of(None, "auto", 325) == "cell"  # unreadable: the cell decoder names the problem
    assert fields.kind_of((142, 130), "field", 325) == "field" and fields.kind_of((900, 900), "cell", 325) == "cell"


def test_a_field_that_cannot_be_screened_is_named_before_any_is():
    good = _png(np.full((400, 400, 3), 200, np.uint8))
    todo = [(0, "text.png", b"not an image", None), (1, "good.png", good, (400, 400)),
            (2, "huge.png", good, (5000, 4000))]
    bad = fields.field_problems(todo, max_pixels=30_000_000, budget_bytes=512 * 2**20)
    assert [(b["index"], b["status"]) for b in bad] == [(0, 415), (2, 413)]
    assert "not an image" in bad[0]["reason"] and "too large to screen here" in bad[1]["reason"]
    assert "610 MB" in bad[1]["reason"]  # 20 MP at FIELD_BYTES_PER_PIXEL


def test_per_sample_rows_of_cells_and_fields():
    uploads = [{"path": "P2/a.png", "kind": "cell", "flagged": True},
               {"path": "P2/b.png", "kind": "cell", "flagged": False},
               {"path": "P2/c.png", "kind": "cell", "flagged": False},
               {"path": "P10/f1.jpg", "kind": "field", "red_counted": 600, "positive": 6, "not_single": 10,
                "white": 1, "border": 30},
               {"path": "P10/f2.jpg", "kind": "field", "red_counted": 500, "positive": 5, "not_single": 300,
                "white": 0, "border": 20}]
    p2, p10 = summarise_uploads(uploads)
    assert (p2["sample"], p2["cells"], p2["flagged"], p2["fields"]) == ("P2", 3, 1, 0)
    interval = binomtest(1, 3).proportion_ci(method="wilson")
    assert (p2["low"], p2["high"]) == pytest.approx((interval.low, interval.high))
    assert p2["parasitemia"] is None and p2["warnings"] == []
    assert (p10["sample"], p10["cells"], p10["share"], p10["fields"]) == ("P10", 0, None, 2)
    assert (p10["red_counted"], p10["positive"], p10["not_single"], p10["white"]) == (1100, 11, 310, 1)
    interval = binomtest(11, 1100).proportion_ci(method="wilson")
    assert p10["parasitemia"] == pytest.approx({"percent": 1.0, "low": 100 * interval.low, "high": 100 * interval.high})
    assert len(p10["warnings"]) == 1 and "not single cells" in p10["warnings"][0]  # 1,100 counted: no count warning
    by_pattern = summarise_uploads([{"path": "x/P7_a.png", "kind": "cell", "flagged": True}], group_regex=r"^(P\d+)_")
    assert by_pattern[0]["sample"] == "P7"
    assert summarise_uploads([{"path": "x/b.png", "kind": "cell", "flagged": True}],
                             group_regex=r"(a)|b")[0]["sample"] == "b"  # matched without its group


@pytest.mark.parametrize("uploads, message", [
    ("x", "must be a list"), ([{"path": "a.png", "kind": "slide"}], "upload 0"),
    ([{"path": "a.png", "kind": "cell"}], "needs 'flagged'"),
    ([{"path": "a.png", "kind": "field", "red_counted": 1, "positive": 2, "not_single": 0, "white": 0, "border": 0}],
     "more positive"),
    ([{"path": "a.png", "kind": "field", "red_counted": -1, "positive": 0, "not_single": 0, "white": 0, "border": 0}],
     "whole counts")])
def test_per_sample_rows_refuse_what_is_not_an_answer(uploads, message):
    with pytest.raises(ValueError, match=message):
        summarise_uploads(uploads)


def test_the_service_describes_what_the_model_was_validated_on(client):
    info = client.get("/v1/model").json()
    card = info["validation"]
    assert card["dataset"] == "malaria-nih" and card["split_by"] == "group" and card["leaky"] is False
    assert (card["training_cells"], card["validation_cells"]) == (10422, 1751)  # from the checkpoint beside the graph
    assert card["labels"]["files"] == {"relabelled-fuhad2020.csv": RELABEL_SHA256} and card["labels"]["changed"] == 555
    assert card["extra_training"] == ["smear-negatives-2"]
    assert card["test"]["cells"] == 1618 and card["test"]["groups"] == 11 and card["test"]["labels"] == "relabelled"
    assert card["decision_threshold"] == 0.5 and info["field_min_side"] == 325


def test_a_field_of_nothing_and_bad_requests(client):
    blank = _png(np.full((400, 500, 3), 230, np.uint8))
    answer = client.post("/v1/predict", files=[("files", ("S/blank.png", blank, "image/png"))])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    (result,) = body["results"]
    assert result["kind"] == "field" and result["counts"]["red_counted"] == 0 and result["parasitemia"] is None
    assert "only 0 red cells counted" in result["warnings"][0]
    assert body["summary"] == {"cells": 0, "flagged": 0, "positive_class": "Parasitized", "flagged_fraction": None}
    assert body["samples"][0]["sample"] == "S" and body["samples"][0]["fields"] == 1

    refused = client.post("/v1/predict?group_regex=(", files=[("files", ("a.png", blank, "image/png"))])
    assert refused.status_code == 400 and "not a regular expression" in refused.json()["detail"]["error"]
    refused = client.post("/v1/predict?kind=field", files=[("files", ("a.png", b"text", "image/png"))])
    assert refused.status_code == 415 and refused.json()["detail"]["files"][0]["filename"] == "a.png"
    assert client.post("/v1/predict?kind=slide", files=[("files", ("a.png", blank, "image/png"))]).status_code == 422
    assert client.post("/v1/samples", content=b"{").status_code == 400
    answer = client.post("/v1/samples", json={"uploads": [{"path": "a/b.png", "kind": "cell", "flagged": True}],
                                              "group_regex": None})
    assert answer.status_code == 200 and answer.json()["samples"][0]["cells"] == 1


def _confident(predictor, folder, count):
    from cellscreen.screen.synthetic import confident_cells, regular_cells

    chosen = confident_cells(predictor, regular_cells(folder, count=2 * count, seed=3, slide="C39", min_solidity=0.93),
                             folder.name)[:count]
    assert len(chosen) == count
    return chosen


def synthetic_nih_field(real_data, predictor):
    """A 640x480 synthetic field of 12 uninfected and 4 parasitized real NIH cells of slide C39 on a real smear's
    background (the cells the screen command's own test uses), as PNG bytes, and its truth."""
    from cellscreen.data.images import load_rgb
    from cellscreen.screen.synthetic import make_field, smear_background

    cells = real_data / "malaria-nih" / "cell_images"
    paths = _confident(predictor, cells / "Uninfected", 12) + _confident(predictor, cells / "Parasitized", 4)
    smear = load_rgb(next((real_data / "smears" / "txl-pbc" / "TXL_PBC" / "images" / "train").glob("345b81c1-e33*")))
    field = make_field([load_rgb(p) for p in paths], ["Uninfected"] * 12 + ["Parasitized"] * 4,
                       [False] * 12 + [True] * 4, smear_background(smear, (480, 640), seed=1), scale=0.45, seed=1)
    return _png(field.image), field


def test_a_field_of_real_nih_cells_is_counted_exactly_beside_single_cells(client, real_data):
    data, field = synthetic_nih_field(real_data, client.app.state.predictor)
    cells = real_data / "malaria-nih" / "cell_images"
    single = [sorted((cells / label).glob("C39P*.png"))[-1] for label in ("Parasitized", "Uninfected")]
    files = [("files", ("slideB/" + single[0].name, single[0].read_bytes(), "image/png")),
             ("files", ("slideA/field.png", data, "image/png")),
             ("files", ("slideB/" + single[1].name, single[1].read_bytes(), "image/png"))]
    answer = client.post("/v1/predict", files=files)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    first, screened, last = body["results"]
    assert (first["kind"], screened["kind"], last["kind"]) == ("cell", "field", "cell")  # in the order sent
    assert screened["filename"] == "slideA/field.png" and (screened["width"], screened["height"]) == (640, 480)
    assert screened["counts"] == {"red_counted": 16, "positive": 4, "not_single": 0, "white": 0, "border": 0}
    interval = binomtest(4, 16).proportion_ci(method="wilson")
    assert screened["parasitemia"] == pytest.approx({"percent": 25.0, "low": 100 * interval.low,
                                                     "high": 100 * interval.high})
    assert screened["warnings"] == ["only 16 red cells counted; a thin-film count needs at least 1,000 "
                                    "(photograph more fields)"]
    found = [c for c in screened["cells"] if c["counted"]]
    for placed in field.cells:  # each placed cell found once where it was put, with its class
        near = [c for c in found if np.hypot(c["centre"][0] - placed.centre[0],
                                             c["centre"][1] - placed.centre[1]) < 0.25 * field.cell_diameter]
        assert len(near) == 1 and near[0]["class"] == placed.label
    assert screened["overlay"].startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(screened["overlay"].split(",", 1)[1]))) as picture:
        assert picture.size == (640, 480)
        drawn = np.asarray(picture.convert("RGB")).astype(int)
    sent = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
    assert (np.abs(drawn - sent).sum(axis=2) > 0).sum() > 500  # outlines drawn on the field

    assert body["summary"]["cells"] == 2  # the single cells only
    slide_a, slide_b = body["samples"]
    assert (slide_a["sample"], slide_a["fields"], slide_a["red_counted"], slide_a["positive"]) == ("slideA", 1, 16, 4)
    assert slide_a["parasitemia"]["percent"] == 25.0 and slide_a["cells"] == 0
    assert (slide_b["sample"], slide_b["cells"], slide_b["fields"]) == ("slideB", 2, 0)
    assert slide_b["flagged"] == first["flagged"] + last["flagged"]

    as_cell = client.post("/v1/predict?kind=cell", files=[("files", ("field.png", data, "image/png"))]).json()
    assert as_cell["results"][0]["kind"] == "cell"  # a field sent as a cell is classified as one, as before


def test_the_page_parts_are_served_open_and_the_summary_needs_the_token(client):
    from fastapi.testclient import TestClient

    from cellscreen.serve.app import create_app

    with TestClient(create_app(client.app.state.predictor, token="s3cret")) as guarded:
        page = guarded.get("/").text
        assert 'src="static/page.js"' in page and 'src="static/text.js"' in page and 'href="static/page.css"' in page
        script = guarded.get("/static/page.js")
        assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
        assert "v1/samples" in script.text and guarded.get("/static/page.css").status_code == 200
        assert guarded.get("/static/../app.py").status_code in (401, 404)  # nothing else is served open
        assert guarded.post("/v1/samples", json={"uploads": []}).status_code == 401
        answer = guarded.post("/v1/samples", json={"uploads": []}, headers={"Authorization": "Bearer s3cret"})
        assert answer.status_code == 200 and answer.json() == {"samples": []}
    assert client.get("/static/index.html").status_code == 422  # only the page's own parts


def test_a_given_red_cell_size_is_bounded(client):
    blank = _png(np.full((400, 500, 3), 230, np.uint8))
    for size in (3, 5000):
        answer = client.post(f"/v1/predict?cell_diameter={size}", files=[("files", ("a.png", blank, "image/png"))])
        assert answer.status_code == 422, answer.text  # a tiny size would blow a field up many times over
    answer = client.post("/v1/predict?cell_diameter=40", files=[("files", ("a.png", blank, "image/png"))])
    assert answer.status_code == 200 and answer.json()["results"][0]["cell_diameter"] == 40


def test_a_leukemia_model_takes_single_cells_only():
    assert fields.field_refusal({"dataset": "malaria-nih"}) is None and fields.field_refusal({}) is None
    refusal = fields.field_refusal({"dataset": "taleqani-binary"})
    assert "white cells" in refusal and "--cells white" in refusal
    assert fields.field_min_side({"dataset": "taleqani-binary"}) is None
    assert fields.kind_of((640, 480), "auto", None) == "cell"  # as before fields were served
    bad = fields.field_problems([(3, "f.png", b"x", (640, 480))], max_pixels=16_000_000, budget_bytes=2**29,
                                refusal=refusal)
    assert bad == [{"index": 3, "filename": "f.png", "reason": refusal, "status": 422}]
