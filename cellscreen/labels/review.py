"""A local page to review an audit's suspects: ``GET /`` (the page), ``GET /api/queue``, ``GET /api/cell``,
``POST /api/decisions`` and ``POST /api/export``.

The page shows each suspect large, with a few cells of the same slide filed under the same class beside it
(the ones its given label is surest of: what that class looks like on that slide), its label-quality
score, and its given and suggested labels.  Keep, flip, exclude or unsure (buttons, or the keys k, f, x, u;
arrows move) is POSTed and appended to ``decisions.jsonl`` at once, so a review resumes at the first
suspect without a decision.  Export writes ``review-relabel.csv``, a relabel file every command accepts.

Only cells the audit scored are served, by their path in the audit's dataset, and only from that folder.
"""

from __future__ import annotations

import json
import mimetypes
from collections import defaultdict
from pathlib import Path

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel

from cellscreen import __version__
from cellscreen.errors import UserError
from cellscreen.labels.audit import read_suspects
from cellscreen.labels.decisions import DECISIONS, DECISIONS_FILE, DecisionLog, export_decisions, last_decisions
from cellscreen.labels.oof import read_oof
from cellscreen.labels.relabel import EXCLUDE

__all__ = ["review_app", "serve_review"]

STATIC = Path(__file__).with_name("static")


class DecisionRequest(BaseModel):
    path: str
    decision: str
    label: str | None = None  # for flip: the new class (default: the audit's suggestion)


def _neighbours(oof, suspects_paths: set[str], count: int) -> dict[tuple[str, str], list[str]]:
    """Per (slide, class): the cells filed under that class that the held-out model is surest of."""
    ranked: dict[tuple[str, str], list[tuple[float, str]]] = defaultdict(list)
    column = {c: i for i, c in enumerate(oof.classes)}
    for k, (path, slide, label) in enumerate(zip(oof.paths, oof.slides, oof.labels)):
        if path not in suspects_paths:
            ranked[(slide, label)].append((-float(oof.proba[k, column[label]]), path))
    return {key: [path for _, path in sorted(cells)[:count]] for key, cells in ranked.items()}


def review_app(audit_dir: str | Path, *, reviewer: str, neighbours: int = 5) -> FastAPI:
    """The review page for the audit in ``audit_dir``; decisions are recorded as made by ``reviewer``."""
    audit_dir = Path(audit_dir)
    if not reviewer or not reviewer.strip():
        raise UserError("say who reviews (a name or initials): every decision records it")
    reviewer = reviewer.strip()
    summary_path = audit_dir / "audit.json"
    if not summary_path.is_file():
        raise UserError(f"{audit_dir} is not an audit folder (no audit.json): run `cellscreen labels audit` first")
    summary = json.loads(summary_path.read_text())
    root = Path(summary["root"]).resolve()
    if not root.is_dir():
        raise UserError(f"the audit's dataset folder {root} is not there any more")
    suspects = read_suspects(audit_dir / "suspects.csv")
    oof = read_oof(audit_dir / "oof.csv")
    by_path = {s.path: s for s in suspects}
    beside = _neighbours(oof, set(by_path), neighbours)
    servable = set(oof.paths) | set(by_path)
    classes = summary["classes"]
    log = DecisionLog(audit_dir / DECISIONS_FILE)

    app = FastAPI(title="cellscreen label review", version=__version__,
                  description="Review the suspect labels of a cellscreen label audit.")
    app.state.audit_dir, app.state.log = audit_dir, log

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "review.html", media_type="text/html")

    @app.get("/api/queue", summary="The suspects in rank order, with what has been decided so far")
    def queue() -> dict:
        return {"reviewer": reviewer, "dataset": summary["dataset"], "classes": classes,
                "group_kind": summary.get("group_kind", "slide"), "decisions_file": str(log.path),
                "suspects": [{"rank": s.rank, "path": s.path, "slide": s.slide, "label": s.label,
                              "suggested": s.suggested, "score": s.score, "probabilities": s.probabilities,
                              "neighbours": beside.get((s.slide, s.label), [])} for s in suspects],
                "decisions": last_decisions(log.read())}

    @app.get("/api/cell", summary="One cell image of the audit's dataset, by its path in it")
    def cell(path: str = Query(..., description="the cell's path in the dataset folder")):
        if path not in servable:
            raise HTTPException(status_code=404, detail="not a cell of this audit")
        file = (root / path).resolve()
        if not file.is_relative_to(root) or not file.is_file():  # a link out of the folder, or a file gone
            raise HTTPException(status_code=404, detail="not a cell of this audit")
        media = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        return FileResponse(file, media_type=media, headers={"Cache-Control": "max-age=3600"})

    @app.post("/api/decisions", summary="Record one decision (appended to decisions.jsonl at once)")
    def decide(request: DecisionRequest) -> dict:
        suspect = by_path.get(request.path)
        if suspect is None:
            raise HTTPException(status_code=404, detail="not a suspect of this audit")
        if request.decision not in DECISIONS:
            raise HTTPException(status_code=422, detail=f"decision must be one of {', '.join(DECISIONS)}")
        label = {"keep": suspect.label, "exclude": EXCLUDE, "unsure": None}.get(request.decision)
        if request.decision == "flip":
            label = request.label or suspect.suggested
            if label not in classes or label == suspect.label:
                raise HTTPException(status_code=422, detail=f"flip to one of the other classes, not {label!r}")
        record = log.append(who=reviewer, path=suspect.path, decision=request.decision, label=label,
                            given=suspect.label, suggested=suspect.suggested)
        return {"saved": record}

    @app.post("/api/export", summary="Write the decisions as a relabel file (review-relabel.csv)")
    def export() -> dict:
        path, rows = export_decisions(audit_dir)
        return {"path": str(path), "rows": rows}

    return app


def serve_review(audit_dir: str | Path, *, reviewer: str, host: str = "127.0.0.1", port: int = 8001,
                 log_level: str = "warning") -> None:
    """Serve the review page with uvicorn until interrupted."""
    import uvicorn  # keeps start-up fast for the commands that do not serve

    app = review_app(audit_dir, reviewer=reviewer)
    print(f"cellscreen: reviewing {audit_dir} as {reviewer} on http://{host}:{port}/ "
          f"(decisions in {app.state.log.path})", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
