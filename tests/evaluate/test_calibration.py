import numpy as np
import pytest

from cellscreen.engine.temperature import fit_temperature
from cellscreen.evaluate.reliability import brier_score, expected_calibration_error


def test_ece_and_brier_by_hand():
    y = np.array([0, 1, 1, 0])
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])
    # confidences 0.9, 0.8, 0.6, 0.7; correct, correct, wrong, correct; 15 bins put each in its own bin
    assert expected_calibration_error(y, proba) == pytest.approx((0.1 + 0.2 + 0.6 + 0.3) / 4)
    assert brier_score(y, proba) == pytest.approx((0.02 + 0.08 + 0.72 + 0.18) / 4)
    perfect = np.eye(2)[y]
    assert expected_calibration_error(y, perfect) == 0 and brier_score(y, perfect) == 0


@pytest.mark.parametrize("outputs", [1, 3])
def test_temperature_undoes_overconfidence(outputs):
    rng = np.random.default_rng(0)
    n = 4000
    classes = 2 if outputs == 1 else outputs
    calibrated = rng.normal(0, 1.5, (n, classes))  # labels drawn from these logits' softmax: calibrated
    p = np.exp(calibrated) / np.exp(calibrated).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(classes, p=row) for row in p])
    logits = 4 * (calibrated[:, 1:] - calibrated[:, :1] if outputs == 1 else calibrated)  # four times too sure
    temperature, before, after = fit_temperature(logits, y)
    assert 3 < temperature < 5 and after < before
