"""What makes an evaluation's figures less sure than they look, said in words a lab understands.

``evaluation_warnings(result)`` reads an evaluation's result (the dict ``evaluate`` writes into
``metrics.json``) and returns one sentence per problem: a model that calls (nearly) every cell one class or
ranks cells no better than chance, probabilities flattened by a large temperature, too few patients or slides
for the intervals to mean much, intervals over cells because no patient id is known, and sensitivity that is
an average over classes because no positive class is known.
"""

from __future__ import annotations

import math

from cellscreen.data.splits import MIN_GROUPS

__all__ = ["evaluation_warnings", "ONE_CLASS_SHARE", "CHANCE_AUC", "FLAT_TEMPERATURE"]

ONE_CLASS_SHARE = 0.95  # a model calling at least this share of cells one class, which is much rarer in truth
CHANCE_AUC = 0.6  # below this ROC AUC a model ranks cells little better than a coin
FLAT_TEMPERATURE = 5.0  # a fitted temperature above this squashes every probability towards the class shares


def evaluation_warnings(result: dict) -> list[str]:
    """One plain sentence per reason to distrust the figures of ``result``; empty if there is none."""
    m, classes = result["metrics"], result["classes"]
    warnings = []
    predicted = [sum(column) for column in zip(*m["confusion_matrix"])]
    actual = [sum(row) for row in m["confusion_matrix"]]
    cells = sum(actual)
    if cells:
        top = max(range(len(classes)), key=lambda i: predicted[i])
        share, true_share = predicted[top] / cells, actual[top] / cells
        if share >= ONE_CLASS_SHARE and true_share <= ONE_CLASS_SHARE - 0.1:
            warnings.append(
                f"The model calls {share:.0%} of the cells {classes[top]}, although {true_share:.0%} are: it has "
                "not learned to tell the classes apart. Do not use it; train longer or on more cells.")
    auc = m.get("roc_auc")
    if auc is not None and not math.isnan(auc) and auc < CHANCE_AUC:
        warnings.append(f"ROC AUC {auc:.2f} is close to chance (0.5): the model's probabilities hardly rank "
                        "the cells of one class above the other's.")
    temperature = m.get("temperature", 1.0)
    if temperature > FLAT_TEMPERATURE:
        warnings.append(f"The calibration (temperature {temperature:.1f}) flattened every probability towards "
                        "the share of each class: a low ECE then says little, as the model is unsure of every cell.")
    kind = result.get("group_kind", "group")
    if not result.get("groups_known", True):
        warnings.append("No patient or slide id is known (pass --group-regex, e.g. '^(P\\d+)_', to split): the "
                        "95% intervals treat every cell as independent, but cells of one patient are alike, so "
                        "the intervals are too narrow.")
    elif result.get("n_groups", MIN_GROUPS) < MIN_GROUPS:
        warnings.append(f"These cells come from only {result['n_groups']} {kind}(s): the figures, and their 95% "
                        f"intervals, rest on too few {kind}s to mean much. Test on more {kind}s, or use k folds "
                        "(`cellscreen split --method kfold`) so that every one is tested once.")
    if len(classes) == 2 and not result.get("positive_class"):
        warnings.append("No positive class is known: sensitivity and specificity are averages over both classes. "
                        "Pass --positive CLASS (to split or train) to have them for the finding.")
    return warnings
