"""The HTTP service: ``POST /v1/predict``, ``GET /v1/model``, ``GET /healthz`` and the web page at ``/``.

Uploads stay in memory: the request body is counted as it arrives and cut
off with ``413`` past ``Limits.max_upload_bytes``, and the multipart parser
is told never to spill to disk.  Every image is checked before any is
predicted; a request with a bad one gets a ``4xx`` answer naming each bad
file and why (the page then sends the good ones again), and the server goes
on serving.

Images from requests that arrive together are predicted together: a
``MicroBatcher`` gathers them for a few milliseconds into one batch.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import dataclasses
import io
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.formparsers import MultiPartException, MultiPartParser

from cellscreen import __version__
from cellscreen.data.images import ImageReadError, prepare_bytes
from cellscreen.serve.runtime import Predictor, load_predictor

__all__ = ["Limits", "MicroBatcher", "create_app", "serve"]

STATIC = Path(__file__).with_name("static")


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one request may carry; anything over is refused with a 4xx answer."""

    max_files: int = 256
    max_upload_bytes: int = 32 * 1024 * 1024  # the whole request body
    max_pixels: int = 16_000_000  # one image, checked from its header before decoding

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class _BodyTooLarge(Exception):
    pass


class _InMemoryParser(MultiPartParser):
    """Starlette's parser, with every uploaded file kept in memory (the body size is already bounded)."""

    spool_max_size = 2**62


class MicroBatcher:
    """Runs ``fn`` on the images of requests that arrive within ``max_wait`` seconds of each other, together."""

    def __init__(self, fn, *, max_batch: int = 128, max_wait: float = 0.004):
        self.fn, self.max_batch, self.max_wait = fn, max_batch, max_wait
        self.batches = self.images = 0
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def submit(self, images: np.ndarray) -> np.ndarray:
        # Started by the app's lifespan; a server that runs none (an app mounted inside another, or
        # ``--lifespan off``) gets it started here, in the loop that serves the request.
        if self._task is None or self._task.done() or self._loop is not asyncio.get_running_loop():
            await self.start()
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((images, future))
        return await future

    async def _run(self) -> None:
        while True:
            items = [await self._queue.get()]
            count = len(items[0][0])
            deadline = time.monotonic() + self.max_wait
            while count < self.max_batch:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), timeout)
                except asyncio.TimeoutError:
                    break
                items.append(item)
                count += len(item[0])
            try:
                result = await run_in_threadpool(self.fn, np.concatenate([images for images, _ in items]))
            except Exception as exc:  # hand the failure to every waiting request; keep serving
                for _, future in items:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.batches += 1
            self.images += count
            start = 0
            for images, future in items:
                if not future.done():
                    future.set_result(result[start:start + len(images)])
                start += len(images)


# The answers' shapes, for the OpenAPI schema (clients and the schema-driven fuzz test read them).
_DETAIL = {"type": "object", "required": ["error", "files"], "properties": {
    "error": {"type": "string"},
    "files": {"type": "array", "description": "each file that cannot be used, by its position in the request",
              "items": {"type": "object", "required": ["index", "filename", "reason"], "properties": {
                  "index": {"type": "integer"}, "filename": {"type": "string"}, "reason": {"type": "string"}}}}}}
_ERROR = {"type": "object", "required": ["detail"], "properties": {"detail": _DETAIL}}
_ERROR_OR_INVALID = {"type": "object", "required": ["detail"], "properties": {"detail": {"anyOf": [
    _DETAIL, {"type": "array", "items": {"type": "object"}, "description": "FastAPI's parameter validation"}]}}}
