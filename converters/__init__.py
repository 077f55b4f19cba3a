"""Export backends (installed as kd_edge.converters): TFLite, ONNX and Core ML behind one registry.

``convert(model_path, targets, out_dir, ...)`` writes ``<out>/<model-stem>.<target>.<ext>`` with a
manifest ``<artifact>.json`` after a parity gate; ``TARGETS`` lists the target names. A new target is
one converter function plus one ``registry.register(Target(...))`` in its ecosystem module.
Nothing here imports TensorFlow until a conversion runs.
"""
from kd_edge.converters.pipeline import (  # noqa: F401
    ConversionResult,
    InputSizeError,
    ParityGateError,
    convert,
    parse_input_size,
    resolve_targets,
)
from kd_edge.converters.registry import THRESHOLDS_DB, Target, get, register, targets  # noqa: F401

TARGETS = tuple(targets())
