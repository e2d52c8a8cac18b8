"""Evaluation: metrics (pure functions) and reports."""
