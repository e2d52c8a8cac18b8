"""The HTTP service: answers, limits, batching, and that it keeps serving after bad requests."""

import asyncio
import base64
import io
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from tests.badfiles import png_header_only
from tests.conftest import softened_copy


def _png(seed: int, size=(20, 20)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def client(trained_run):
    from fastapi.testclient import TestClient

    from cellscreen.serve.app import Limits, create_app

    app = create_app(trained_run.run, engine="onnx", limits=Limits(max_files=5, max_upload_bytes=4 * 1024 * 1024,
                                                                  max_pixels=250_000))
    with TestClient(app) as test_client:
        yield test_client


def _files(*blobs, name="cell{}.png"):
    return [("files", (name.format(k), blob, "image/png")) for k, blob in enumerate(blobs)]


def test_health_model_and_schema(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    info = client.get("/v1/model").json()
    assert info["classes"] == ["Uninfected", "Parasitized"] and info["engine"] == "onnx"
    assert info["limits"]["max_files"] == 5 and info["gradcam"] is True
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert body["schema"]["properties"]["files"]["type"] == "array"


def test_the_service_runs_a_model_in_bf16_when_asked(trained_run, learnable_cells, tmp_path):
    from fastapi.testclient import TestClient

    from cellscreen.errors import UserError
    from cellscreen.serve.app import create_app

    run = softened_copy(trained_run.run, tmp_path / "run", 500)  # probabilities that show how they were computed
    paths = [path for label in ("Parasitized", "Uninfected")
             for path in sorted((learnable_cells / label).iterdir())[:3]]
    files = [("files", (p.name, p.read_bytes(), "image/png")) for p in paths]
    got = {}
    for precision, engine in (("32", "torch"), ("bf16", "auto")):
        with TestClient(create_app(run, engine=engine, precision=precision)) as test_client:
            info = test_client.get("/v1/model").json()
            assert (info["engine"], info["precision"]) == ("torch", precision)
            answer = test_client.post("/v1/predict", files=files)
            assert answer.status_code == 200, answer.text
            got[precision] = np.array([r["probabilities"]["Parasitized"] for r in answer.json()["results"]])
    assert 0 < np.abs(got["bf16"] - got["32"]).max() < 0.05
    with pytest.raises(UserError, match="--engine onnx runs on onnxruntime"):
        create_app(run, engine="onnx", precision="bf16")


def test_predicts_many_images_like_the_command_line(client, trained_run, learnable_cells):
    from cellscreen.data.images import load_prepared
    from cellscreen.engine.checkpoint import load_checkpoint
    from cellscreen.engine.inference import predict_proba

    paths = sorted((learnable_cells / "Parasitized").iterdir())[:3] + sorted((learnable_cells / "Uninfected").iterdir())[:2]
    answer = client.post("/v1/predict", files=[("files", (p.name, p.read_bytes(), "image/png")) for p in paths])
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["filename"] for r in results] == [p.name for p in paths]
    expected = predict_proba(load_checkpoint(trained_run.run).model, np.stack([load_prepared(p, size=16) for p in paths]))
    got = np.array([[r["probabilities"]["Uninfected"], r["probabilities"]["Parasitized"]] for r in results])
    assert np.abs(got - expected).max() < 1e-4
    summary = answer.json()["summary"]
    assert summary["cells"] == 5 and summary["flagged"] == sum(r["class"] == "Parasitized" for r in results)


def test_gradcam_overlay_is_a_png(client, learnable_cells):
    path = sorted((learnable_cells / "Parasitized").iterdir())[0]
    answer = client.post("/v1/predict?gradcam=true", files=_files(path.read_bytes()))
    assert answer.status_code == 200, answer.text
    url = answer.json()["results"][0]["gradcam"]
    assert url.startswith("data:image/png;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size[0] >= 192


@pytest.mark.parametrize("case, status, phrase", [
    ("not_an_image", 415, "not an image"),
    ("bomb", 413, "too large"),
    ("too_many", 413, "at most 5"),
    ("too_big", 413, "byte limit"),
    ("too_big_streamed", 413, "byte limit"),
    ("no_files", 400, "no images"),
    ("not_multipart", 415, "multipart/form-data"),
    ("truncated", 415, "truncated"),
])
def test_bad_requests_get_a_clear_4xx_and_the_server_keeps_serving(client, case, status, phrase):
    good = _png(1)
    if case == "not_an_image":
        answer = client.post("/v1/predict", files=_files(good, b"<html>hello</html>"))
    elif case == "bomb":
        answer = client.post("/v1/predict", files=_files(png_header_only(30000, 30000)))
    elif case == "too_many":
        answer = client.post("/v1/predict", files=_files(*[good] * 6))
    elif case == "too_big":
        answer = client.post("/v1/predict", files=_files(b"\0" * (5 * 1024 * 1024)))
    elif case == "too_big_streamed":  # no Content-Length: counted as it arrives
        boundary = "xyz"
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.png\"\r\n"
                "Content-Type: image/png\r\n\r\n").encode()

        def body():
            yield head
            for _ in range(80):
                yield b"\0" * 65536
            yield f"\r\n--{boundary}--\r\n".encode()

        answer = client.post("/v1/predict", content=body(),
                             headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    elif case == "no_files":
        answer = client.post("/v1/predict", files={"other": (None, "1")})
    elif case == "not_multipart":
        answer = client.post("/v1/predict", json={"files": ["a.png"]})
    else:
        answer = client.post("/v1/predict", files=_files(good[: len(good) // 2]))
    assert answer.status_code == status, answer.text
    detail = answer.json()["detail"]
    assert phrase in (detail["error"] + " ".join(f["reason"] for f in detail["files"]))
    if case == "not_an_image":
        assert [(f["index"], f["filename"]) for f in detail["files"]] == [(1, "cell1.png")]
    assert client.post("/v1/predict", files=_files(good)).status_code == 200


def test_uploads_stay_in_memory(client, monkeypatch):
    """A 3 MB upload (over Starlette's 1 MB spooling threshold) never rolls over into a temporary file."""
    rolled = []
    monkeypatch.setattr(tempfile.SpooledTemporaryFile, "rollover", lambda self: rolled.append(self))
    big = _png(2, size=(1000, 1000))  # random pixels do not compress: about 3 MB
    assert len(big) > 2_500_000
    answer = client.post("/v1/predict", files=_files(big))
    assert answer.status_code == 413 and "pixel limit" in answer.text  # 1 MP is over this server's 250k
    assert rolled == []


def test_requests_arriving_together_are_predicted_in_one_batch():
    from cellscreen.serve.app import MicroBatcher

    sizes = []

    def model(images):
        sizes.append(len(images))
        return images.reshape(len(images), -1)[:, :2] * 2

    async def scenario():
        batcher = MicroBatcher(model, max_batch=64, max_wait=0.05)
        await batcher.start()
        inputs = [np.full((k % 3 + 1, 1, 1, 2), k) for k in range(12)]
        outputs = await asyncio.gather(*[batcher.submit(x) for x in inputs])
        await batcher.stop()
        return inputs, outputs

    inputs, outputs = asyncio.run(scenario())
    assert len(sizes) < 4 and sum(sizes) == sum(len(x) for x in inputs)
    for x, y in zip(inputs, outputs):
        assert y.shape == (len(x), 2) and (y == 2 * x[0, 0, 0, 0]).all()


def test_serve_command_answers_on_a_port(trained_run):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "cellscreen.cli", "serve", str(trained_run.run), "--port",
                               str(port), "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(3000):  # importing torch and exporting the ONNX model is slow on a loaded machine
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
                    assert answer.status == 200
                    break
            except OSError:
                assert server.poll() is None, server.stderr.read()
                time.sleep(0.1)
        else:
            pytest.fail("the server did not start within 5 minutes")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as answer:
            assert "<html" in answer.read().decode().lower()
    finally:
        server.terminate()
        server.wait(timeout=30)
