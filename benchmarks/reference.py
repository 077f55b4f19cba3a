"""The P100 reference figures of the seed report (teacher 34 ms / 1.7 GB, student 22 ms / 1.1 GB at 256x256).

They live in the package data file ``kd_edge/reference/p100_reference.json`` (schema ``kd-edge-reference`` v1,
copied unchanged from ``../shared/reference/p100_reference.json``). Every bench report shows them next to the
measured artifacts, with the ratio of each artifact to them and the hardware each side ran on.
"""
import json
from functools import lru_cache
from pathlib import Path

from kd_edge.errors import KdEdgeError

REFERENCE_PATH = Path(__file__).resolve().parents[1] / "kd_edge" / "reference" / "p100_reference.json"
SCHEMA_VERSION = 1


def _path():
    # Installed editable the package data sits in kd_edge/reference; importlib.resources covers wheels.
    try:
        from importlib.resources import files

        candidate = files("kd_edge") / "reference" / "p100_reference.json"
        if candidate.is_file():
            return candidate
    except (ModuleNotFoundError, AttributeError):
        pass
    return REFERENCE_PATH


@lru_cache(maxsize=1)
def load_reference():
    """The reference as a dict: ``device``, ``input``, ``models`` -> {teacher, student} with latency_ms, memory_mb."""
    path = _path()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise KdEdgeError(f"{path}: cannot read the P100 reference ({exc})") from exc
    if data.get("schema_version") != SCHEMA_VERSION:
        raise KdEdgeError(f"{path}: reference schema_version {data.get('schema_version')!r}, expected {SCHEMA_VERSION}")
    return data


def reference_summary():
    """The compact block stored in every bench JSON."""
    ref = load_reference()
    return {
        "device": ref["device"],
        "input": ref["input"],
        "source": ref["source"],
        "notes": ref.get("notes"),
        "models": {name: {"latency_ms": m["latency_ms"], "memory_mb": m["memory_mb"], "params": m["params"]}
                   for name, m in ref["models"].items()},
    }


def ratios(latency_ms, memory_mb, size):
    """Measured / P100 for each reference model. Latency ratios are scaled to 256x256 when size differs
    (per pixel, a fully convolutional model's cost scales with the pixel count) and marked as such."""
    ref = load_reference()
    ref_pixels = ref["input"]["height"] * ref["input"]["width"]
    scale = ref_pixels / float(size * size)
    out = {}
    for name, m in ref["models"].items():
        out[name] = {
            "latency_ratio": None if latency_ms is None else latency_ms * scale / m["latency_ms"],
            "memory_ratio": None if memory_mb is None else memory_mb / m["memory_mb"],
            "latency_scaled_to_256": size * size != ref_pixels,
        }
    return out
