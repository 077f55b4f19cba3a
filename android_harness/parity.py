"""Parity on the phone: the converter's probe (``<artifact>.parity.npz``) through LiteRT's ``benchmark_model``.

benchmark_model reads an input tensor's bytes from a file (``--input_layer_value_files=NAME:PATH``, raw tensor data)
and writes the output tensors' bytes to ``--output_filepath``. So for each probe image kd-edge writes the model's
input tensor (float32, or int8/uint8 quantised with the input's scale and zero point when the artifact has integer
I/O) as a raw file, pushes it, runs benchmark_model once with those flags, pulls the output file and decodes it with
the output tensor's dtype and quantisation (read on the host with LiteRT), then scores it against the stored Keras
reference, as the host and ssh runners do.

Not run on hardware here (no phone was attached): the encoding and decoding are tested against real LiteRT on the
host, the command line is unit-tested, and the benchmark_model flags are those of its documented interface.
"""
import numpy as np

from kd_edge.errors import KdEdgeError


def tensor_io(path):
    """(input detail, output detail) of a .tflite (dtype, shape, quantization) read with LiteRT on the host."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    return interp.get_input_details()[0], interp.get_output_details()[0]


def encode_input(image_u8, detail) -> bytes:
    """One probe image (uint8 H x W x 3) -> the raw bytes of the model's input tensor [1, H, W, 3]."""
    x = image_u8[None].astype(np.float32) / np.float32(255.0)
    dtype = np.dtype(detail["dtype"])
    if np.issubdtype(dtype, np.integer):
        scale, zero = detail["quantization"]
        info = np.iinfo(dtype)
        x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
    return np.ascontiguousarray(x.astype(dtype)).tobytes()


def decode_output(data: bytes, detail, shape) -> np.ndarray:
    """benchmark_model's --output_filepath bytes (the first output tensor) -> float32 H x W x 3."""
    dtype = np.dtype(detail["dtype"])
    count = int(np.prod(shape))
    if len(data) < count * dtype.itemsize:
        raise KdEdgeError(f"benchmark_model wrote {len(data)} output bytes, expected {count * dtype.itemsize} "
                          f"({'x'.join(map(str, shape))} {dtype.name})")
    y = np.frombuffer(data[: count * dtype.itemsize], dtype).reshape(shape)
    if np.issubdtype(dtype, np.integer):
        scale, zero = detail["quantization"]
        y = (y.astype(np.float32) - zero) * np.float32(scale)
    return np.asarray(y, np.float32)


def parity_flags(input_name, input_file, output_file, shape=None):
    """benchmark_model flags (besides --num_runs=1 --warmup_runs=0) that feed ``input_file`` to the input and
    export the output to ``output_file``; ``shape`` for a dynamic-size artifact."""
    flags = [f"--input_layer={input_name}"]
    if shape is not None:
        flags.append(f"--input_layer_shape={','.join(map(str, shape))}")
    return flags + [f"--input_layer_value_files={input_name}:{input_file}", f"--output_filepath={output_file}"]


def score(outputs, reference, gate_db):
    """The parity record of the bench schema from decoded outputs and the stored float16 reference."""
    from kd_edge.benchmarks.runner import psnr_db

    values = [psnr_db(ref.astype(np.float32), out.reshape(ref.shape)) for out, ref in zip(outputs, reference)]
    worst = min(values)
    return {"measured": True, "psnr_db": worst, "psnr_db_per_image": values, "threshold_db": gate_db,
            "passed": bool(worst >= gate_db), "probe_images": len(values), "probe_shape": list(reference.shape[1:]),
            "metric": "minimum PSNR (dB, max_val 1) vs the Keras reference, via benchmark_model --output_filepath"}
