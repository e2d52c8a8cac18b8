"""The HTTP service: ``POST /v1/predict``, ``GET /v1/model``, ``GET /healthz`` and the web page at ``/``.

Uploads stay in memory: the request body is counted as it arrives and cut
off with ``413`` past ``Limits.max_upload_bytes``, and the multipart parser
is told never to spill to disk.  Every image is checked before any is
predicted; a request with a bad one gets a ``4xx`` answer naming each bad
file and why (the page then sends the good ones again), and the server goes
on serving.

Images are decoded under a memory budget shared by all requests, and the
body must keep arriving (``cellscreen.serve.limits``); a client that hangs up
mid-upload is one line in the log.  With a token (``create_app(token=...)``)
every answer but the page and ``/healthz`` needs ``Authorization: Bearer
TOKEN``.

Images from requests that arrive together are predicted together: a
``MicroBatcher`` gathers them for a few milliseconds into one batch.  Whole smear fields are screened
cell by cell (``cellscreen.serve.fields``), and each answer is summed per sample (``summary``).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import io
import json
import logging
import threading
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from cellscreen import __version__
from cellscreen.data.images import ImageReadError, prepare_bytes
from cellscreen.engine.threshold import predicted_classes
from cellscreen.errors import UserError
from cellscreen.serve import fields
from cellscreen.serve.access import OPEN_PATHS, HideToken, TokenRequired
from cellscreen.serve.batching import MicroBatcher
from cellscreen.serve.limits import MB, Limits, MemoryBudget, image_cost, return_freed_memory
from cellscreen.serve.runtime import Predictor, load_predictor
from cellscreen.serve.schema import ERROR, ERROR_OR_INVALID, RESULTS, json_answer
from cellscreen.serve.summary import model_description, summarise_uploads, validation_card

__all__ = ["Limits", "MicroBatcher", "HideToken", "OPEN_PATHS", "create_app", "serve"]

STATIC = Path(__file__).with_name("static")
# Decoded bytes since the last time freed memory was handed back, past which an idle server hands it back
_TRIM_AFTER_BYTES = 64 * MB

log = logging.getLogger("cellscreen.serve")


class _BodyTooLarge(Exception):
    pass


class _BodyStalled(Exception):
    pass


class _InMemoryParser(MultiPartParser):
    """Starlette's parser, with every uploaded file kept in memory (the body size is already bounded)."""

    spool_max_size = 2**62


def _error(status: int, message: str, files: list[dict] | None = None, headers: dict | None = None) -> HTTPException:
    return HTTPException(status_code=status, detail={"error": message, "files": files or []}, headers=headers)


