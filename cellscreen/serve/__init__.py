"""Using a trained model: export, prediction over files and folders, the HTTP server.

The modules form one stack, bottom first; each imports only modules listed
before it:

- ``graph``: what every exported graph shares (input and output names, its
  description) and an onnxruntime session;
- ``inputs`` and ``outputs``: the files a prediction reads and the rows,
  journal and CSV/Parquet files it writes;
- ``exported_model`` and ``export``: a checkpoint written as ONNX, 8-bit ONNX
  or TorchScript (``export_model``), checked against PyTorch;
- ``runtime``: a loaded model on PyTorch or onnxruntime (``load_predictor``),
  exporting a graph a checkpoint lacks;
- ``distributed``: the rows of a prediction computed on a Ray cluster;
- ``predict``: ``predict_files`` and ``merge_predictions``;
- ``summary``: per-sample counts of a request's answers (share flagged with
  its interval, fields' parasitemia);
- ``fields``: a whole smear field screened in memory with the screen
  package's steps (overlay, counts, parasitemia);
- ``schema`` and ``access``: the shapes of the answers in the OpenAPI schema,
  and the bearer-token check;
- ``app``: the HTTP server and its page.

Nothing is imported here: importing ``runtime`` must not import PyTorch.
"""
