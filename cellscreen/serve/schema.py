"""The shapes of the service's answers, for its OpenAPI schema (clients and the schema-driven fuzz test read
them): a cell's result, a field's (``cellscreen.serve.fields``), and the errors that name each bad file."""

from __future__ import annotations

__all__ = ["DETAIL", "ERROR", "ERROR_OR_INVALID", "CELL", "FIELD", "FIELD_COUNTS", "RESULTS", "json_answer"]

DETAIL = {"type": "object", "required": ["error", "files"], "properties": {
    "error": {"type": "string"},
    "files": {"type": "array", "description": "each file that cannot be used, by its position in the request",
              "items": {"type": "object", "required": ["index", "filename", "reason"], "properties": {
                  "index": {"type": "integer"}, "filename": {"type": "string"}, "reason": {"type": "string"}}}}}}
ERROR = {"type": "object", "required": ["detail"], "properties": {"detail": DETAIL}}
ERROR_OR_INVALID = {"type": "object", "required": ["detail"], "properties": {"detail": {"anyOf": [
    DETAIL, {"type": "array", "items": {"type": "object"}, "description": "FastAPI's parameter validation"}]}}}
CELL = {"type": "object", "required": ["filename", "class", "probability", "probabilities", "flagged"], "properties": {
    "filename": {"type": "string"}, "kind": {"const": "cell"}, "class": {"type": "string"},
    "probability": {"type": "number"}, "probabilities": {"type": "object", "additionalProperties": {"type": "number"}},
    "flagged": {"type": "boolean"}, "gradcam": {"type": "string", "description": "PNG data URL"}}}
FIELD_COUNTS = {"type": "object", "description": (
    "red_counted: single red cells not cut by the border (the denominator); positive: of those, called the "
    "positive class; not_single: red objects that are not one single red cell (not counted); white: white cells; "
    "border: red objects cut by the border"),
    "properties": {key: {"type": "integer"} for key in ("red_counted", "positive", "not_single", "white", "border")}}
FIELD = {"type": "object", "required": ["filename", "kind", "counts", "parasitemia", "warnings", "overlay"],
         "properties": {
    "filename": {"type": "string"}, "kind": {"const": "field"}, "width": {"type": "integer"},
    "height": {"type": "integer"}, "cell_diameter": {"type": "number"}, "scale": {"type": "number"},
    "positive_class": {"type": ["string", "null"]}, "decision_threshold": {"type": "number"}, "counts": FIELD_COUNTS,
    "parasitemia": {"type": ["object", "null"], "description": "positive over red_counted in percent, with its "
                    "Wilson 95% interval; null when no red cell was counted",
                    "properties": {k: {"type": "number"} for k in ("percent", "low", "high")}},
    "warnings": {"type": "array", "items": {"type": "string"}},
    "cells": {"type": "array", "items": {"type": "object"}},
    "overlay": {"type": "string", "description": "PNG data URL: each cell outlined, green to red by the positive "
                "class's probability, yellow not single, grey cut by the border, blue white cells"}}}
RESULTS = {"type": "object", "required": ["model", "results", "summary"], "properties": {
    "model": {"type": ["string", "null"]},
    "results": {"type": "array", "items": {"anyOf": [CELL, FIELD]}},
    "summary": {"type": "object", "required": ["cells", "flagged", "positive_class", "flagged_fraction"],
                "description": "the single cells of the request (fields are counted in their own results)",
                "properties": {"cells": {"type": "integer"}, "flagged": {"type": "integer"},
                               "positive_class": {"type": ["string", "null"]},
                               "flagged_fraction": {"type": ["number", "null"]}}},
    "samples": {"type": "array", "items": {"type": "object"}, "description": "per sample (the folder in each "
                "file name, or group_regex): cells, flagged, share flagged with its 95% interval; fields' counts "
                "and parasitemia with its interval and warnings"}}}


def json_answer(description: str, schema: dict) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}
