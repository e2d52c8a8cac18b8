"""Training engine (Lightning), checkpoints and batched inference.

The public functions live in their modules; this file imports none of them,
because importing any ``cellscreen.engine`` module runs it first, and
``engine.paths`` must stay importable without PyTorch (``predict`` on
onnxruntime starts in a fraction of a second).

- ``engine.train.train``: train a model into a run folder;
  ``engine.svm.train_svm`` and ``engine.ensemble.make_ensemble`` make the
  other two kinds of checkpoint.
- ``engine.kinds.load_checkpoint``: load a checkpoint of any kind (network,
  SVM, ensemble); ``engine.checkpoint`` is the format underneath, with the
  registry of kinds (``register_kind``).
- ``engine.inference.predict_proba``: class probabilities for prepared pixels.
- ``engine.paths.resolve_checkpoint``: find a checkpoint's ``model.json``
  without PyTorch.
"""
