"""Commands that put a model to work: predict, merge, export, serve."""

from __future__ import annotations

import os
import sys

from cellscreen.cli.options import add_command, common_options, is_loopback, precision_option
from cellscreen.errors import UserError

__all__ = ["add_parsers"]

AUTO_BF16 = "; with bf16, --engine auto runs networks in PyTorch too"
TOKEN_VARIABLE = "CELLSCREEN_TOKEN"


def cmd_predict(args) -> None:
    from cellscreen.serve.predict import parse_shard, predict_files  # keeps start-up fast

    counts = predict_files(args.model, args.inputs, args.out, batch_size=args.batch_size, tta=args.tta,
                           overwrite=args.overwrite, resume=args.resume, shard=parse_shard(args.shard),
                           engine=args.engine, workers=args.workers, progress=not args.quiet,
                           ray_address=args.ray_address, precision=args.precision)
    resumed = f" (continued after {counts['resumed']:,} rows of the interrupted run)" if counts["resumed"] else ""
    print(f"predicted {counts['predicted']:,} image(s), skipped {counts['skipped']:,} (reasons in the file)"
          f"{resumed}: {args.out}")
    if not args.shard:  # a shard holds part of each sample: summarise the merged file
        print_samples(args)


def print_samples(args) -> None:
    """Per sample (patient/slide, or folder): cells, flagged and the flagged share with its 95% interval."""
    from pathlib import Path  # only here

    from cellscreen.serve.summary import format_summary, write_summary  # keeps start-up fast

    summaries = write_summary(args.out, args.model, group_regex=args.group_regex)
    if summaries:
        print(f"per sample, flagged at the model's decision threshold:\n{format_summary(summaries)}")
        out = Path(args.out)
        print(f"written: {out.with_name(out.stem + '.samples.csv')} and {out.with_name(out.name + '.json')}")


def cmd_merge(args) -> None:
    from cellscreen.serve.predict import merge_predictions  # keeps start-up fast

    counts = merge_predictions(args.parts, args.out, overwrite=args.overwrite)
    print(f"merged {len(args.parts)} shard(s): {counts['rows']:,} rows ({counts['predicted']:,} predicted, "
          f"{counts['skipped']:,} skipped): {args.out}")


def cmd_export(args) -> None:
    from cellscreen.serve.export import export_model  # keeps start-up fast

    report = export_model(args.model, args.out, fmt=args.format, check_data=args.check_data,
                          overwrite=args.overwrite)
    agreement = f", same class for {report.agreement:.2%}" if report.agreement is not None else ""
    print(f"parity with PyTorch: max probability difference {report.max_difference:.2e}{agreement} "
          f"on {report.checked_on}")
    print(f"written: {report.path} and {report.description}")


def _serving_token(args) -> str | None:
    """The token the service will ask for, or None; refuses to open a port beyond this machine without one."""
    token = args.token or os.environ.get(TOKEN_VARIABLE) or None
    if token is None and not is_loopback(args.host):
        if not args.insecure_no_token:
            raise UserError(f"--host {args.host} lets other machines use the service: give it a token (--token "
                            f"TOKEN or ${TOKEN_VARIABLE}), or serve it open with --insecure-no-token")
        print(f"cellscreen: WARNING: serving on {args.host} WITHOUT A TOKEN: anyone who can reach this port can "
              "use the model (--insecure-no-token)", file=sys.stderr, flush=True)
    return token


def cmd_serve(args) -> None:
    from cellscreen.serve.app import Limits, serve  # keeps start-up fast

    token = _serving_token(args)
    limits = Limits(max_files=args.max_files, max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                    max_pixels=args.max_pixels, decode_budget_bytes=int(args.decode_budget_mb * 1024 * 1024),
                    upload_budget_bytes=int(args.upload_budget_mb * 1024 * 1024), read_timeout=args.read_timeout)
    serve(args.model, host=args.host, port=args.port, engine=args.engine, limits=limits,
          max_batch=args.max_batch, log_level="warning" if args.quiet else "info", precision=args.precision,
          token=token)


