"""Screening whole smear fields: find every cell, cut and classify the red ones, count per sample.

``detect.find_cells`` finds the red and white cells of a field (classical, no
training); ``annotations`` reads point (Chula) and YOLO box labels, and
``score`` matches found cells to them one to one for precision, recall, F1 and
count error. The package's own import stays light: each module is imported
where it is used, so that the command line starts fast.
"""
