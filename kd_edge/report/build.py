"""Write a whole report folder from an EvalResult: per_image.csv, summary.json, PNG figures, report.md and a
self-contained report.html. Every file is written atomically; nothing depends on the clock (same seed, same bytes)."""
from __future__ import annotations

import math
from pathlib import Path

from kd_edge import __version__
from kd_edge.atomic import write_json, write_text
from kd_edge.errors import KdEdgeError
from kd_edge.report import cost as cost_table
from kd_edge.report import document, figures, html, markdown, stats
from kd_edge.report.evaluate import write_csv

REPORT_FILES = ("report.md", "report.html", "per_image.csv", "summary.json")


def load_reference():
    """The P100/Helen reference of the original report (package data), or None if it cannot be read."""
    try:
        from kd_edge.benchmarks.reference import load_reference as _load

        return _load()
    except (ImportError, KdEdgeError):
        import json

        path = Path(__file__).resolve().parents[1] / "reference" / "p100_reference.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None


def _finite(obj):
    """NaN -> None, recursively, so summary.json is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_report(result, out_dir, *, bench_path=None, reference=True):
    """Write the report files into ``out_dir``; returns {name: Path} of everything written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = stats.summarize(result)
    bench = cost_table.read_bench(bench_path) if bench_path else None
    cost = cost_table.cost_rows(result.models, bench, bench_path)
    ref = load_reference() if reference else None

    written = {"per_image.csv": write_csv(result, out_dir / "per_image.csv")}
    figure_files = figures.write_figures(result, out_dir)
    for name in figure_files.values():
        written[name] = out_dir / name
    blocks = document.build(result, summary, figure_files, cost=cost, reference=ref)
    write_text(out_dir / "report.md", markdown.render(blocks))
    written["report.md"] = out_dir / "report.md"
    write_text(out_dir / "report.html", html.render(blocks, out_dir))
    written["report.html"] = out_dir / "report.html"

    doc = {
        "kd_edge_version": __version__,
        "data": result.split_dir,
        "seed": result.seed,
        "tile": result.tile,
        "align": getattr(result, "align", 0),
        "images": result.images,
        "models": [{"name": m.name, "path": m.path, "kind": m.kind, "params": m.params, "file_bytes": m.file_bytes}
                   for m in result.models],
        "baselines": result.baselines,
        "samples": [{"name": s.name, "crop": {"top": s.crop[0], "left": s.crop[1], "size": s.crop[2]}}
                    for s in result.samples],
        "summary": summary,
        "cost": {"bench": str(bench_path) if bench_path else None, "rows": cost[0], "unmatched": cost[1],
                 "device": cost[2]},
        "files": sorted(written),
        "notes": result.notes,
    }
    write_json(out_dir / "summary.json", _finite(doc))
    written["summary.json"] = out_dir / "summary.json"
    return written
