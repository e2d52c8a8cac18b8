import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cellscreen.evaluate.metrics import bootstrap_intervals, compute_metrics, per_group_results

CLASSES = ["Uninfected", "Parasitized"]


def test_binary_metrics_match_hand_counts():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    p1 = np.array([0.9, 0.8, 0.3, 0.2, 0.1, 0.6, 0.4, 0.7])
    m = compute_metrics(y, np.c_[1 - p1, p1], classes=CLASSES, positive="Parasitized")
    # predictions: 1 1 0 0 0 1 0 1 -> TP 3, FN 1, TN 3, FP 1
    assert m["confusion_matrix"] == [[3, 1], [1, 3]]
    assert m["sensitivity"] == m["specificity"] == m["precision"] == m["accuracy"] == 0.75
    assert m["mcc"] == pytest.approx(0.5)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p1))


def test_positive_class_index_is_respected():
    y = np.array([0, 0, 1, 1])
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    as_declared = compute_metrics(y, proba, classes=["all", "hem"], positive="hem")
    swapped = compute_metrics(1 - y, proba[:, ::-1], classes=["hem", "all"], positive="hem")
    for name in ("sensitivity", "specificity", "roc_auc", "pr_auc"):
        assert as_declared[name] == pytest.approx(swapped[name])


def test_multiclass_has_per_class_and_macro():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    proba = rng.dirichlet(np.ones(4), 200)
    proba[np.arange(200), y] += 1.0
    proba /= proba.sum(1, keepdims=True)
    m = compute_metrics(y, proba, classes=list("ABCD"))
    assert m["accuracy"] == 1.0 and set(m["per_class"]) == set("ABCD")
    assert m["f1"] == pytest.approx(np.mean([c["f1"] for c in m["per_class"].values()]))


def test_single_class_sample_gives_nan_not_error():
    m = compute_metrics(np.array([1, 1]), np.array([[0.2, 0.8], [0.6, 0.4]]), classes=CLASSES, positive="Parasitized")
    assert np.isnan(m["roc_auc"]) and m["accuracy"] == 0.5


def test_bootstrap_resamples_groups_not_cells():
    rng = np.random.default_rng(1)
    groups = np.repeat([f"C{i}" for i in range(10)], 50)
    y = rng.integers(0, 2, 500)
    # five slides are predicted perfectly, five at chance: intervals must be wide
    p = np.where(np.isin(groups, [f"C{i}" for i in range(5)]), y * 0.8 + 0.1, rng.random(500))
    proba = np.c_[1 - p, p]
    by_group = bootstrap_intervals(y, proba, groups.tolist(), classes=CLASSES, positive="Parasitized", n_boot=200)
    by_cell = bootstrap_intervals(y, proba, [str(i) for i in range(500)], classes=CLASSES, positive="Parasitized",
                                  n_boot=200)
    width = lambda ci: ci["accuracy"][1] - ci["accuracy"][0]  # noqa: E731
    assert width(by_group) > 1.5 * width(by_cell)
    point = compute_metrics(y, proba, classes=CLASSES, positive="Parasitized")["accuracy"]
    assert by_group["accuracy"][0] < point < by_group["accuracy"][1]


def test_per_group_rows_sorted_by_errors():
    y = np.array([1, 1, 0, 0])
    proba = np.array([[0.1, 0.9], [0.8, 0.2], [0.9, 0.1], [0.9, 0.1]])
    rows = per_group_results(y, proba, ["C1", "C1", "C2", "C2"], classes=CLASSES, positive="Parasitized")
    assert [r["group"] for r in rows] == ["C1", "C2"] and rows[0]["errors"] == 1
    assert rows[0]["true_positive_fraction"] == 1.0 and rows[0]["predicted_positive_fraction"] == 0.5


@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("seed", range(6))
def test_each_bootstrap_resample_matches_compute_metrics_on_its_cells(n_classes, seed):
    """The vectorised resampling must give exactly what compute_metrics gives on the drawn cells: with one
    resample, the interval is that one value."""
    rng = np.random.default_rng(seed)
    groups = rng.choice([f"S{i}" for i in range(6)], 120)
    y = rng.integers(0, n_classes, 120)
    y[groups == "S0"] = 0  # a one-class slide
    if seed == 0:
        y[:] = 0  # one class only: the AUCs are undefined (NaN), the rest is not
    proba = np.round(rng.dirichlet(np.ones(n_classes), 120), 1)  # rounded: many tied scores
    proba[:, 0] += 1 - proba.sum(1)
    classes = [f"c{i}" for i in range(n_classes)]
    positive = "c1" if n_classes == 2 else None
    ci = bootstrap_intervals(y, proba, groups.tolist(), classes=classes, positive=positive, n_boot=1, seed=seed)
    unique = np.unique(groups)
    chosen = np.random.default_rng(seed).integers(0, len(unique), (1, len(unique)))[0]
    rows = np.concatenate([np.flatnonzero(groups == unique[g]) for g in chosen])
    expected = compute_metrics(y[rows], proba[rows], classes=classes, positive=positive)
    assert np.isnan(ci["roc_auc"]).all() == (seed == 0)
    for name, interval in ci.items():
        np.testing.assert_allclose(interval, [expected[name]] * 2, rtol=1e-9, atol=1e-12, err_msg=name)
