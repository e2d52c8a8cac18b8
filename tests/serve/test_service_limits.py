"""The service under hostile use: memory of large 16-bit images, the decoding budget shared by concurrent
requests, the access token, slow uploads and clients that hang up (issue 36, items 1 and 10)."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from tests.browser import chromium, needs_chromium

TOKEN = "s3cret-token"


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    (Image.fromarray(array, mode) if mode else Image.fromarray(array)).save(buffer, "PNG")
    return buffer.getvalue()


def _png16(width: int, height: int, value: int = 40000) -> bytes:
    """A 16-bit grayscale PNG: constant pixels compress to a few kilobytes whatever the size."""
    image = Image.new("I;16", (width, height), value)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _cell(seed: int) -> bytes:
    return _png(np.random.default_rng(seed).integers(0, 256, (24, 24, 3), dtype=np.uint8))


def _files(*blobs):
    return [("files", (f"cell{k}.png", blob, "image/png")) for k, blob in enumerate(blobs)]


@pytest.fixture(scope="module")
def predictor():
    from cellscreen.serve.runtime import load_predictor

    return load_predictor("malaria", engine="onnx")


# --- item 1: memory -------------------------------------------------------------------------------------------


def test_a_16bit_png_is_decoded_without_float64_copies():
    from cellscreen.data.images import decode_image

    data = _png16(4000, 4000)
    assert len(data) < 200_000
    tracemalloc.start()
    try:
        array, info = decode_image(data, max_pixels=16_000_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.mode.startswith("I;16") and array.shape == (4000, 4000, 3) and array.dtype == np.uint8
    assert int(array[0, 0, 0]) == round(40000 / 257)
    # one float64 copy of the image alone is 128 MB; the 8-bit RGB answer is 48 MB
    assert peak < 100 * 2**20, f"decoding took {peak / 2**20:.0f} MB of Python/NumPy memory"


def test_16bit_values_become_8bit_as_before():
    from cellscreen.data.images import decode_image

    values = np.array([[0, 128, 129, 385, 386, 1000, 40000, 65407, 65408, 65535]], dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode.startswith("I;16")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    array = decode_image(buffer.getvalue())[0]
    expected = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
    assert (array[..., 0] == expected).all() and (array[..., 2] == expected).all()


def test_the_decoding_budget_is_shared_by_concurrent_requests(predictor, monkeypatch):
    """Eight requests at once, each with images that take a third of the budget to decode: never more than the
    budget is being decoded at any moment, yet more than one image is decoded at once, and all are answered."""
    from fastapi.testclient import TestClient

    import cellscreen.serve.app as app_module
    from cellscreen.serve.app import Limits, create_app
    from cellscreen.serve.limits import decoding_cost

    blob = _png16(300, 300)
    cost = decoding_cost(300, 300, "I;16")
    app = create_app(predictor, limits=Limits(max_pixels=1_000_000, decode_budget_bytes=3 * cost + cost // 2))
    budget = app.state.budget
    seen, lock = [], threading.Lock()
    prepare = app_module.prepare_bytes

    def slow_prepare(data, **kwargs):
        with lock:
            seen.append(budget.in_use)
        time.sleep(0.02)
        return prepare(data, **kwargs)

    monkeypatch.setattr(app_module, "prepare_bytes", slow_prepare)
    answers = []
    with TestClient(app) as client:
        def send():
            answers.append(client.post("/v1/predict", files=_files(*[blob] * 4)).status_code)

        threads = [threading.Thread(target=send) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert budget.in_use == 0
    assert answers == [200] * 8
    assert len(seen) == 32 and max(seen) <= budget.total
    assert max(seen) > cost  # the requests did overlap
    assert budget.peak <= budget.total


def test_an_image_over_the_whole_budget_is_refused_by_name(predictor):
    from fastapi.testclient import TestClient

    from cellscreen.serve.app import Limits, create_app

    app = create_app(predictor, limits=Limits(max_pixels=16_000_000, decode_budget_bytes=8 * 2**20))
    with TestClient(app) as client:
        answer = client.post("/v1/predict", files=_files(_cell(1), _png16(2000, 2000)))
        assert answer.status_code == 413, answer.text
        detail = answer.json()["detail"]
        assert [f["index"] for f in detail["files"]] == [1] and "MB" in detail["files"][0]["reason"]
        assert client.post("/v1/predict", files=_files(_cell(1))).status_code == 200


# --- item 10: the token ---------------------------------------------------------------------------------------


def test_the_token_is_required_accepted_and_refused(predictor):
    from fastapi.testclient import TestClient

    from cellscreen.serve.app import create_app

    with TestClient(create_app(predictor, token=TOKEN)) as client:
        assert client.get("/healthz").status_code == 200
        assert "<html" in client.get("/").text.lower()  # the page itself holds no data; it asks for the token
        for path in ("/v1/model", "/openapi.json", "/docs"):
            answer = client.get(path)
            assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer", path
        assert client.post("/v1/predict", files=_files(_cell(2))).status_code == 401
        wrong = {"Authorization": "Bearer not-" + TOKEN}
        assert client.get("/v1/model", headers=wrong).status_code == 401
        assert client.get("/v1/model", headers={"Authorization": TOKEN}).status_code == 401
        assert client.get("/v1/model", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
        assert client.get("/v1/model", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200
        right = {"Authorization": f"Bearer {TOKEN}"}
        assert client.get("/v1/model", headers=right).json()["classes"]
        answer = client.post("/v1/predict", files=_files(_cell(2)), headers=right)
        assert answer.status_code == 200 and answer.json()["summary"]["cells"] == 1
    with TestClient(create_app(predictor)) as client:  # no token: open, as before
        assert client.get("/v1/model").status_code == 200


@pytest.fixture
def serve_calls(monkeypatch):
    """``cellscreen serve`` run in this process with the server itself replaced by a recorder."""
    import cellscreen.serve.app as app_module

    calls = []
    monkeypatch.setattr(app_module, "serve", lambda model, **kwargs: calls.append(kwargs))
    monkeypatch.delenv("CELLSCREEN_TOKEN", raising=False)
    return calls


def test_binding_beyond_loopback_without_a_token_exits_2_with_one_line(serve_calls, capsys):
    from cellscreen.cli import main

    assert main(["serve", "malaria", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--token" in err and "--insecure-no-token" in err
    assert serve_calls == []
    for host in ("127.0.0.1", "::1", "localhost"):
        assert main(["serve", "malaria", "--host", host]) == 0
    assert [call["token"] for call in serve_calls] == [None] * 3


def test_a_token_from_the_option_or_the_environment_opens_any_address(serve_calls, capsys, monkeypatch):
    from cellscreen.cli import main

    assert main(["serve", "malaria", "--host", "0.0.0.0", "--token", TOKEN]) == 0
    monkeypatch.setenv("CELLSCREEN_TOKEN", "from-env")
    assert main(["serve", "malaria", "--host", "0.0.0.0"]) == 0
    assert [call["token"] for call in serve_calls] == [TOKEN, "from-env"]
    monkeypatch.delenv("CELLSCREEN_TOKEN")
    assert main(["serve", "malaria", "--host", "0.0.0.0", "--insecure-no-token"]) == 0
    assert serve_calls[-1]["token"] is None
    assert "WARNING" in capsys.readouterr().err


# --- item 10: slow uploads and clients that hang up -----------------------------------------------------------


def _scope(body_length: int) -> dict:
    boundary = b"xyz"
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": "/v1/predict", "raw_path": b"/v1/predict", "query_string": b"",
            "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
            "headers": [(b"content-type", b"multipart/form-data; boundary=" + boundary),
                        (b"content-length", str(body_length).encode())]}


_HEAD = (b"--xyz\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.png\"\r\n"
         b"Content-Type: image/png\r\n\r\n")


async def _call(app, receive, *, with_headers: bool = False) -> tuple:
    """``(status, body)`` of one request to the ASGI ``app`` (and its headers ``with_headers``)."""
    sent = []

    async def send(message):
        sent.append(message)

    await app(_scope(len(_HEAD) + 100_000), receive, send)
    start = next((m for m in sent if m["type"] == "http.response.start"), {})
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return (start.get("status"), body, dict(start.get("headers", []))) if with_headers else (start.get("status"), body)


def test_a_slow_upload_is_cut_off_with_408(predictor):
    from cellscreen.serve.app import Limits, create_app

    app = create_app(predictor, limits=Limits(read_timeout=0.3))
    messages = iter([_HEAD, b"\0" * 1000])

    async def receive():
        chunk = next(messages, None)
        if chunk is None:
            await asyncio.sleep(30)  # the client stops sending
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunk, "more_body": True}

    started = time.monotonic()
    status, body = asyncio.run(_call(app, receive))
    assert status == 408 and b"seconds" in body
    assert time.monotonic() - started < 10


def test_a_client_that_hangs_up_mid_upload_is_one_log_line(predictor, caplog):
    from cellscreen.serve.app import create_app

    app = create_app(predictor)
    messages = iter([{"type": "http.request", "body": _HEAD, "more_body": True},
                     {"type": "http.request", "body": b"\0" * 1000, "more_body": True},
                     {"type": "http.disconnect"}])

    async def receive():
        return next(messages)

    with caplog.at_level(logging.INFO):
        asyncio.run(_call(app, receive))  # before the fix: ClientDisconnect, a traceback in uvicorn's log
    records = [r for r in caplog.records if "hung up" in r.getMessage()]
    assert len(records) == 1 and records[0].exc_info is None and "\n" not in records[0].getMessage()
    assert "127.0.0.1" in records[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# --- the page with a token (Debian's chromium, driven by playwright) ------------------------------------------


@needs_chromium
def test_the_page_works_with_a_token_from_its_address_or_a_prompt(predictor, tmp_path):
    import socket

    import uvicorn

    from cellscreen.serve.app import create_app

    cells = [tmp_path / f"cell{k}.png" for k in range(2)]
    for k, path in enumerate(cells):
        path.write_bytes(_cell(k))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    address = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    server = uvicorn.Server(uvicorn.Config(create_app(predictor, token=TOKEN), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    done = "() => document.querySelectorAll('#results tbody tr td:nth-child(5)').length === 2 && " \
           "[...document.querySelectorAll('#results tbody tr td:nth-child(5)')].every(c => c.textContent === 'ok')"
    try:
        while not server.started:
            assert thread.is_alive()
            time.sleep(0.05)
        with chromium() as browser:  # closed before this module's later tests run event loops
            page = browser.new_page()  # opened as /?token=TOKEN: taken, and out of the address bar
            page.goto(address + "?token=" + TOKEN)
            page.wait_for_function("() => document.getElementById('prob-heading').textContent.startsWith('P(')")
            assert "token" not in page.url
            page.set_input_files("#files", [str(path) for path in cells])
            page.wait_for_function(done, timeout=60_000)

            page = browser.new_page()  # opened plainly: the page asks for the token
            asked = []
            page.on("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept(TOKEN)))
            page.goto(address)
            page.wait_for_function("() => document.getElementById('prob-heading').textContent.startsWith('P(')")
            assert len(asked) == 1 and "token" in asked[0]
            page.set_input_files("#files", [str(path) for path in cells])
            page.wait_for_function(done, timeout=60_000)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def test_uploads_over_the_upload_budget_wait_then_get_503(predictor):
    """One stalled upload holds the whole upload budget: a second request waits its queue timeout, then is
    told to come back (503 with Retry-After); the first is still cut off by its own read timeout."""
    from cellscreen.serve.app import Limits, create_app

    length = len(_HEAD) + 100_000
    app = create_app(predictor, limits=Limits(upload_budget_bytes=length + 10, read_timeout=1.5,
                                              queue_timeout=0.3))

    def stalled():
        messages = iter([_HEAD])

        async def receive():
            chunk = next(messages, None)
            if chunk is None:
                await asyncio.sleep(30)
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": chunk, "more_body": True}

        return receive

    async def both():
        first = asyncio.create_task(_call(app, stalled()))
        await asyncio.sleep(0.1)
        second = await _call(app, stalled(), with_headers=True)
        return await first, second

    (first_status, _), (second_status, second_body, headers) = asyncio.run(both())
    assert second_status == 503 and b"busy" in second_body and headers.get(b"retry-after") == b"30"
    assert first_status == 408
    assert app.state.upload_budget.in_use == 0


def test_a_client_gone_before_its_images_are_decoded_is_not_worked_for(predictor, caplog, monkeypatch):
    import cellscreen.serve.app as app_module
    from cellscreen.serve.app import create_app

    decoded = []
    monkeypatch.setattr(app_module, "prepare_bytes", lambda data, **kwargs: decoded.append(data))
    app = create_app(predictor)
    body = _HEAD + _cell(3) + b"\r\n--xyz--\r\n"
    messages = iter([{"type": "http.request", "body": body, "more_body": False}])

    async def receive():  # the whole upload, then the client is gone
        return next(messages, {"type": "http.disconnect"})

    async def call():
        sent = []

        async def send(message):
            sent.append(message)

        scope = _scope(len(body))
        await app(scope, receive, send)
        return sent

    with caplog.at_level(logging.INFO):
        asyncio.run(call())
    assert decoded == []
    records = [r for r in caplog.records if "hung up" in r.getMessage()]
    assert len(records) == 1 and "decoded" in records[0].getMessage() and records[0].exc_info is None


def test_the_access_log_never_shows_the_token():
    import logging

    from cellscreen.serve.app import HideToken

    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "GET", "/?token=s3cret&x=1", "1.1", 200), None)
    assert HideToken().filter(record)
    assert "s3cret" not in record.getMessage() and "token=***&x=1" in record.getMessage()
