"""The cost table: params and file size from each model's manifest and file, latency and memory from a bench JSON.

The bench JSON (benchmarks/bench_schema.json, schema kd-edge-bench v1) is read defensively: a row matches a model
by artifact path (resolved), then by file name, then by model stem or display name; among the matching rows the
one with status ok at 256 px (else the largest size) and the most threads is shown. An unreadable file is an
error naming it; rows that do not match any model are listed as unmatched.
"""
from __future__ import annotations

import json
from pathlib import Path

from kd_edge.errors import InputFileError

PREFERRED_SIZE = 256


def read_bench(path):
    """The bench document as a dict with a ``results`` list; InputFileError naming the file otherwise."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise InputFileError(path, f"cannot read the bench JSON ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise InputFileError(path, f"not JSON ({exc})") from exc
    results = doc.get("results") if isinstance(doc, dict) else doc if isinstance(doc, list) else None
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise InputFileError(path, "not a kd-edge bench result (no 'results' list of objects)")
    if not isinstance(doc, dict):
        doc = {"results": results}
    return doc


def _resolved(value):
    try:
        return str(Path(value).expanduser().resolve())
    except (OSError, RuntimeError, TypeError):
        return None


def _stem(value):
    name = Path(str(value).rstrip("/")).name
    return name.split(".")[0] if name else name


def match_rows(model, rows, bench_dir=None):
    """Rows of the bench JSON that belong to ``model`` (a ModelEntry), best evidence first."""
    target = _resolved(model.path)
    name = Path(model.path.rstrip("/")).name
    by_path, by_name, by_stem = [], [], []
    for row in rows:
        artifact = row.get("artifact") or row.get("path")
        candidates = []
        if artifact:
            candidates.append(_resolved(artifact))
            if bench_dir is not None and not Path(artifact).is_absolute():
                candidates.append(_resolved(Path(bench_dir) / artifact))
        if target and target in candidates:
            by_path.append(row)
        elif name and name in (row.get("name"), Path(str(artifact or "")).name):
            by_name.append(row)
        elif model.name in (row.get("model"), row.get("name"), row.get("label")) or (
                row.get("model") and row.get("model") == _stem(model.path) and row.get("target") in (None, "keras")
                and model.kind == "keras"):
            by_stem.append(row)
    return by_path or by_name or by_stem


def pick_row(rows):
    """The ok row at 256 px (else the largest size), with the most threads; else the first row (to show why)."""
    ok = [r for r in rows if r.get("status", "ok") == "ok"]
    if not ok:
        return rows[0] if rows else None

    def key(row):
        size = row.get("size") or 0
        threads = row.get("threads") or 0
        return (size == PREFERRED_SIZE, size, threads)

    return max(ok, key=key)


def _latency_ms(row):
    latency = row.get("latency_ms")
    if isinstance(latency, dict):
        for k in ("p50", "median", "mean"):
            if isinstance(latency.get(k), (int, float)):
                return float(latency[k])
        return None
    return float(latency) if isinstance(latency, (int, float)) else None


def _number(row, *keys):
    for key in keys:
        value = row.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
    return None


def cost_rows(models, bench=None, bench_path=None):
    """One dict per model: name, kind, params, file_bytes, and from the bench (if any) latency_ms, memory_mb,
    threads, size, status, reason, device. Also returns the bench rows that matched no model."""
    rows = list((bench or {}).get("results") or [])
    bench_dir = Path(bench_path).parent if bench_path else None
    used = set()
    out = []
    device = None
    if bench:
        host = bench.get("host") or {}
        dev = bench.get("device") or {}
        parts = []
        for x in (dev.get("kind"), dev.get("target"), host.get("cpu_model")):
            if x and str(x) not in parts:
                parts.append(str(x))
        device = ", ".join(parts)
    for model in models:
        entry = {"name": model.name, "kind": model.kind, "target": getattr(model, "target", None) or model.kind,
                 "params": model.params, "file_bytes": model.file_bytes,
                 "latency_ms": None, "memory_mb": None, "rss_delta_mb": None, "threads": None, "size": None,
                 "status": None, "reason": None}
        matches = match_rows(model, rows, bench_dir) if rows else []
        row = pick_row(matches)
        if row is not None:
            used.update(id(r) for r in matches)
            entry.update({
                "latency_ms": _latency_ms(row),
                "memory_mb": _number(row, "peak_rss_mb", "memory_mb", "peak_memory_mb"),
                "rss_delta_mb": _number(row, "rss_delta_mb"),
                "threads": row.get("threads"), "size": row.get("size"),
                "status": row.get("status", "ok"), "reason": row.get("reason"),
            })
            if entry["params"] is None:
                entry["params"] = _number(row, "params")
            if entry["file_bytes"] is None:
                entry["file_bytes"] = _number(row, "file_bytes")
        elif rows:
            entry["status"] = "not in bench JSON"
        out.append(entry)
    unmatched = sorted({str(r.get("artifact") or r.get("name")) for r in rows if id(r) not in used})
    return out, unmatched, device
