"""ONNX targets (run by ONNX Runtime): fp32 (tf2onnx), fp16 (onnxconverter-common, float32 I/O kept),
int8 (static QDQ quantization calibrated through onnxruntime.quantization).

Input ``[1, H, W, 3]`` named ``input`` (NHWC, as the Keras model); dynamic: ``[N, H, W, 3]`` all symbolic.
"""
from collections import Counter

from kd_edge.converters.registry import Target, register

OPSET = 17


def _fp32_model(source, options):
    """The tf2onnx fp32 ModelProto, converted once per source and input size (fp16/int8 start from it)."""
    import onnx

    from kd_edge.converters.onnx_layout import fold_gate_transposes

    key = ("onnx-fp32", options["input_size"])
    if key not in source._fixed:
        proto = _tf2onnx(source, options)
        removed = fold_gate_transposes(proto)
        source._fixed[key] = (proto.SerializeToString(), removed)
    proto = onnx.ModelProto()
    proto.ParseFromString(source._fixed[key][0])
    return proto


def _transpose_cleanup(source, options):
    """Manifest record of the transpose clean-up (after ``_fp32_model``)."""
    removed = source._fixed[("onnx-fp32", options["input_size"])][1]
    return {"pass": "kd_edge.converters.onnx_layout.fold_gate_transposes", "transposes_removed": removed}


def _tf2onnx(source, options):
    import tensorflow as tf
    import tf2onnx

    from kd_edge.errors import KdEdgeError

    size = options["input_size"]
    shape = [1, size[0], size[1], 3] if size else [None, None, None, 3]
    try:
        model_proto, _ = tf2onnx.convert.from_keras(
            source.model, input_signature=[tf.TensorSpec(shape, tf.float32, name="input")], opset=OPSET)
    except Exception as exc:  # noqa: BLE001
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise KdEdgeError(f"ONNX conversion failed: {first}") from exc
    return model_proto


def _save(model_proto, path):
    import onnx

    onnx.save_model(model_proto, str(path))


def convert_fp32(source, path, options):
    _save(_fp32_model(source, options), path)
    return {"opset": OPSET, "transpose_cleanup": _transpose_cleanup(source, options)}


def convert_fp16(source, path, options):
    from onnxconverter_common import float16

    from kd_edge.converters.onnx_fp16 import float32_nodes

    proto = _fp32_model(source, options)
    kept = float32_nodes(proto, source.model)  # normalisation and Cast-to-float nodes stay float32
    model16 = float16.convert_float_to_float16(proto, keep_io_types=True, node_block_list=kept)
    _save(model16, path)
    return {"opset": OPSET, "transpose_cleanup": _transpose_cleanup(source, options),
            "fp16": {"tool": "onnxconverter_common.float16", "keep_io_types": True, "float32_nodes": len(kept),
                     "float32_rule": "kd_edge.converters.onnx_fp16.float32_nodes"}}


def convert_int8(source, path, options):
    """Static QDQ int8 with the portable recipe of kd_edge.converters.onnx_int8 (u8s8, 7-bit per-channel weights,
    clips folded for the quantizer); refuses a graph whose weights could saturate x86 u8s8 kernels."""
    from kd_edge.converters import int8_saturation, onnx_int8
    from kd_edge.converters.parity import representative
    from kd_edge.converters.tflite import calibration_size
    from kd_edge.errors import KdEdgeError

    size = calibration_size(options, source.stride)
    images = representative(options.get("calib"), options.get("calib_count", 32), size)
    proto = _fp32_model(source, options)
    clips = onnx_int8.fold_min_max_to_clip(proto)
    fp32_path = path.with_name(path.name + ".fp32.onnx")
    try:
        _save(proto, fp32_path)
        onnx_int8.quantize(fp32_path, path, images)
    finally:
        if fp32_path.exists():
            fp32_path.unlink()
    bounds = int8_saturation.pair_bounds(path)
    if not bounds["safe"]:
        raise KdEdgeError(f"onnx-int8: {bounds['unsafe_convs']} convolutions could saturate int16 pair sums on x86 "
                          "without VNNI; the artifact would not be portable")
    return {"opset": OPSET, "transpose_cleanup": _transpose_cleanup(source, options),
            "calibration": {"images": int(len(images)), "size": int(size), "method": "MinMax", "format": "QDQ",
                            "source": str(options["calib"]) if options.get("calib") else "built-in synthetic blurred images"},
            "int8": {"quantization": dict(onnx_int8.SETTINGS), "assumes": onnx_int8.ASSUMES,
                     "clips_folded": clips,
                     "int16_pair_bounds": {k: v for k, v in bounds.items() if k != "layers"}}}


_DTYPES = {1: "float32", 10: "float16", 3: "int8", 2: "uint8", 6: "int32", 7: "int64"}


def _value_record(value):
    t = value.type.tensor_type
    shape = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    return {"name": value.name, "shape": shape, "dtype": _DTYPES.get(t.elem_type, str(t.elem_type)), "layout": "NHWC"}


def inspect(path) -> dict:
    import onnx

    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    ops = Counter(node.op_type for node in model.graph.node)
    weights = Counter(_DTYPES.get(init.data_type, str(init.data_type)) for init in model.graph.initializer)
    return {
        "inputs": [_value_record(v) for v in model.graph.input],
        "outputs": [_value_record(v) for v in model.graph.output],
        "ops": dict(sorted(ops.items())),
        "initializer_dtypes": dict(sorted(weights.items())),
        "opset_imports": {imp.domain or "ai.onnx": imp.version for imp in model.opset_import},
    }


_COMMON = dict(ecosystem="onnx", suffix=".onnx", inspect=inspect)
register(Target("onnx-fp32", precision="fp32", convert=convert_fp32, description="float32 ONNX (tf2onnx)", **_COMMON))
register(Target("onnx-fp16", precision="fp16", convert=convert_fp16,
                description="float16 ONNX with float32 inputs/outputs (keep_io_types)", **_COMMON))
register(Target("onnx-int8", precision="int8", convert=convert_int8,
                description="static int8 QDQ, uint8 activations, 7-bit per-channel int8 weights (portable)", **_COMMON))
