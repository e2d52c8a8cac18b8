"""Finding and fixing wrong labels.

- ``relabel``: relabel files (``path,label``; ``exclude`` leaves a cell out), ``load_relabels`` /
  ``apply_relabels``, and ``relabelled_index`` for any command given ``-d``, ``--data`` and ``--relabel``.
- ``audit``: ``run_label_audit`` (``cellscreen labels audit``) and ``audit_labels``: suspect cells ranked by
  cleanlab's confident learning on slide-disjoint out-of-fold probabilities (``oof``), with a report.
- ``review``: ``serve_review`` / ``review_app`` (``cellscreen labels review AUDIT``), a local page whose
  decisions go to an append-only log (``decisions``) and are exported as a relabel file.
"""
