"""Core ML targets (ML program, iOS 15+ / macOS 12+): fp32 and fp16 compute precision, float32 I/O.

coremltools converts on Linux, but Core ML executes only on macOS. Off macOS the package is validated
structurally (it loads as a spec, its input/output shapes and the precision of its MIL ops are checked)
and the manifest says parity was not measured; on macOS the real parity gate runs.
"""
import sys
from collections import Counter

from kd_edge.converters.registry import THRESHOLDS_DB, Target, register

MAX_DYNAMIC_SIDE = 4096
NOT_MEASURED = ("Core ML execution needs macOS (coremltools runs predictions only there); "
                "the package was validated structurally: spec loads, I/O shapes, MIL op precisions")


def can_execute() -> bool:
    return sys.platform == "darwin"


def not_measured(target) -> dict:
    return {"measured": False, "passed": None, "psnr_db": None, "max_abs_diff": None,
            "threshold_db": target.gate_db, "reason": NOT_MEASURED, "platform": sys.platform}


def _convert(source, path, options, precision):
    import coremltools as ct

    from kd_edge.errors import KdEdgeError

    size = options["input_size"]
    if size:
        shape = (1, size[0], size[1], 3)
    else:
        stride = source.stride
        dim = lambda: ct.RangeDim(lower_bound=stride, upper_bound=MAX_DYNAMIC_SIDE, default=256)  # noqa: E731
        shape = ct.Shape(shape=(1, dim(), dim(), 3))
    try:
        mlmodel = ct.convert(
            source.model,
            source="tensorflow",
            convert_to="mlprogram",
            inputs=[ct.TensorType(shape=shape)],
            compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32,
            minimum_deployment_target=ct.target.iOS15,
        )
    except Exception as exc:  # noqa: BLE001
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise KdEdgeError(f"Core ML conversion failed: {first}") from exc
    mlmodel.short_description = f"kd-edge deblurring model {source.stem} ({precision})"
    mlmodel.save(str(path))
    return {"coreml": {"model_type": "mlProgram", "minimum_deployment_target": "iOS15",
                       "compute_precision": precision,
                       "dynamic_range": [source.stride, MAX_DYNAMIC_SIDE] if not size else None}}


def convert_fp32(source, path, options):
    return _convert(source, path, options, "fp32")


def convert_fp16(source, path, options):
    return _convert(source, path, options, "fp16")


_ARRAY_DTYPES = {65568: "float32", 65552: "float16", 65600: "float64", 131104: "int32"}


def _feature_record(feature):
    array = feature.type.multiArrayType
    shape = [int(v) for v in array.shape]
    ranges = list(array.shapeRange.sizeRanges)
    if ranges:
        shape = [int(r.lowerBound) if r.lowerBound == r.upperBound else None for r in ranges]
    return {"name": feature.name, "shape": shape, "dtype": _ARRAY_DTYPES.get(array.dataType, str(array.dataType)),
            "layout": "NHWC"}


def inspect(path) -> dict:
    """Structural validation: the spec loads, is an ML program with 1 NHWC input/output, op precisions."""
    import coremltools as ct
    from coremltools.proto import MIL_pb2

    from kd_edge.errors import KdEdgeError

    model = ct.models.MLModel(str(path), skip_model_load=True)
    spec = model.get_spec()
    if spec.WhichOneof("Type") != "mlProgram":
        raise KdEdgeError(f"{path}: not an ML program")
    inputs = [_feature_record(f) for f in spec.description.input]
    outputs = [_feature_record(f) for f in spec.description.output]
    if len(inputs) != 1 or len(outputs) != 1 or len(inputs[0]["shape"]) != 4 or inputs[0]["shape"][-1] != 3:
        raise KdEdgeError(f"{path}: expected one NHWC RGB input and one output, got {inputs} -> {outputs}")
    if not outputs[0]["shape"]:
        outputs[0]["shape"] = [1, None, None, 3]  # flexible shapes: Core ML leaves the output shape unset
        outputs[0]["shape_note"] = "same as the input (flexible shape; not recorded in the spec)"
    elif outputs[0]["shape"][-1] != 3:
        raise KdEdgeError(f"{path}: output is not RGB: {outputs[0]}")
    ops, precisions = Counter(), Counter()
    dtype_names = {v: k.lower() for k, v in MIL_pb2.DataType.items()}
    for function in spec.mlProgram.functions.values():
        for block in function.block_specializations.values():
            for op in block.operations:
                ops[op.type] += 1
                for out in op.outputs:
                    if out.type.HasField("tensorType"):
                        precisions[dtype_names.get(out.type.tensorType.dataType, "?")] += 1
    return {
        "inputs": inputs,
        "outputs": outputs,
        "ops": dict(sorted(ops.items())),
        "op_output_precisions": dict(sorted(precisions.items())),
        "structural_validation": {"spec_loads": True, "model_type": "mlProgram",
                                  "spec_version": int(spec.specificationVersion), "io_checked": True},
    }


_COMMON = dict(ecosystem="coreml", suffix=".mlpackage", inspect=inspect)
register(Target("coreml-fp32", precision="fp32", convert=convert_fp32,
                description="Core ML ML program, float32 compute", **_COMMON))
register(Target("coreml-fp16", precision="fp16", convert=convert_fp16,
                description="Core ML ML program, float16 compute, float32 I/O", **_COMMON))
assert set(THRESHOLDS_DB) >= {"fp32", "fp16"}
