"""Screening whole smear fields: find the cells, then score the finding against annotations."""
