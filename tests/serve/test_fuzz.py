"""The service fuzzed from its own OpenAPI schema (schemathesis, in process, no network): never a 5xx.

Schemathesis generates requests that follow the schema (positive: including real PNG, JPEG, GIF, WebP,
PDF and ZIP samples and arbitrary bytes as files) and requests that break it (negative), sends them to
the ASGI app and runs its checks on every answer: no server error, only documented status codes and
content types, bodies that match the documented schemas.  Two checks are tuned to what the schema cannot
say: a file that is schema-valid ("binary") need not be an image, so a 415 for it is right; and too many
files is refused with 413, which schemathesis does not count as a rejection by default.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402  (after the import check)
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.config import SchemathesisConfig  # noqa: E402

OPERATIONS = ["GET /healthz", "GET /v1/model", "POST /v1/predict"]
CONFIG = {"checks": {"positive_data_acceptance": {"enabled": False},
                     "negative_data_rejection": {"expected-statuses": [400, 413, 415, 422]}}}
FUZZ = settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def api_schema():
    from cellscreen.serve.app import Limits, create_app

    import pytorch_grad_cam  # noqa: F401  the service imports it at the first map asked for (seconds on a
    # loaded machine); imported here, so that no fuzzed request waits on it

    # small limits, so that generated requests reach them too
    app = create_app("malaria", limits=Limits(max_files=8, max_upload_bytes=256 * 1024, max_pixels=1_000_000))
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=SchemathesisConfig.from_dict(CONFIG))


def test_every_operation_is_fuzzed(api_schema):
    found = sorted(f"{method.upper()} {path}" for path in api_schema for method in api_schema[path])
    assert found == sorted(OPERATIONS)


# the GET operations take no parameters: there is nothing to get wrong in a negative case
CASES = [(label, GenerationMode.POSITIVE) for label in OPERATIONS] + [("POST /v1/predict", GenerationMode.NEGATIVE)]


@pytest.mark.parametrize("label, mode", CASES, ids=[f"{label} {mode.value}" for label, mode in CASES])
def test_no_server_errors(api_schema, label, mode):
    method, path = label.split()
    operation = api_schema[path][method]
    statuses = []

    @FUZZ
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case):
        response = case.call_and_validate()  # raises on a 5xx or any other failed check
        statuses.append(response.status_code)

    fuzz()
    assert statuses and max(statuses) < 500
    if label == "POST /v1/predict" and mode is GenerationMode.POSITIVE:
        assert 200 in statuses  # real images got through, not only rejections


def test_mounted_without_its_lifespan_still_predicts(api_schema):
    """Mounted inside another app, the service's lifespan never runs: predictions must still work."""
    import io

    import numpy as np
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((20, 20, 3), 180, np.uint8)).save(buffer, "PNG")
    from cellscreen.serve.app import create_app

    parent = FastAPI()
    parent.mount("/cells", create_app(api_schema.app.state.predictor))
    with TestClient(parent) as client:
        for _ in range(2):
            answer = client.post("/cells/v1/predict", files=[("files", ("a.png", buffer.getvalue(), "image/png"))])
            assert answer.status_code == 200, answer.text
