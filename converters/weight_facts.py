"""What a converted file really stores: its weight tensors by dtype, and a plain note when a target's name
promises more than happened (a "dynamic" TFLite whose weights all stayed float32, an fp16 or int8 file that
is larger than the fp32 one).

Weights are read from the file itself: for TFLite, the constant tensors (those with a data buffer) of a float
or 8/16-bit integer type; for ONNX, the graph initializers. No TensorFlow import here (the TFLite flatbuffer
schema ships with ai-edge-litert).
"""
from collections import Counter

import numpy as np

# tflite TensorType codes -> names, for the types a weight can have
_TFLITE_TYPES = {0: "float32", 1: "float16", 3: "uint8", 7: "int16", 9: "int8", 17: "int4", 18: "bfloat16"}
_ONNX_TYPES = {1: "float32", 10: "float16", 2: "uint8", 3: "int8", 5: "int16", 16: "bfloat16", 22: "int4"}
_QUANTIZED = ("int8", "uint8", "int16", "int4")
_HALF = ("float16", "bfloat16")
_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "int16": 2, "int8": 1, "uint8": 1, "int4": 0.5}
DYNAMIC_MIN_ELEMENTS = 1024  # TFLiteConverter's dynamic-range quantizer leaves smaller weight tensors float


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # older installs: the same schema inside TensorFlow
        from tensorflow.lite.python import schema_py_generated as schema
    return schema


def tflite_weights(path):
    """[(dtype, elements)] of the constant tensors of a .tflite file."""
    schema = _schema()
    buf = bytearray(open(path, "rb").read())
    model = schema.Model.GetRootAs(buf, 0)
    out = []
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            dtype = _TFLITE_TYPES.get(tensor.Type())
            buffer = model.Buffers(tensor.Buffer()) if tensor.Buffer() < model.BuffersLength() else None
            if dtype is None or buffer is None or (buffer.DataLength() == 0 and buffer.Offset() <= 1):
                continue
            out.append((dtype, int(np.prod(tensor.ShapeAsNumpy())) if tensor.ShapeLength() else 1))
    return out


def onnx_weights(path):
    """[(dtype, elements)] of the initializers of an .onnx file."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return [(_ONNX_TYPES[init.data_type], int(np.prod(init.dims)) if len(init.dims) else 1)
            for init in model.graph.initializer if init.data_type in _ONNX_TYPES]


def summarise(weights) -> dict:
    tensors = Counter(dtype for dtype, _ in weights)
    elements = Counter()
    for dtype, count in weights:
        elements[dtype] += count
    total = len(weights)
    quantized = sum(tensors[d] for d in _QUANTIZED)
    half = sum(tensors[d] for d in _HALF)
    all_elements = sum(elements.values())
    return {
        "tensors": total,
        "tensors_by_dtype": dict(sorted(tensors.items())),
        "elements_by_dtype": dict(sorted(elements.items())),
        "quantized_weights": f"{quantized} of {total} tensors",
        "quantized_fraction_of_elements": (sum(elements[d] for d in _QUANTIZED) / all_elements) if all_elements else 0.0,
        "float16_weights": f"{half} of {total} tensors",
    }


def _kib(n):
    return f"{n / 1024:.1f} KiB"


def notes(target, summary, file_size, sha256, fp32=None) -> list:
    """Plain statements of what happened, for the manifest and the results table.

    ``fp32``: ``{"target", "file_size", "sha256"}`` of the same model's fp32 artifact of this ecosystem when it
    was built in the same run (the comparison is then stated), else None.
    """
    out = []
    by = summary["tensors_by_dtype"]
    quantized = sum(by.get(d, 0) for d in _QUANTIZED)
    half = sum(by.get(d, 0) for d in _HALF)
    if target.precision in ("dynamic", "int8") and quantized == 0:
        why = (f"every weight tensor has fewer than {DYNAMIC_MIN_ELEMENTS} elements, the converter's threshold, so "
               f"all stayed float32" if target.precision == "dynamic" else "no weight tensor was quantized")
        out.append(f"quantized in name only: {why}")
    elif target.precision == "dynamic" and by.get("float32", 0):
        out.append(f"{quantized} of {summary['tensors']} weight tensors int8; {by['float32']} stayed float32 "
                   f"(biases and tensors under {DYNAMIC_MIN_ELEMENTS} elements)")
    if target.precision == "fp16" and half == 0:
        out.append("no weight is stored as float16: the file holds float32 weights")
    if fp32 and target.precision != "fp32":
        if sha256 == fp32.get("sha256"):
            out.append(f"byte-identical to {fp32['target']}")
        elif file_size == fp32["file_size"]:
            out.append(f"the same size as {fp32['target']} ({_kib(file_size)})")
        elif file_size > fp32["file_size"]:
            stored = sum(_BYTES[d] * n for d, n in summary["elements_by_dtype"].items())
            as_float = 4 * sum(summary["elements_by_dtype"].values())
            out.append(f"larger than {fp32['target']} ({_kib(file_size)} vs {_kib(fp32['file_size'])}): its weights "
                       f"take {_kib(stored)} ({_kib(as_float)} as float32); the rest is graph (ops, tensor names, "
                       f"quantization parameters, casts), which in a model this small outweighs what the weights save")
    return out


def record(target, path, file_size, sha256, fp32=None) -> dict:
    """Manifest fields ``weights`` and ``notes`` for a TFLite or ONNX artifact (empty dict for others)."""
    reader = {"tflite": tflite_weights, "onnx": onnx_weights}.get(target.ecosystem)
    if reader is None:
        return {}
    try:
        summary = summarise(reader(path))
    except Exception as exc:  # noqa: BLE001 - an unreadable file fails in its runtime next, with its own message
        return {"weights": None, "notes": [f"weights not inspected ({type(exc).__name__})"]}
    return {"weights": summary, "notes": notes(target, summary, file_size, sha256, fp32)}
