"""Evaluation: metrics (pure functions) and reports.

The metrics are named here; ``evaluate.run.evaluate_checkpoint`` (which loads
a model, so imports PyTorch) and ``evaluate.report`` (files and figures) are
imported from their modules.
"""

from cellscreen.evaluate.metrics import SCALAR_METRICS, bootstrap_intervals, compute_metrics, per_group_results
from cellscreen.evaluate.reliability import brier_score, expected_calibration_error, reliability_bins

__all__ = ["SCALAR_METRICS", "bootstrap_intervals", "brier_score", "compute_metrics", "expected_calibration_error",
           "per_group_results", "reliability_bins"]
