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
- ``app``: the HTTP server and its page.

Nothing is imported here: importing ``runtime`` must not import PyTorch.
"""
