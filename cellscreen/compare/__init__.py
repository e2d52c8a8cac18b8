"""Compare models and recipes on the same folds, with one report."""
