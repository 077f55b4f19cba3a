"""One registry of export targets. A new target is one converter function and one ``register`` call.

Each ecosystem module (tflite.py, onnx.py, coreml.py) registers its targets when imported;
``targets()`` imports them all. The registry itself imports no TensorFlow.
"""
import importlib
from dataclasses import dataclass, field
from typing import Callable

# Parity thresholds: minimum PSNR (dB, max_val 1) between the artifact run in its real runtime and the Keras
# model on the same probe images.
# - fp32 (60 dB): the same graph re-expressed; only op order/fusion differ (measured: 100 dB = identical to
#   float32 rounding on edge-tiny and edge-s).
# - fp16 (45 dB): half-precision weights and/or compute, 11-bit mantissa (~5e-4 relative error); measured
#   75-86 dB, so 45 dB only catches real breakage (overflow, a mis-converted op).
# - int8 (30 dB): 256 activation levels per tensor; measured 43-47 dB with 32 calibration images, and 28.6 dB
#   when calibrated on only 4 images (the gate rejected it: that is its job).
# - dynamic (35 dB): dynamic-range quantisation keeps float activations and stores int8 per-channel weights
#   (the hybrid kernels quantise activations on the fly with the tensor's own range, so no calibration
#   error). It must beat full int8, and it cannot promise fp16 accuracy: 35 dB. Measured 59 dB on an
#   untrained edge-s (edge-tiny stays at 100 dB: tensors under 1024 weights are not quantised).
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