_RESULTS = {"type": "object", "required": ["model", "results", "summary"], "properties": {
    "model": {"type": ["string", "null"]},
    "results": {"type": "array", "items": {"type": "object", "required": [
        "filename", "class", "probability", "probabilities", "flagged"], "properties": {
        "filename": {"type": "string"}, "class": {"type": "string"}, "probability": {"type": "number"},
        "probabilities": {"type": "object", "additionalProperties": {"type": "number"}},
        "flagged": {"type": "boolean"}, "gradcam": {"type": "string", "description": "PNG data URL"}}}},
    "summary": {"type": "object", "required": ["cells", "flagged", "positive_class", "flagged_fraction"],
                "properties": {"cells": {"type": "integer"}, "flagged": {"type": "integer"},
                               "positive_class": {"type": ["string", "null"]},
                               "flagged_fraction": {"type": "number"}}}}}


def _json(description: str, schema: dict) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(status: int, message: str, files: list[dict] | None = None) -> HTTPException:
    return HTTPException(status_code=status, detail={"error": message, "files": files or []})


async def _read_form(request: Request, limits: Limits):
    """The multipart form, with the body size and file count enforced while it streams in."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise _error(415, "send the images as multipart/form-data in the field 'files'")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limits.max_upload_bytes:
        raise _error(413, f"request of {int(declared):,} bytes is over the {limits.max_upload_bytes:,}-byte limit")

    async def counted():
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > limits.max_upload_bytes:
                raise _BodyTooLarge
            yield chunk

    parser = _InMemoryParser(request.headers, counted(), max_files=limits.max_files, max_fields=16)
    try:
        return await parser.parse()
    except _BodyTooLarge:
        raise _error(413, f"request is over the {limits.max_upload_bytes:,}-byte limit") from None
    except MultiPartException as exc:
        if "Too many files" in exc.message:
            raise _error(413, f"too many files: at most {limits.max_files} per request") from None
        raise _error(400, f"malformed multipart body: {exc.message}") from None


def _prepare(data: bytes, predictor: Predictor, limits: Limits) -> np.ndarray:
    return prepare_bytes(data, size=predictor.input_size, crop=predictor.border_crop,
                         interpolation=predictor.interpolation, max_pixels=limits.max_pixels)


def _status_of(reason: str) -> int:
    return 413 if "too large" in reason else 415


def _cam_png(model, lock: threading.Lock, picture: np.ndarray, target: int) -> str:
    """Grad-CAM overlay of one prepared cell, as a data URL."""
    # keeps start-up fast: PyTorch, only for Grad-CAM (a model on onnxruntime predicts without it)
    import torch

    from cellscreen.engine.inference import normalise
    from cellscreen.explain import cam_overlay

    x = normalise(torch.from_numpy(np.array(picture[None])).permute(0, 3, 1, 2), model.data_config)
    with lock:  # Grad-CAM hooks the model; one at a time
        overlay = cam_overlay(model, x, picture, target)
    if overlay.width < 192:  # large enough to see on a page
        overlay = overlay.resize((192, 192 * overlay.height // overlay.width), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    overlay.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def create_app(model: str | Path | Predictor, *, engine: str = "auto", limits: Limits | None = None,
               max_batch: int = 128, precision: str = "32") -> FastAPI:
    """The service for one model (anything ``load_predictor`` takes, or a loaded predictor); ``precision``:
    what a model run in PyTorch computes in (``load_predictor``)."""
    predictor = (model if isinstance(model, Predictor)
                 else load_predictor(model, engine=engine, precision=precision))
    limits = limits or Limits()
    batcher = MicroBatcher(predictor.predict, max_batch=max_batch)
    cam_model = None
    if predictor.info()["gradcam"]:
        cam_model = copy.deepcopy(predictor.torch_model)  # never shares hooks with the predicting model
    cam_lock = threading.Lock()

    @asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="cellscreen", version=__version__, lifespan=lifespan,
                  description="Screen single blood-cell images with a trained cellscreen model.")
    app.state.predictor, app.state.batcher, app.state.limits = predictor, batcher, limits

    @app.get("/healthz", summary="Liveness: the model is loaded and the server answers")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/v1/model", summary="The loaded model: classes, preprocessing, provenance and request limits")
    async def model_info() -> dict:
        return {**predictor.info(), "limits": limits.to_dict(), "batching": {
            "max_batch": batcher.max_batch, "batches": batcher.batches, "images": batcher.images}}

    @app.post(
        "/v1/predict",
        summary="Classify one or many cell images",
        openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["files"],
            "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"},
                                     "minItems": 1, "maxItems": limits.max_files,
                                     "description": "cell images (PNG, JPEG, TIFF, BMP, ...)"}}}}}}},
        responses={200: _json("one result per image, in the order sent", _RESULTS),
                   400: _json("no files, or a malformed body", _ERROR),
                   413: _json("too many files, too many bytes, or an image with too many pixels", _ERROR),
                   415: _json("not multipart, or a file that is not a readable image", _ERROR),
                   422: _json("files bad in different ways (each named in 'files'), or an invalid query "
                              "parameter", _ERROR_OR_INVALID)},
    )
    async def predict(request: Request, gradcam: bool = Query(False, description="add a Grad-CAM overlay "
                                                                                "per image (PNG data URL)")):
        if gradcam and cam_model is None:
            raise _error(400, "Grad-CAM needs the PyTorch network: serve a checkpoint or run folder, not an ONNX "
                              "file or an SVM/ensemble")
        form = await _read_form(request, limits)
        try:
            uploads = [item for item in form.getlist("files") if not isinstance(item, str)]
            if not uploads:
                raise _error(400, "no images: send them in the multipart field 'files'")
            names = [upload.filename or f"file{k}" for k, upload in enumerate(uploads)]
            blobs = [await upload.read() for upload in uploads]
        finally:
            await form.close()

        def decode_all():
            images, bad = [], []
            for index, (name, blob) in enumerate(zip(names, blobs)):
                try:
                    images.append(_prepare(blob, predictor, limits))
                except ImageReadError as exc:
                    bad.append({"index": index, "filename": name, "reason": str(exc), "status": _status_of(str(exc))})
            return images, bad

        images, bad = await run_in_threadpool(decode_all)
        if bad:
            status = max(b["status"] for b in bad) if len({b["status"] for b in bad}) == 1 else 422
            raise _error(status, f"{len(bad)} of {len(names)} file(s) cannot be used; nothing was predicted",
                         [{key: b[key] for key in ("index", "filename", "reason")} for b in bad])
        proba = await batcher.submit(np.stack(images))
        classes, positive = predictor.classes, predictor.positive_class
        results = []
        for name, p in zip(names, proba):
            label = classes[int(p.argmax())]
            results.append({"filename": name, "class": label, "probability": float(p.max()),
                            "probabilities": {c: float(v) for c, v in zip(classes, p)},
                            "flagged": positive is not None and label == positive})
        if gradcam:
            cams = await run_in_threadpool(lambda: [
                _cam_png(cam_model, cam_lock, picture, int(p.argmax())) for picture, p in zip(images, proba)])
            for result, cam in zip(results, cams):
                result["gradcam"] = cam
        flagged = sum(r["flagged"] for r in results)
        return {"model": predictor.description.get("model"), "results": results,
                "summary": {"cells": len(results), "flagged": flagged, "positive_class": positive,
                            "flagged_fraction": flagged / len(results)}}

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):  # keep serving; say what happened
        return JSONResponse(status_code=500, content={"detail": {"error": f"{type(exc).__name__}: {exc}",
                                                                 "files": []}})

    return app


def serve(model, *, host: str = "127.0.0.1", port: int = 8000, engine: str = "auto", limits: Limits | None = None,
          max_batch: int = 128, log_level: str = "info", precision: str = "32") -> None:
    """Run the service with uvicorn until interrupted."""
    import uvicorn  # keeps start-up fast: only running the server needs it, not create_app

    app = create_app(model, engine=engine, limits=limits, max_batch=max_batch, precision=precision)
    info = app.state.predictor.info()
    print(f"cellscreen: serving {info['model']} ({info['engine']}) on http://{host}:{port}/  "
          f"(API docs: http://{host}:{port}/docs)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
