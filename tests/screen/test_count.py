"""Counting red cells, positives and parasitemia per field and per sample."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from scipy.stats import binomtest

from cellscreen.errors import UserError
from cellscreen.screen import count


@dataclass(frozen=True)
class Cell:
    id: int
    kind: str = "red"
    single: bool = True
    touches_border: bool = False


def test_only_single_red_cells_inside_the_field_are_counted():
    cells = [Cell(1), Cell(2), Cell(3), Cell(4, single=False), Cell(5, touches_border=True),
             Cell(6, kind="white", single=False), Cell(7, kind="white", single=False, touches_border=True)]
    counts = count.count_field(cells, positive_ids={2, 4, 5})
    assert counts == count.Counts(red_counted=3, positive=1, flagged=1, white=2, border=1, images=1,
                                  white_counted=1, blasts=0)
    assert counts.not_single_share == pytest.approx(1 / 4)


def test_white_cells_inside_the_field_are_counted_and_their_blasts_with_them():
    cells = [Cell(1), Cell(2, kind="white", single=False), Cell(3, kind="white", single=False),
             Cell(4, kind="white", single=False, touches_border=True), Cell(5, kind="white", single=False)]
    counts = count.count_field(cells, [], blast_ids={1, 3, 4})  # 1 is red, 4 is cut by the border
    assert (counts.white, counts.white_counted, counts.blasts, counts.positive) == (4, 3, 1, 0)
    assert (counts + counts).blasts == 2 and (counts + counts).white_counted == 6


def test_blasts_are_called_on_the_summed_probability_of_the_blast_classes():
    classes = ("Benign", "Early", "Pre", "Pro")
    proba = np.array([[0.4, 0.2, 0.2, 0.2], [0.6, 0.3, 0.05, 0.05], [0.1, 0.1, 0.7, 0.1], [0.5, 0.5, 0, 0]])
    names, blast, p_blast = count.call_blasts(proba, classes, ("Early", "Pre", "Pro"))
    assert names == ["Early", "Benign", "Pre", "Early"]  # 0.6 of blast classes beats Benign's 0.4
    assert blast.tolist() == [True, False, True, True]
    assert p_blast == pytest.approx([0.6, 0.4, 0.9, 0.5])
    names, blast, _ = count.call_blasts(proba, classes, ("Pro",), threshold=0.15)
    assert blast.tolist() == [True, False, False, False] and names[1] == "Benign" and names[2] == "Pre"


def test_a_white_cell_count_warns_below_a_200_cell_differential():
    assert count.MIN_WHITE_CELLS == 200
    few = count.Counts(5000, 0, 0, 150, 0, 1, 150, 30)
    assert "only 150 white cells counted" in count.sample_warnings(few, cells="white")[0]
    assert not any("red cells" in w for w in count.sample_warnings(few, cells="white"))
    assert count.sample_warnings(count.Counts(10, 0, 0, 200, 0, 1, 200, 30), cells="white") == []


def test_counts_add_up_over_a_sample():
    total = count.Counts(10, 2, 1, 0, 3) + count.Counts(5, 1, 0, 2, 0)
    assert total == count.Counts(15, 3, 1, 2, 3, images=2)


def test_parasitemia_is_positive_over_counted_with_a_wilson_interval():
    found = count.parasitemia(5, 25)
    expected = binomtest(5, 25).proportion_ci(0.95, method="wilson")
    assert found.percent == pytest.approx(20.0)
    assert (found.low, found.high) == pytest.approx((100 * expected.low, 100 * expected.high))
    none = count.parasitemia(0, 1000)
    assert none.percent == 0.0 and none.low == pytest.approx(0.0, abs=1e-9) and 0 < none.high < 0.5
    assert count.parasitemia(0, 0) is None
    with pytest.raises(ValueError):
        count.parasitemia(3, 2)


def test_cells_are_called_positive_at_the_models_threshold():
    proba = np.array([[0.5, 0.5], [0.7, 0.3], [0.2, 0.8]])
    names, positive = count.call_cells(proba, ["Uninfected", "Parasitized"], "Parasitized")
    assert names == ["Parasitized", "Uninfected", "Parasitized"] and positive.tolist() == [True, False, True]
    names, positive = count.call_cells(proba, ["Uninfected", "Parasitized"], "Parasitized", threshold=0.9)
    assert positive.tolist() == [False, False, False] and set(names) == {"Uninfected"}


def test_a_model_without_a_positive_class_calls_the_likeliest_class_and_finds_no_positive():
    names, positive = count.call_cells(np.array([[0.1, 0.6, 0.3]]), ["a", "b", "c"], None)
    assert names == ["b"] and not positive.any()


def test_the_decision_threshold_is_the_models_own_or_one_half():
    assert count.decision_threshold({}) == 0.5
    assert count.decision_threshold({"decision_threshold": 0.3}) == 0.3
    with pytest.raises(UserError):
        count.decision_threshold({"threshold": 1.5})


def test_warnings_for_few_cells_many_clumps_and_unread_images():
    assert count.field_warnings(count.Counts(80, 0, 20)) == []  # 20% is still fine
    assert "not single cells" in count.field_warnings(count.Counts(70, 0, 30))[0]
    assert count.sample_warnings(count.Counts(1000, 3, 0)) == []
    warnings = count.sample_warnings(count.Counts(999, 3, 500), skipped=2)
    assert len(warnings) == 3 and "999 red cells" in warnings[0] and "2 images could not be read" in warnings[2]


def test_a_sample_is_the_folder_or_what_the_group_pattern_picks():
    assert count.sample_of("/labs/slide7/field 3.png") == "/labs/slide7"
    assert count.sample_of("field.png") == "."
    assert count.sample_of("/x/P12_field3.jpg", r"^(P\d+)_") == "P12"
    assert count.sample_of("/x/P12_field3.jpg", r"P\d+") == "P12"
    assert count.sample_of("/x/other.jpg", r"^(P\d+)_").startswith("/x (name does not match")
    with pytest.raises(UserError, match="not a regular expression"):
        count.sample_of("/x/a.png", "(")