def add_parsers(commands) -> None:
    """predict, merge, export and serve."""
    _add_predict(commands)

    p = add_command(commands, "merge", help="join the outputs of predict --shard i/N into one file", examples=[
        "cellscreen merge part0.csv part1.csv --out predictions.csv",
        "cellscreen merge part0.parquet part1.parquet part2.parquet --out predictions.parquet --overwrite"])
    common_options(p.add_argument_group("Common options"))
    group = p.add_argument_group("Shards and output")
    group.add_argument("parts", nargs="+", metavar="PART", help="the N shard outputs")
    group.add_argument("--out", required=True, metavar="FILE", help=".csv or .parquet")
    group.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=cmd_merge)

    p = add_command(commands, "export", help="export a model to ONNX or TorchScript, checked against PyTorch",
                    examples=[
                        "cellscreen export runs/m1 --out runs/m1.onnx",
                        "cellscreen export malaria --format onnx-int8 --out malaria.int8.onnx",
                        "cellscreen export runs/m1 --format torchscript --check-data ~/cells/my-slides "
                        "--out runs/m1.pt"])
    common_options(p.add_argument_group("Common options"))
    group = p.add_argument_group("Export parameters")
    group.add_argument("model", metavar="MODEL", help="run folder, model.json, or a bundled name (malaria)")
    group.add_argument("--format", choices=("onnx", "onnx-int8", "torchscript"), default="onnx",
                       help="onnx-int8: 8-bit weights and activations, calibrated on --check-data cells")
    group.add_argument("--check-data", metavar="PATH", help="cells for the parity check (default: the model's "
                       "dataset if present, else random pixels)")
    group = p.add_argument_group("Output")
    group.add_argument("--out", required=True, metavar="FILE", help="e.g. malaria.onnx (FILE.json describes it)")
    group.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(func=cmd_export)

    p = add_command(commands, "serve", help="an HTTP service and web page for a model", examples=[
        "cellscreen serve malaria                     # then open http://127.0.0.1:8000",
        "cellscreen serve runs/m1 --host 0.0.0.0 --port 8080 --engine int8 --token \"$(openssl rand -hex 16)\"",
        "cellscreen serve runs/m1.onnx --max-files 32 --max-upload-mb 8"])
    common_options(p.add_argument_group("Common options"))
    group = p.add_argument_group("Model")
    group.add_argument("model", metavar="MODEL", help="run folder, model.json, .onnx file, or a bundled name "
                       "(malaria)")
    group.add_argument("--engine", choices=("auto", "torch", "onnx", "int8"), default="auto",
                       help="what runs the model: auto (onnxruntime for networks, PyTorch for SVMs and "
                       "ensembles), PyTorch, its ONNX graph or its 8-bit graph")
    precision_option(group, AUTO_BF16)
    group = p.add_argument_group("Service")
    group.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    group.add_argument("--port", type=int, default=8000, help="TCP port to listen on")
    group.add_argument("--token", metavar="TOKEN", help=f"require 'Authorization: Bearer TOKEN' on every request "
                       f"but the page and /healthz (default: ${TOKEN_VARIABLE}); the page takes it as /?token=TOKEN. "
                       "Needed to listen beyond this machine")
    group.add_argument("--insecure-no-token", action="store_true", help="listen beyond this machine without a "
                       "token: anyone who reaches the port can use the model")
    group = p.add_argument_group("Limits")
    group.add_argument("--max-files", type=int, default=256, help="images per request")
    group.add_argument("--max-upload-mb", type=float, default=32.0, help="size of one request")
    group.add_argument("--max-pixels", type=int, default=16_000_000, help="pixels of one image")
    group.add_argument("--decode-budget-mb", type=float, default=512.0, help="memory the images being decoded "
                       "may take at once, across requests (others wait their turn; an image needing more is "
                       "refused): about 16 bytes per pixel, 24 with transparency")
    group.add_argument("--upload-budget-mb", type=float, default=256.0, help="request bodies held at once, across "
                       "requests (others wait up to a minute, then get 503 with Retry-After)")
    group.add_argument("--read-timeout", type=float, default=30.0, help="seconds an upload may pause before it "
                       "is cut off (408)")
    group.add_argument("--max-batch", type=int, default=128, help="images the model runs at once across requests")
    p.set_defaults(func=cmd_serve)


def _add_predict(commands) -> None:
    p = add_command(commands, "predict", help="predict the class of image files or folders into a CSV or "
                    "Parquet file", examples=[
                        "cellscreen predict malaria ~/cells --out predictions.csv",
                        "cellscreen predict runs/m1 ~/cells --shard 0/2 --out part0.parquet     "
                        "# then --shard 1/2, and merge",
                        "cellscreen predict runs/m1 ~/cells --engine int8 --workers 4 --resume --out predictions.csv"])
    common_options(p.add_argument_group("Common options"))
    group = p.add_argument_group("Model")
    group.add_argument("model", metavar="MODEL", help="run folder, model.json, .onnx file, or a bundled name "
                       "(malaria)")
    group.add_argument("--engine", choices=("auto", "torch", "onnx", "int8", "ray"), default="auto",
                       help="auto: onnxruntime for networks, PyTorch for SVMs and ensembles; int8: the model's "
                       "8-bit graph (model.int8.onnx, see export --format onnx-int8); ray: spread a network's "
                       "inference over a Ray cluster with Ray Data (pip install 'cellscreen[ray]')")
    group.add_argument("--ray-address", metavar="ADDRESS", help="with --engine ray: the cluster to run on, e.g. "
                       "auto or ray://head:10001 (default: $RAY_ADDRESS, else a local Ray instance); its workers "
                       "read the inputs by absolute path, so they must be on storage every node mounts at the "
                       "same path")
    group.add_argument("--batch-size", type=int, default=256, help="images the model runs at once")
    group.add_argument("--tta", action="store_true", help="average the 8 rotations/flips of each image")
    group.add_argument("--workers", type=int, default=None, help="decoding processes (default: one per core); an "
                       "onnxruntime model also runs in them, one thread each (0: everything in this process); "
                       "with --engine ray: inference actors (default: one per CPU of the cluster)")
    precision_option(group, AUTO_BF16)
    group = p.add_argument_group("Inputs and output")
    group.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    group.add_argument("--out", required=True, metavar="FILE", help="results, .csv or .parquet")
    group.add_argument("--shard", metavar="i/N", help="only this shard of the inputs (merge with `cellscreen merge`)")
    group.add_argument("--group-regex", metavar="REGEX", help="read the sample (patient/slide) id from file names "
                       "with this pattern, for the per-sample summary (default: the model's, else each file's folder)")
    group.add_argument("--resume", action="store_true", help="continue an interrupted run into the same --out")
    group.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=cmd_predict)
