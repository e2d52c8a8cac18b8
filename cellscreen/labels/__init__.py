"""Finding and fixing wrong labels: relabel files (``relabel``), a ranked audit of suspect cells from
out-of-fold probabilities and confident learning (``audit``), and a local page to review the suspects one by
one (``review``), whose decisions become a relabel file again."""
