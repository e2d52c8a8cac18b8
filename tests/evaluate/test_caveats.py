"""Warnings in an evaluation report, in words a lab understands (issue 34)."""

from cellscreen.evaluate.caveats import evaluation_warnings


def result(confusion, *, roc_auc=0.95, n_groups=12, groups_known=True, positive="infected", temperature=None):
    metrics = {"confusion_matrix": confusion, "roc_auc": roc_auc}
    if temperature is not None:
        metrics["temperature"] = temperature
    return {"metrics": metrics, "classes": ["normal", "infected"], "positive_class": positive,
            "n_groups": n_groups, "groups_known": groups_known, "group_kind": "patient"}


def test_a_sound_evaluation_has_no_warning():
    assert evaluation_warnings(result([[55, 5], [4, 56]])) == []


def test_one_class_called_for_every_cell_is_a_degenerate_model():
    warnings = evaluation_warnings(result([[60, 0], [60, 0]], roc_auc=0.52, temperature=20.0))
    assert any("calls 100% of the cells normal, although 50% are" in w for w in warnings)
    assert any("ROC AUC 0.52 is close to chance" in w for w in warnings)
    assert any("temperature 20.0" in w for w in warnings)


def test_a_mostly_normal_sample_called_normal_is_not_degenerate():
    assert evaluation_warnings(result([[97, 0], [1, 2]])) == []


def test_too_few_patients_and_no_patient_id():
    assert any("only 2 patient(s)" in w for w in evaluation_warnings(result([[20, 1], [1, 20]], n_groups=2)))
    no_ids = evaluation_warnings(result([[20, 1], [1, 20]], n_groups=42, groups_known=False))
    assert any("No patient or slide id is known" in w and "too narrow" in w for w in no_ids)


def test_two_classes_without_a_positive_class():
    assert any("No positive class is known" in w for w in evaluation_warnings(result([[20, 1], [1, 20]],
                                                                                     positive=None)))