async def _read_form(request: Request, limits: Limits):
    """The multipart form, with the body size and file count enforced while it streams in."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise _error(415, "send the images as multipart/form-data in the field 'files'")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limits.max_upload_bytes:
        raise _error(413, f"request of {int(declared):,} bytes is over the {limits.max_upload_bytes:,}-byte limit")

    received = 0

    async def counted():
        nonlocal received
        chunks = aiter(request.stream())
        while True:
            try:
                chunk = await asyncio.wait_for(anext(chunks), limits.read_timeout)
            except StopAsyncIteration:
                return
            except asyncio.TimeoutError:
                raise _BodyStalled from None
            received += len(chunk)
            if received > limits.max_upload_bytes:
                raise _BodyTooLarge
            yield chunk

    parser = _InMemoryParser(request.headers, counted(), max_files=limits.max_files, max_fields=16)
    try:
        return await parser.parse()
    except _BodyTooLarge:
        raise _error(413, f"request is over the {limits.max_upload_bytes:,}-byte limit") from None
    except _BodyStalled:
        raise _error(408, f"the upload stalled: nothing arrived for {limits.read_timeout:g} seconds",
                     headers={"Connection": "close"}) from None
    except ClientDisconnect:
        log.warning("cellscreen: %s hung up after sending %s of the upload's bytes; nothing predicted",
                    _client(request), f"{received:,}")
        raise _error(400, "the client closed the connection before the upload ended") from None
    except MultiPartException as exc:
        if "Too many files" in exc.message:
            raise _error(413, f"too many files: at most {limits.max_files} per request") from None
        raise _error(400, f"malformed multipart body: {exc.message}") from None


def _client(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "a client"


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


def _over_budget(cost: int, budget: MemoryBudget) -> str:
    return (f"image too large to decode here: it needs about {cost / MB:,.0f} MB, over the {budget.total / MB:,.0f} "
            "MB this server decodes at once")


def create_app(model: str | Path | Predictor, *, engine: str = "auto", limits: Limits | None = None,
               max_batch: int = 128, precision: str = "32", token: str | None = None) -> FastAPI:
    """The service for one model (anything ``load_predictor`` takes, or a loaded predictor); ``precision``:
    what a model run in PyTorch computes in (``load_predictor``); ``token``: when given, what every request
    but the page and ``/healthz`` must carry as ``Authorization: Bearer TOKEN``."""
    predictor = (model if isinstance(model, Predictor)
                 else load_predictor(model, engine=engine, precision=precision))
    limits = limits or Limits()
    batcher = MicroBatcher(predictor.predict, max_batch=max_batch)
    budget = MemoryBudget(limits.decode_budget_bytes)
    upload_budget = MemoryBudget(limits.upload_budget_bytes)
    # requests being answered, and bytes decoded since freed memory was last handed back
    traffic = {"requests": 0, "decoded": 0}
    cam_model = None
    if predictor.info()["gradcam"]:
        cam_model = copy.deepcopy(predictor.torch_model)  # never shares hooks with the predicting model
    # Grad-CAM's library is imported by the first request that asks for a map (seconds), not at start: it
    # would hold about 245 MB from the start in every server, most of which never draws a map
    cam_lock = threading.Lock()
    field_side, no_fields = fields.field_min_side(predictor.description), fields.field_refusal(predictor.description)
    try:  # an exported graph's description lacks the training figures its checkpoint's holds
        described = model_description(predictor.source) if predictor.source else {}
    except (UserError, OSError, ValueError):
        described = {}
    validation = validation_card({**described, **predictor.description}, predictor.source)
    summarise_uploads([{"path": "a.png", "kind": "cell", "flagged": False}])  # SciPy imported now, not in a request

    @asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="cellscreen", version=__version__, lifespan=lifespan,
                  description="Screen blood-cell images and whole smear fields with a trained cellscreen model.")
    app.state.predictor, app.state.batcher, app.state.limits = predictor, batcher, limits
    app.state.budget, app.state.upload_budget = budget, upload_budget
    if token:
        app.add_middleware(TokenRequired, token=token)

    def decode_group(group: list[tuple[int, str, bytes]]) -> list:
        """Each image of ``group`` prepared, or the reason it cannot be used."""
        prepared = []
        for index, name, blob in group:
            try:
                prepared.append(_prepare(blob, predictor, limits))
            except ImageReadError as exc:
                prepared.append({"index": index, "filename": name, "reason": str(exc), "status": _status_of(str(exc))})
        return prepared

    async def decode_all(request: Request, names: list[str], blobs: list[bytes],
                         indexes: list[int]) -> tuple[list[np.ndarray], list[dict]]:
        """The prepared images and the bad files (by their ``indexes`` in the request), decoded a group at a time
        under the shared budget; a client that has hung up meanwhile is not worked for any longer."""
        costs = await run_in_threadpool(lambda: [image_cost(blob, max_pixels=limits.max_pixels) for blob in blobs])
        images, bad, group, group_cost = [], [], [], 0
        pending = list(zip(indexes, zip(names, blobs, costs)))
        for position, (index, (name, blob, cost)) in enumerate(pending):
            if cost > budget.total:
                bad.append({"index": index, "filename": name, "reason": _over_budget(cost, budget), "status": 413})
            else:
                group.append((index, name, blob))
                group_cost += cost
            following = pending[position + 1][1][2] if position + 1 < len(pending) else None
            if group and (following is None or group_cost + following > budget.total // 4):
                await budget.acquire(group_cost)
                try:
                    await still_wanted(request)
                    for result in await run_in_threadpool(decode_group, group):
                        (bad if isinstance(result, dict) else images).append(result)
                finally:
                    budget.release(group_cost)
                traffic["decoded"] += group_cost
                group, group_cost = [], 0
        bad.sort(key=lambda b: b["index"])
        return images, bad

    async def still_wanted(request: Request) -> None:
        if await request.is_disconnected():
            log.warning("cellscreen: %s hung up before its images were decoded; nothing predicted", _client(request))
            raise _error(400, "the client closed the connection before its images were decoded")

    def after_request() -> None:
        traffic["requests"] -= 1
        if traffic["requests"] == 0 and traffic["decoded"] >= _TRIM_AFTER_BYTES:  # a burst is over
            traffic["decoded"] = 0
            asyncio.get_running_loop().run_in_executor(None, return_freed_memory)

    @app.get("/healthz", summary="Liveness: the model is loaded and the server answers")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/v1/model", summary="The loaded model: classes, preprocessing, provenance and request limits")
    async def model_info() -> dict:
        return {**predictor.info(), "validation": validation, "field_min_side": field_side,
                "limits": limits.to_dict(), "batching": {
                    "max_batch": batcher.max_batch, "batches": batcher.batches, "images": batcher.images}}

    @app.post(
        "/v1/predict",
        summary="Classify cell images, and screen whole smear fields",
        openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["files"],
            "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"},
                                     "minItems": 1, "maxItems": limits.max_files,
                                     "description": "cell images or whole fields (PNG, JPEG, TIFF, BMP, ...); "
                                                    "a folder in front of a file name names its sample"}}}}}}},
        responses={200: json_answer("one result per image, in the order sent", RESULTS),
                   400: json_answer("no files, a malformed body, or a group pattern that is not a regular expression",
                              ERROR),
                   413: json_answer("too many files, too many bytes, or an image with too many pixels", ERROR),
                   408: json_answer("the upload stalled for longer than the read timeout", ERROR),
                   415: json_answer("not multipart, or a file that is not a readable image", ERROR),
                   422: json_answer("files bad in different ways (each named in 'files'), or an invalid query "
                              "parameter", ERROR_OR_INVALID),
                   503: json_answer("busy: no room for the upload within the queue timeout (see Retry-After)", ERROR)},
    )
    async def predict(
            request: Request,
            gradcam: bool = Query(False, description="add a Grad-CAM overlay per cell image (PNG data URL)"),
            kind: Literal["auto", "cell", "field"] = Query("auto", description=(
                "what each image is: one cell, or a whole smear field whose cells are found, cut and counted; "
                "auto: a field when its shorter side is at least GET /v1/model's field_min_side")),
            group_regex: str | None = Query(None, max_length=200, description=(
                "the sample in each file name: the pattern's first group (default: the file's folder)")),
            cell_diameter: float | None = Query(None, ge=16, le=2000, description=(
                "red-cell diameter on the fields, in pixels, 16 or more (default: measured in each field)"))):
        try:
            summarise_uploads([], group_regex=group_regex)  # a bad pattern is refused before the upload
        except ValueError as exc:
            raise _error(400, str(exc)) from None
        if gradcam and cam_model is None:
            raise _error(400, "Grad-CAM needs the PyTorch network: serve a checkpoint or run folder, not an ONNX "
                              "file or an SVM/ensemble")
        traffic["requests"] += 1
        try:
            declared = request.headers.get("content-length", "")
            body = min(int(declared) if declared.isdigit() else limits.max_upload_bytes, limits.max_upload_bytes,
                       upload_budget.total)
            try:
                await asyncio.wait_for(upload_budget.acquire(body), limits.queue_timeout)
            except asyncio.TimeoutError:
                raise _error(503, f"the server is busy with other uploads (waited {limits.queue_timeout:g} s); try "
                                  "again later", headers={"Retry-After": "30"}) from None
            try:
                return await answer(request, gradcam, kind, group_regex, cell_diameter)
            finally:
                upload_budget.release(body)
        finally:
            after_request()

    async def answer(request: Request, gradcam: bool, kind: str, group_regex: str | None,
                     cell_diameter: float | None) -> dict:
        form = await _read_form(request, limits)
        try:
            uploads = [item for item in form.getlist("files") if not isinstance(item, str)]
            if not uploads:
                raise _error(400, "no images: send them in the multipart field 'files'")
            names = [upload.filename or f"file{k}" for k, upload in enumerate(uploads)]
            blobs = []
            for upload in uploads:  # each file's buffer let go once read: the body is never held twice
                blobs.append(await upload.read())
                await upload.close()
        finally:
            await form.close()

        sizes = await run_in_threadpool(lambda: [fields.image_size(blob) for blob in blobs])
        kinds = [fields.kind_of(size, kind, field_side) for size in sizes]
        at = [k for k, sort in enumerate(kinds) if sort == "cell"]
        todo = [(k, names[k], blobs[k], sizes[k]) for k, sort in enumerate(kinds) if sort == "field"]
        images, bad = await decode_all(request, [names[k] for k in at], [blobs[k] for k in at], at)
        del blobs
        bad += fields.field_problems(todo, max_pixels=limits.max_pixels, budget_bytes=budget.total,
                                     refusal=no_fields)
        screened: dict[int, dict] = {}
        if not bad and todo:
            screened, bad = await fields.screen_fields(todo, predictor, budget, max_pixels=limits.max_pixels,
                                                       cell_diameter=cell_diameter,
                                                       still_wanted=lambda: still_wanted(request))
            traffic["decoded"] += sum(fields.field_cost(size, blob) for _, _, blob, size in todo)
        del todo
        if bad:
            bad.sort(key=lambda b: b["index"])
            status = max(b["status"] for b in bad) if len({b["status"] for b in bad}) == 1 else 422
            raise _error(status, f"{len(bad)} of {len(names)} file(s) cannot be used; nothing was predicted",
                         [{key: b[key] for key in ("index", "filename", "reason")} for b in bad])
        proba = await batcher.submit(np.stack(images)) if images else np.zeros((0, len(predictor.classes)))
        classes, positive = predictor.classes, predictor.positive_class
        results = []
        called = predicted_classes(proba, classes, positive, predictor.decision_threshold)  # at its threshold
        for name, p, k in zip([names[k] for k in at], proba, called):
            label = classes[int(k)]
            results.append({"filename": name, "kind": "cell", "class": label, "probability": float(p[k]),
                            "probabilities": {c: float(v) for c, v in zip(classes, p)},
                            "flagged": positive is not None and label == positive})
        if gradcam:
            cams = await run_in_threadpool(lambda: [
                _cam_png(cam_model, cam_lock, picture, int(p.argmax())) for picture, p in zip(images, proba)])
            for result, cam in zip(results, cams):
                result["gradcam"] = cam
        flagged = sum(r["flagged"] for r in results)
        summary = {"cells": len(results), "flagged": flagged, "positive_class": positive,
                   "flagged_fraction": flagged / len(results) if results else None}
        cells = iter(results)
        results = [next(cells) if sort == "cell" else screened[k] for k, sort in enumerate(kinds)]
        samples = await run_in_threadpool(summarise_uploads, [{"path": r["filename"], **(
            {"kind": "cell", "flagged": r["flagged"]} if r["kind"] == "cell" else {"kind": "field", **r["counts"]})}
            for r in results], group_regex=group_regex)
        return {"model": predictor.description.get("model"), "results": results, "summary": summary,
                "samples": samples}

    @app.post("/v1/samples", include_in_schema=False)  # the page's per-sample table, over all its requests
    async def samples(request: Request) -> dict:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limits.max_upload_bytes:
                raise _error(413, f"request is over the {limits.max_upload_bytes:,}-byte limit")
        try:
            asked = json.loads(body)
            if not isinstance(asked, dict):
                raise ValueError("send a JSON object: {\"uploads\": [...], \"group_regex\": null}")
            return {"samples": await run_in_threadpool(summarise_uploads, asked.get("uploads"),
                                                       group_regex=asked.get("group_regex"))}
        except ValueError as exc:  # json's errors are ValueErrors too
            raise _error(400, str(exc)) from None

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/static/{name}", include_in_schema=False)
    async def page_part(name: Literal["page.css", "text.js", "page.js"]):
        return FileResponse(STATIC / name, media_type="text/css" if name.endswith(".css") else "text/javascript")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):  # keep serving; say what happened
        return JSONResponse(status_code=500, content={"detail": {"error": f"{type(exc).__name__}: {exc}",
                                                                 "files": []}})

    return app


def serve(model, *, host: str = "127.0.0.1", port: int = 8000, engine: str = "auto", limits: Limits | None = None,
          max_batch: int = 128, log_level: str = "info", precision: str = "32", token: str | None = None) -> None:
    """Run the service with uvicorn until interrupted (``token``: see ``create_app``)."""
    import uvicorn  # keeps start-up fast: only running the server needs it, not create_app

    app = create_app(model, engine=engine, limits=limits, max_batch=max_batch, precision=precision, token=token)
    info = app.state.predictor.info()
    access = "; every request but the page and /healthz needs the token" if token else ""
    print(f"cellscreen: serving {info['model']} ({info['engine']}) on http://{host}:{port}/  "
          f"(API docs: http://{host}:{port}/docs{access})", flush=True)
    logging.getLogger("uvicorn.access").addFilter(HideToken())
    uvicorn.run(app, host=host, port=port, log_level=log_level)
