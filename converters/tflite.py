"""TFLite targets (run by LiteRT): fp32, fp16 (weights), dynamic-range int8, full integer int8.

Every function imports TensorFlow lazily. Inputs are ``[1, H, W, 3]`` (``[1, -1, -1, 3]`` when dynamic:
resize with ``Interpreter.resize_tensor_input``).
"""
import contextlib
import io
import re
from collections import Counter

from kd_edge.converters.registry import Target, register


def _converter(source, options):
    import tensorflow as tf

    fn = source.concrete_function(options["input_size"])
    return tf.lite.TFLiteConverter.from_concrete_functions([fn], source.trackable())


def _write(converter, path):
    from kd_edge.errors import KdEdgeError

    try:
        content = converter.convert()
    except Exception as exc:  # noqa: BLE001 - converter errors are long MLIR dumps: keep the first line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise KdEdgeError(f"TFLite conversion failed: {first}") from exc
    with open(path, "wb") as fh:
        fh.write(content)
    return {}


def convert_fp32(source, path, options):
    return _write(_converter(source, options), path)


def convert_fp16(source, path, options):
    import tensorflow as tf

    conv = _converter(source, options)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_types = [tf.float16]
    return _write(conv, path)


def convert_dynamic(source, path, options):
    import tensorflow as tf

    conv = _converter(source, options)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    return _write(conv, path)


def calibration_size(options, stride):
    size = options["input_size"]
    if size:
        return size[0]
    return max(stride, (256 // stride) * stride)


def convert_int8(source, path, options):
    import numpy as np
    import tensorflow as tf

    from kd_edge.converters.parity import representative

    size = calibration_size(options, source.stride)
    images = representative(options.get("calib"), options.get("calib_count", 32), size)

    def dataset():
        for img in images:
            yield [np.asarray(img[None], np.float32)]

    conv = _converter(source, options)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = dataset
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if options.get("int8_io"):
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    extra = _write(conv, path)
    extra["calibration"] = {"images": int(len(images)), "size": int(size),
                            "source": str(options["calib"]) if options.get("calib") else "built-in synthetic blurred images"}
    return extra


def gpu_compatibility(content: bytes) -> dict:
    """Run the LiteRT model analyzer with gpu_compatibility=True (it prints) and parse its verdict."""
    import tensorflow as tf

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        tf.lite.experimental.Analyzer.analyze(model_content=content, gpu_compatibility=True)
    text = buf.getvalue()
    warnings = [line.strip() for line in text.splitlines() if "GPU COMPATIBILITY WARNING" in line]
    compatible = "looks compatible with GPU delegate" in text and not warnings
    match = re.search(r"compatible with GPU delegate on TFLite runtime version ([\w.\-]+)", text)
    return {
        "compatible": bool(compatible),
        "warnings": warnings,
        "checked_against": match.group(1).rstrip(".") if match else None,
        "tool": "tf.lite.experimental.Analyzer (gpu_compatibility=True)",
        "note": "static check only; a GPU delegate may still reject or fall back at run time",
    }


def _tensor_record(detail):
    import numpy as np

    sig = [int(v) for v in detail.get("shape_signature", detail["shape"])]
    record = {"name": detail["name"], "shape": [None if v < 0 else v for v in sig],
              "dtype": np.dtype(detail["dtype"]).name, "layout": "NHWC"}
    scale, zero = detail.get("quantization", (0.0, 0))
    if scale:
        record["quantization"] = {"scale": float(scale), "zero_point": int(zero),
                                  "real_value": "(q - zero_point) * scale"}
    return record


def inspect(path) -> dict:
    from kd_edge.runtime import litert_interpreter

    content = open(path, "rb").read()
    interp = litert_interpreter()(model_content=content)
    ops = Counter(op["op_name"] for op in interp._get_ops_details())
    return {
        "inputs": [_tensor_record(d) for d in interp.get_input_details()],
        "outputs": [_tensor_record(d) for d in interp.get_output_details()],
        "ops": dict(sorted(ops.items())),
        "gpu_delegate": gpu_compatibility(content),
    }


_COMMON = dict(ecosystem="tflite", suffix=".tflite", inspect=inspect)
register(Target("tflite-fp32", precision="fp32", convert=convert_fp32, description="float32 TFLite", **_COMMON))
register(Target("tflite-fp16", precision="fp16", convert=convert_fp16,
                description="float16 weights (dequantized to fp32 on CPU, native on GPU delegate)", **_COMMON))
register(Target("tflite-dynamic", precision="dynamic", convert=convert_dynamic,
                description="dynamic-range quantization: int8 weights, float activations", **_COMMON))
register(Target("tflite-int8", precision="int8", convert=convert_int8,
                description="full integer int8 (representative dataset); float I/O unless --int8-io", **_COMMON))
