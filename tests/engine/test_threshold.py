"""The decision threshold chosen on the validation cells for an operating point (issue 34)."""

import numpy as np
import pytest

from cellscreen.config import load_config
from cellscreen.engine.threshold import choose_threshold, run_decision, threshold_of
from cellscreen.errors import UserError
from cellscreen.serve.graph import describe_meta

SCORES = np.array([0.95, 0.9, 0.8, 0.7, 0.3, 0.6, 0.4, 0.2, 0.1, 0.05])
IS_POSITIVE = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0], bool)


def test_sensitivity_target_takes_the_highest_threshold_that_reaches_it():
    chosen = choose_threshold(IS_POSITIVE, SCORES, "sensitivity=0.8")  # 4 of 5 positives: 0.95 0.9 0.8 0.7
    assert chosen["threshold"] == 0.7 and chosen["sensitivity"] == 0.8 and chosen["specificity"] == 1.0
    everyone = choose_threshold(IS_POSITIVE, SCORES, "sensitivity=0.98")
    assert everyone["threshold"] == 0.3 and everyone["sensitivity"] == 1.0 and everyone["specificity"] == 0.6


def test_specificity_target_keeps_that_share_of_negatives_below_the_threshold():
    chosen = choose_threshold(IS_POSITIVE, SCORES, "specificity=1")
    assert chosen["specificity"] == 1.0 and 0.6 < chosen["threshold"] < 0.61 and chosen["sensitivity"] == 0.8


@pytest.mark.parametrize("text", ["sensitivity", "recall=0.9", "sensitivity=1.5", "specificity=abc"])
def test_an_operating_point_is_checked_when_the_settings_are_read(text):
    with pytest.raises(UserError, match="operating point"):
        load_config(None, {"operating_point": text})


def test_threshold_and_operating_point_are_not_both_given():
    with pytest.raises(UserError, match="not both"):
        load_config(None, {"operating_point": "sensitivity=0.9", "decision_threshold": 0.3})


def test_a_given_threshold_is_stored_as_given():
    config = load_config(None, {"decision_threshold": 0.3})
    decision = run_decision(config, ["normal", "infected"], "infected", np.array([0, 1]), lambda: 1 / 0)
    assert decision["decision_threshold"] == 0.3 and decision["decision"]["set_by"] == "given"
    assert run_decision(load_config(None, {}), ["a", "b"], None, np.array([0]), lambda: 1 / 0) == {}


def test_the_exported_description_carries_the_threshold():
    meta = {"model": "m", "classes": ["normal", "infected"], "positive_class": "infected",
            "decision_threshold": 0.12, "data_config": {"input_size": 16, "mean": [0, 0, 0], "std": [1, 1, 1]}}
    described = describe_meta(meta, "onnx")
    assert described["decision_threshold"] == 0.12 and threshold_of(described) == 0.12
    assert threshold_of({}) == 0.5
