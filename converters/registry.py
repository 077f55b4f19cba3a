"""One registry of export targets. A new target is one converter function and one ``register`` call.

Each ecosystem module (tflite.py, onnx.py, coreml.py) registers its targets when imported;
``targets()`` imports them all. The registry itself imports no TensorFlow.
"""
import importlib
from dataclasses import dataclass, field
from typing import Callable

# Parity thresholds (PSNR in dB between the artifact run in its real runtime and the Keras model on the
# same probe images). fp32 is a re-expression of the same graph (differences come from op ordering:
# in practice > 80 dB); fp16 stores weights and/or runs in half precision (11-bit mantissa, ~1e-3 relative
# error -> ~50-70 dB on a [0,1] image); int8 quantises activations to 256 levels (~1/255 steps -> 35-45 dB
# for a well-calibrated net). "dynamic" (dynamic-range: int8 weights, activations quantised on the fly per
# tensor inside the hybrid kernels) measured 42-52 dB on our students, so its gate is 35 dB: above full
# int8 (its activations keep float range) and well below fp16.
THRESHOLDS_DB = {"fp32": 60.0, "fp16": 45.0, "dynamic": 35.0, "int8": 30.0}

ECOSYSTEM_MODULES = ("tflite", "onnx", "coreml")


@dataclass(frozen=True)
class Target:
    """An export target: ``convert(source, artifact_path, options) -> dict`` writes the artifact."""

    name: str                 # e.g. "tflite-int8"
    ecosystem: str            # "tflite" | "onnx" | "coreml" (also the runtime kind)
    precision: str            # "fp32" | "fp16" | "dynamic" | "int8"
    suffix: str               # ".tflite" | ".onnx" | ".mlpackage"
    convert: Callable         # writes the artifact; returns extra manifest fields
    inspect: Callable         # (artifact_path) -> dict: io, ops, ecosystem-specific checks
    description: str = ""
    supports_dynamic: bool = True
    threshold_db: float = field(default=None)

    @property
    def gate_db(self):
        return self.threshold_db if self.threshold_db is not None else THRESHOLDS_DB[self.precision]


_REGISTRY: dict = {}


def register(target: Target):
    if target.name in _REGISTRY:
        raise ValueError(f"target {target.name!r} is registered twice")
    _REGISTRY[target.name] = target
    return target


def _load_all():
    for name in ECOSYSTEM_MODULES:
        importlib.import_module(f"kd_edge.converters.{name}")


def targets() -> dict:
    """All registered targets, name -> Target, in registration order."""
    _load_all()
    return dict(_REGISTRY)


def get(name: str) -> Target:
    from kd_edge.errors import KdEdgeError

    all_targets = targets()
    if name not in all_targets:
        raise KdEdgeError(f"unknown target {name!r}; valid targets: {', '.join(all_targets)}, all")
    return all_targets[name]
